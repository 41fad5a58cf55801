"""``--address HOST:PORT`` is probed before Ray is started: a port that answers HTTP/2 (Ray's GCS is a gRPC
server) passes; one that answers otherwise is refused at its first answer, a silent one after the timeout."""

import socket
import threading
import time
from concurrent import futures

import grpc
import pytest

from nas_attn.checks import PROBE_TIMEOUT_S, check_address
from nas_attn.errors import NasAttnError


def _serve(answer: bytes | None) -> socket.socket:
    """A listening socket whose connections get ``answer`` then are closed (``None``: left open, silent)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()

    def run() -> None:
        kept = []
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            if answer is None:
                kept.append(conn)
                continue
            conn.recv(64)
            conn.sendall(answer)
            conn.close()

    threading.Thread(target=run, daemon=True).start()
    return listener


def test_a_grpc_server_passes_at_once():
    server = grpc.server(futures.ThreadPoolExecutor(1))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        t0 = time.monotonic()
        check_address(f"127.0.0.1:{port}")
        assert time.monotonic() - t0 < 1.0
    finally:
        server.stop(None)


@pytest.mark.parametrize(("answer", "heard"), [
    (b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n", "'HTTP/1.1 '"),
    (b"SSH-2.0-OpenSSH_9.6\r\n", "'SSH-2.0-O'"),
    (b"", "nothing"),
    (None, "nothing"),
], ids=["HTTP/1", "SSH", "closes", "silent"])
def test_a_port_that_is_not_grpc_is_refused_in_one_line(answer, heard):
    listener = _serve(answer)
    port = listener.getsockname()[1]
    t0 = time.monotonic()
    with pytest.raises(NasAttnError) as info:
        check_address(f"127.0.0.1:{port}")
    elapsed = time.monotonic() - t0
    listener.close()
    assert str(info.value) == (f"--address 127.0.0.1:{port}: the port is open but does not speak Ray's protocol "
                               f"(gRPC; it answered {heard}); give the head's GCS address (ray start --head "
                               f"prints it)")
    # an answer is told at once; only a silent port costs the whole timeout
    assert elapsed < (PROBE_TIMEOUT_S + 1.0 if answer is None else 1.0)
