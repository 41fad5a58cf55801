"""The dashboard server on 127.0.0.1 against malformed, traversing, idle and stalled clients (raw sockets, so
nothing is normalised on the client side)."""

import http.client
import json
import socket
import threading
import time

import pytest

from nas_attn.dashboard.server import make_server


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    run = tmp_path_factory.mktemp("runs") / "smoke" / "run"
    run.mkdir(parents=True)
    (run / "manifest.json").write_text(json.dumps({"space": "smoke", "status": "running",
                                                   "objectives": ["val_acc", "flops"]}))
    (run / "notes.txt").write_text("hello")
    srv = make_server([str(run)], port=0, workers=4, idle_timeout=1.0, request_timeout=1.0)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def _raw(srv, request: bytes, timeout: float = 10.0) -> bytes:
    with socket.create_connection(srv.server_address[:2], timeout=timeout) as s:
        s.sendall(request)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
        return data


def _status(response: bytes) -> int:
    return int(response.split(b" ", 2)[1])


def _get(srv, path: str) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(*srv.server_address[:2], timeout=10)
    conn.request("GET", path)  # sent as is
    resp = conn.getresponse()
    return resp.status, resp.read()


def test_page_and_run_files_are_served_on_loopback(server):
    assert server.server_address[0] == "127.0.0.1"
    status, body = _get(server, "/")
    assert status == 200 and b"nas-attn dashboard" in body
    assert _get(server, "/runs/0/notes.txt") == (200, b"hello")


@pytest.mark.parametrize("path,expected", [
    ("/runs/%C2%B2/x", 400),  # a run index in a Unicode digit ("²")
    ("/runs/0/%00", 400), ("/runs/0/a%00b", 400), ("/%ff%fe", 400), ("/runs/0/%C3", 400),
    ("/runs/0/" + "a" * 300, 400), ("/" + "b" * 5000, 414),
    ("/runs/0/../../../../etc/passwd", 403), ("/runs/0/%2e%2e/%2e%2e/%2e%2e/etc/hostname", 403),
    ("/runs/0//etc/passwd", 403), ("/etc/passwd", 404), ("/runs/1/manifest.json", 404), ("/runs/00009/x", 400),
])
def test_malformed_and_traversing_paths_are_answered_not_crashed(server, path, expected):
    response = _raw(server, f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    assert _status(response) == expected, response[:200]
    assert b"root:" not in response and b"Traceback" not in response
    assert _get(server, "/")[0] == 200  # and the server still answers


def test_idle_and_stalled_connections_hold_no_thread_and_are_closed(server):
    threads_before = threading.active_count()
    idle = [socket.create_connection(server.server_address[:2]) for _ in range(300)]
    stalled = [socket.create_connection(server.server_address[:2]) for _ in range(4)]
    for s in stalled:
        s.sendall(b"GET / HT")  # a request line that never ends
    try:
        t0 = time.monotonic()
        status, _ = _get(server, "/")
        assert status == 200 and time.monotonic() - t0 < 5  # answered while 304 connections hang around
        assert threading.active_count() <= threads_before + 4  # the pool's workers, not a thread each
        for s in idle[:20] + stalled:  # the server closes them itself after its timeouts (EOF, no answer)
            s.settimeout(10)
            assert s.recv(100) == b""
    finally:
        for s in idle + stalled:
            s.close()
