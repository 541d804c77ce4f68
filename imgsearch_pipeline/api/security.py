"""Access rules of the HTTP API: search is open and read-only; changing the catalogue needs the admin key;
every client is held to a request rate and a request size.
"""

from __future__ import annotations

import os
import secrets
import threading
import time

from fastapi import HTTPException, Request
from pydantic import BaseModel, Field, SecretStr
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.responses import JSONResponse

API_KEY_HEADER = "X-API-Key"


class ApiSecurity(BaseModel):
    """Settings of the API's guard rails (env: IMGSEARCH_API_KEY, IMGSEARCH_CORS_ORIGINS, ...)."""

    api_key: SecretStr | None = Field(default=None, description="admin key; unset: admin endpoints disabled")
    cors_origins: list[str] = Field(default_factory=list, description="browser origins allowed to call the API")
    max_request_bytes: int = Field(default=12 * 2**20, ge=1024)
    requests_per_minute: int = Field(default=1200, ge=1, description="per client address (thumbnails count)")

    @classmethod
    def from_env(cls) -> ApiSecurity:
        env = os.environ
        origins = [o.strip() for o in env.get("IMGSEARCH_CORS_ORIGINS", "").split(",") if o.strip()]
        values: dict = {"api_key": env.get("IMGSEARCH_API_KEY") or None, "cors_origins": origins}
        for field, name in (("max_request_bytes", "IMGSEARCH_MAX_REQUEST_BYTES"),
                            ("requests_per_minute", "IMGSEARCH_REQUESTS_PER_MINUTE")):
            if env.get(name):
                values[field] = env[name]
        return cls.model_validate(values)


def require_admin(request: Request) -> None:
    """Dependency of every endpoint that changes the catalogue (constant-time key comparison)."""
    expected: SecretStr | None = request.app.state.security.api_key
    if expected is None:
        raise HTTPException(status_code=403, detail="admin endpoints are disabled: set IMGSEARCH_API_KEY to enable")
    given = request.headers.get(API_KEY_HEADER, "")
    if not secrets.compare_digest(given.encode(), expected.get_secret_value().encode()):
        raise HTTPException(status_code=401, detail=f"a valid {API_KEY_HEADER} header is required",
                            headers={"WWW-Authenticate": "ApiKey"})


class Limits(BaseHTTPMiddleware):
    """Refuses oversized requests (413) before reading them and paces each client address (429, Retry-After)."""

    def __init__(self, app, security: ApiSecurity, clock=time.monotonic) -> None:
        super().__init__(app)
        self.security, self.clock = security, clock
        self.buckets: dict[str, tuple[float, float]] = {}  # client -> (tokens, last refill)
        self.lock = threading.Lock()

    def _allow(self, client: str) -> float:
        """0 when the request may pass, else the seconds until it may (a token bucket per client)."""
        rate = self.security.requests_per_minute / 60.0
        burst = max(1.0, rate * 10)  # ten seconds' worth: a page load's thumbnails pass together
        now = self.clock()
        with self.lock:
            tokens, last = self.buckets.get(client, (burst, now))
            tokens = min(burst, tokens + (now - last) * rate)
            if tokens >= 1:
                self.buckets[client] = (tokens - 1, now)
                return 0.0
            self.buckets[client] = (tokens, now)
            return (1 - tokens) / rate

    async def dispatch(self, request: Request, call_next):
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > self.security.max_request_bytes):
            return JSONResponse(status_code=413, content={
                "detail": f"request larger than {self.security.max_request_bytes} bytes"})
        wait = self._allow(request.client.host if request.client else "unknown")
        if wait:
            return JSONResponse(status_code=429, content={"detail": "too many requests; slow down"},
                                headers={"Retry-After": str(max(1, round(wait)))})
        return await call_next(request)
