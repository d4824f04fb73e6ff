"""``edge-agent serve-report``: the live page over HTTP on loopback, read-only.

The command runs as a real child process on a buffer; requests go over a real socket.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import subprocess
import sys
from pathlib import Path

import pytest

from edge_agent.cli import build_parser
from tests.edge_agent.report.support import make_buffer

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]


def _digest(directory: Path) -> dict[str, str]:
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(directory.iterdir())
        if p.is_file()
    }


def _request(port: int, method: str, path: str) -> tuple[int, dict[str, str], bytes]:
    con = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        con.request(method, path, body=b"x" if method in ("POST", "PUT", "PATCH") else None)
        resp = con.getresponse()
        return resp.status, dict(resp.getheaders()), resp.read()
    finally:
        con.close()


def test_loopback_by_default_and_binding_elsewhere_is_explicit() -> None:
    args = build_parser().parse_args(["serve-report", "--db", "b.db"])
    assert args.bind == "127.0.0.1"
    other = build_parser().parse_args(["serve-report", "--bind", "192.0.2.10"])  # parse only
    assert other.bind == "192.0.2.10"


def test_serves_the_report_and_refuses_every_change(tmp_path: Path) -> None:
    db = make_buffer(tmp_path / "state" / "buffer.db")
    before = _digest(db.parent)
    proc = subprocess.Popen(
        [sys.executable, "-m", "edge_agent", "serve-report", "--db", str(db), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("serving the report on http://127.0.0.1:"), line
        port = int(line.split("127.0.0.1:", 1)[1].split("/", 1)[0])
        query = "/?from=2026-12-04T12:00:00Z&to=2026-12-04T13:00:00Z"
        status, headers, body = _request(port, "GET", query)
        assert status == 200
        assert headers["Content-Type"].startswith("text/html")
        page = body.decode("utf-8")
        assert 'class="chart timeline" data-machine="press1"' in page
        assert 'data-field="availability" data-value="0.7">70 %<' in page
        assert _request(port, "HEAD", query)[0] == 200
        assert _request(port, "GET", "/?from=yesterday")[0] == 400
        assert _request(port, "GET", "/etc/passwd")[0] == 404
        for method in ("POST", "PUT", "DELETE", "PATCH", "OPTIONS", "PURGE"):
            status, headers, _ = _request(port, method, "/")
            assert status == 405, method
            assert headers["Allow"] == "GET, HEAD"
        assert proc.poll() is None
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    after = _digest(db.parent)
    assert after["buffer.db"] == before["buffer.db"]  # nothing written
    # A read-only SQLite reader of a WAL database may create the (empty) -wal and -shm
    # files when no writer has them open; nothing is ever written to the WAL.
    wal = db.with_name("buffer.db-wal")
    assert not wal.exists() or wal.stat().st_size == 0
    assert set(after) <= {"buffer.db", "buffer.db-wal", "buffer.db-shm"}
