"""``edge-agent serve-report``: the live report over HTTP, read-only.

A stdlib :class:`http.server.ThreadingHTTPServer`. ``GET /`` (and ``HEAD``) renders
the report from the buffer at request time (read-only SQLite connection); the query
string may narrow it: ``?from=ISO&to=ISO&machine=M&contract=C`` (default: the last
``hours`` hours). Every other method is answered ``405 Method Not Allowed``: nothing
can be changed through it. It binds 127.0.0.1 unless told otherwise.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

log = logging.getLogger(__name__)

#: Renders the page for ``(start, end, machine, contract)``.
Renderer = Callable[[float, float, "str | None", "str | None"], str]


class ReportHandler(BaseHTTPRequestHandler):
    """GET / HEAD only; the server object carries the renderer and the default span."""

    server: ReportServer
    server_version = "edge-agent-report"

    def do_GET(self) -> None:
        """Render the report."""
        self._answer(body=True)

    def do_HEAD(self) -> None:
        """Headers of the report."""
        self._answer(body=False)

    def __getattr__(self, name: str) -> Any:
        """Any other method (POST, PUT, DELETE, PATCH, ...): 405, nothing changes."""
        if name.startswith("do_"):
            return self._not_allowed
        raise AttributeError(name)

    def _not_allowed(self) -> None:
        self.send_response(HTTPStatus.METHOD_NOT_ALLOWED)
        self.send_header("Allow", "GET, HEAD")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _answer(self, *, body: bool) -> None:
        url = urlsplit(self.path)
        if url.path not in ("/", "/report.html"):
            self.send_error(HTTPStatus.NOT_FOUND)
            return
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        try:
            start, end = self.server.span(query)
        except ValueError as exc:
            self.send_error(HTTPStatus.BAD_REQUEST, str(exc))
            return
        try:
            page = self.server.render(start, end, query.get("machine"), query.get("contract"))
        except Exception as exc:
            log.warning("Report page failed: %s", exc)
            self.send_error(HTTPStatus.INTERNAL_SERVER_ERROR, "the report could not be rendered")
            return
        raw = page.encode("utf-8")
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(raw)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if body:
            self.wfile.write(raw)

    def log_message(self, format: str, *args: Any) -> None:
        """Requests at DEBUG (the technician's terminal stays quiet)."""
        log.debug("%s " + format, self.address_string(), *args)


class ReportServer(ThreadingHTTPServer):
    """The HTTP server with what the handler needs."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], render: Renderer, hours: float) -> None:
        super().__init__(address, ReportHandler)
        self.render = render
        self.hours = hours

    def span(self, query: dict[str, str]) -> tuple[float, float]:
        """``[from, to)`` of a request: the query's, else the last ``hours`` hours.

        Raises:
            ValueError: A bound is not an ISO 8601 time, or ``to`` is not after ``from``.
        """
        from edge_agent.commands.export import parse_time

        end = parse_time(query["to"]) if "to" in query else time.time()
        start = parse_time(query["from"]) if "from" in query else end - self.hours * 3600.0
        if end <= start:
            raise ValueError("'to' must be after 'from'")
        return start, end
