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
            s.settimeout(server.header_timeout + 5)  # a stalled head is cut header_timeout after its first byte
            assert s.recv(100) == b""
    finally:
        for s in idle + stalled:
            s.close()


def test_slow_idle_and_malformed_clients_do_not_starve_page_loads(server):
    """20 slowloris clients (a header byte every 0.5 s), 300 idle connections and 200 malformed requests at
    once: page loads are still answered in under 1 s each."""
    address = server.server_address[:2]
    stop = threading.Event()

    def slowloris() -> None:
        with socket.create_connection(address, timeout=5) as s:
            s.sendall(b"GET / HTTP/1.1\r\n")
            for i in range(40):  # bounded: at most 20 s, and the server cuts it first (header timeout)
                if stop.wait(0.5):
                    return
                try:
                    s.sendall(b"X-%d: y\r\n" % i)
                except OSError:
                    return  # cut by the server, as it should be

    def malformed() -> None:
        for request in [b"\x16\x03\x01\x02\x00garbage\r\n\r\n", b"GET /%ff HTTP/1.1\r\n\r\n"] * 100:
            try:
                _raw(server, request, timeout=10)
            except OSError:
                pass

    slow = [threading.Thread(target=slowloris, daemon=True) for _ in range(20)]
    bad = threading.Thread(target=malformed, daemon=True)
    idle = [socket.create_connection(address) for _ in range(300)]
    try:
        for t in slow:
            t.start()
        time.sleep(0.3)  # every slowloris client has started its head
        bad.start()
        times = []
        for _ in range(10):
            t0 = time.monotonic()
            status, body = _get(server, "/")
            times.append(time.monotonic() - t0)
            assert status == 200 and b"nas-attn dashboard" in body
        assert max(times) < 1.0, times
        assert sum(t.is_alive() for t in slow) == 20  # the attack was still going on during the loads
    finally:
        stop.set()
        bad.join(timeout=30)
        for t in slow:
            t.join(timeout=10)
        for s in idle:
            s.close()
    assert not bad.is_alive()


def test_a_port_in_use_or_an_unknown_host_is_one_line_exit_2(tmp_path, capsys):
    from nas_attn.dashboard.cli import main

    run = tmp_path / "run"
    run.mkdir()
    (run / "manifest.json").write_text(json.dumps({"space": "smoke", "status": "running",
                                                   "objectives": ["val_acc", "flops"]}))
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        assert main([str(run), "--serve", "--port", str(port)]) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and f"127.0.0.1:{port}" in err and "in use" in err, err
        assert "Traceback" not in err and "_wake_w" not in err
    assert main([str(run), "--serve", "--host", "no-such-host.invalid", "--port", "8050"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "no-such-host.invalid:8050" in err and "unknown host" in err, err
