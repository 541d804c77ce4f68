"""A fault-injecting HTTP reverse proxy, put between the pipeline and a real server (moto S3, OpenSearch).

Every request is shown to the test's `fault` function before it is forwarded. The function may answer in
the server's place (an error status), drop the connection without an answer, hold the request (block until
the test lets it go) or act on the real server first (delete the object about to be read, stop the node);
returning None forwards the request unchanged. The servers stay real: the proxy only decides what reaches them.
"""

from __future__ import annotations

import http.client
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "proxy-connection", "te", "upgrade"}


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    body: bytes


@dataclass(frozen=True)
class Answer:
    """A reply the proxy gives in the server's place."""

    status: int
    body: bytes = b""
    content_type: str = "application/xml"


DROP = "drop"  # close the connection without any answer, as a server that dies mid-request does
Fault = Callable[[Request], Answer | str | None]


class FaultProxy:
    """Forwards to `upstream` (http://host:port); `fault` decides per request. `requests` lists what came in."""

    def __init__(self, upstream: str, fault: Fault | None = None) -> None:
        parts = urlsplit(upstream)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.fault: Fault = fault or (lambda _request: None)
        self.requests: list[Request] = []
        self.lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._httpd.proxy = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def start(self) -> FaultProxy:
        self._thread.start()
        return self

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def count(self, method: str, path_part: str = "") -> int:
        with self.lock:
            return sum(1 for r in self.requests if r.method == method and path_part in r.path)

    def forward(self, request: Request, headers: dict[str, str]) -> tuple[int, list[tuple[str, str]], bytes]:
        """The real server's answer (OSError when it cannot be reached)."""
        conn = http.client.HTTPConnection(*self.upstream, timeout=120)
        try:
            conn.request(request.method, request.path, body=request.body or None, headers=headers)
            response = conn.getresponse()
            return response.status, response.getheaders(), response.read()
        finally:
            conn.close()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the clients expect of the real servers
    server: ThreadingHTTPServer

    def _handle(self) -> None:
        proxy: FaultProxy = self.server.proxy  # type: ignore[attr-defined]
        body = self.rfile.read(int(self.headers.get("Content-Length", 0) or 0))
        request = Request(self.command, self.path, body)
        with proxy.lock:
            proxy.requests.append(request)
        action = proxy.fault(request)
        if action is None:
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
            try:
                status, reply_headers, data = proxy.forward(request, headers)
            except OSError:  # the server is gone: so is the answer
                action = DROP
            else:
                length = dict((k.lower(), v) for k, v in reply_headers).get("content-length", str(len(data)))
                self._reply(status, [(k, v) for k, v in reply_headers if k.lower() not in HOP_BY_HOP], data,
                            length if self.command == "HEAD" else str(len(data)))
                return
        if action == DROP:
            self.close_connection = True
        else:
            assert isinstance(action, Answer)
            self._reply(action.status, [("Content-Type", action.content_type)], action.body, str(len(action.body)))

    def _reply(self, status: int, headers: list[tuple[str, str]], data: bytes, length: str) -> None:
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", length)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = _handle  # noqa: N815 - http.server's naming

    def log_message(self, format, *args) -> None:  # noqa: A002 - keep test output quiet
        pass


@contextmanager
def proxy_to(upstream: str, fault: Fault | None = None) -> Iterator[FaultProxy]:
    proxy = FaultProxy(upstream, fault).start()
    try:
        yield proxy
    finally:
        proxy.close()


class Hold:
    """A fault action that parks the request until the test releases it: the caller is frozen mid-request."""

    def __init__(self, timeout_s: float = 120.0) -> None:
        self.reached = threading.Event()
        self.released = threading.Event()
        self.timeout_s = timeout_s

    def __call__(self) -> str:
        self.reached.set()
        self.released.wait(self.timeout_s)
        return DROP
