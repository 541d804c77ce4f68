"""A real local HTTP server that plays an OpenAI-compatible chat endpoint, for the tests of every component
that talks to one (the vision provider, the LLM query parser). It records each request and answers from a
per-test script.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Reply:
    status: int = 200
    body: dict | str = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    echo_auth: bool = False  # put the request's Authorization header into the body, as careless servers do


def chat_answer(content: str | None, finish_reason: str = "stop", model: str = "test-model", **message) -> Reply:
    return Reply(body={"id": "chatcmpl-1", "object": "chat.completion", "model": model, "choices": [
        {"index": 0, "finish_reason": finish_reason,
         "message": {"role": "assistant", "content": content, **message}}]})


def error(status: int, message: str, code: str | None = None, **kwargs) -> Reply:
    return Reply(status=status, body={"error": {"message": message, "type": "invalid_request_error", "code": code}},
                 **kwargs)


class FakeEndpoint:
    """Scripted replies, one per request (then `default`); every request recorded with headers and JSON body."""

    def __init__(self, default: Reply) -> None:
        self.requests: list[dict] = []
        self.script: list[Reply] = []
        self.default = default
        self.release = threading.Event()  # ends a delayed reply early (test teardown)
        self.lock = threading.Lock()

    def next_reply(self, request: dict) -> Reply:
        with self.lock:
            self.requests.append(request)
            return self.script.pop(0) if self.script else self.default


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like real servers: the provider's client pools connections
    server: ThreadingHTTPServer

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        fake: FakeEndpoint = self.server.fake  # type: ignore[attr-defined]
        raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        reply = fake.next_reply({"path": self.path, "headers": dict(self.headers), "body": body})
        if self.path != "/v1/chat/completions":
            reply = error(404, f"no route {self.path}")
        if reply.delay_s:
            fake.release.wait(reply.delay_s)
        payload = reply.body
        if reply.echo_auth and isinstance(payload, dict):
            payload = {"error": {"message": f"invalid key in {self.headers.get('Authorization')}"}}
        data = payload.encode() if isinstance(payload, str) else json.dumps(payload).encode()
        try:
            self.send_response(reply.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)
        except OSError:
            pass  # the client gave up (timeout test)

    def log_message(self, format, *args) -> None:  # noqa: A002 - keep test output quiet
        pass


@contextmanager
def serve(default: Reply) -> Iterator[tuple[str, FakeEndpoint]]:
    """A started endpoint: its base URL (ending in /v1) and the recorder."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.fake = FakeEndpoint(default)  # type: ignore[attr-defined]
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/v1", httpd.fake  # type: ignore[attr-defined]
    finally:
        httpd.fake.release.set()  # type: ignore[attr-defined]
        httpd.shutdown()
        httpd.server_close()
