"""Units of the zero-downtime pieces (vedina.http.rolling, deploy/rolling-restart) that a live
drill would catch only by luck: the Connection: close wrapper reads bodies, the listener swap
leaks no descriptor, a reaped worker is never signalled, and rolling-restart never takes out an
instance while no other one is ready."""

from __future__ import annotations

import asyncio
import importlib.machinery
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from vedina.http.rolling import _Closing, _stop_accepting, _Worker

SCRIPT = Path(__file__).resolve().parents[2] / "deploy" / "rolling-restart"


class FakeProtocol:
    """The RSGI HTTP protocol's body iteration and one answer method."""

    def __init__(self, chunks: list[bytes]) -> None:
        self._chunks = list(chunks)
        self.answers: list[tuple] = []

    def __aiter__(self):
        return self

    async def __anext__(self) -> bytes:
        if not self._chunks:
            raise StopAsyncIteration
        return self._chunks.pop(0)

    def response_bytes(self, status, headers, body):
        self.answers.append((status, headers, body))


def test_the_closing_wrapper_reads_a_request_body_and_adds_connection_close():
    protocol = FakeProtocol([b'{"a":', b"1}"])
    closing = _Closing(protocol)

    async def read() -> bytes:
        return b"".join([chunk async for chunk in closing])

    assert asyncio.run(read()) == b'{"a":1}'
    closing.response_bytes(200, [("content-type", "application/json")], b"{}")
    assert protocol.answers == [(200, [("content-type", "application/json"), ("connection", "close")], b"{}")]


def open_fds() -> set[int]:
    return {int(name) for name in os.listdir("/proc/self/fd")}


def test_stop_accepting_swaps_the_listener_and_leaks_no_descriptor(tmp_path):
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    with open(tmp_path / "file", "w") as regular, socket.socket() as unbound:  # not listening sockets
        before = open_fds()
        _stop_accepting(port)
        assert open_fds() == before
        assert listener.getsockname()[1] != port  # same descriptor, now an idle listener
        regular.write("still open")
        assert unbound.fileno() in open_fds()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=1)
    listener.close()


def test_a_worker_already_reaped_is_not_signalled_even_if_its_pid_is_reused():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    worker = object.__new__(_Worker)
    worker.pidfd = os.pidfd_open(child.pid)
    try:
        assert worker.send(0) is True
        child.kill()
        child.wait()  # reaped, as Granian's watcher thread may do at any moment
        assert worker.send(signal.SIGUSR1) is False
    finally:
        os.close(worker.pidfd)


def load_script():
    loader = importlib.machinery.SourceFileLoader("rolling_restart", str(SCRIPT))
    spec = importlib.util.spec_from_loader("rolling_restart", loader)
    module = importlib.util.module_from_spec(spec)
    sys.modules["rolling_restart"] = module  # dataclasses look their module up there
    try:
        loader.exec_module(module)
    finally:
        del sys.modules["rolling_restart"]
    return module


class ReadyServer:
    """An HTTP server answering /ready with ``status``."""

    def __init__(self, status: int) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(status if self.path == "/ready" else 404)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.address = f"127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def closed_address() -> str:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        return f"127.0.0.1:{probe.getsockname()[1]}"


def run_script(tmp_path: Path, instances: list[tuple[str, str]], capsys) -> tuple[int, str]:
    module = load_script()
    argv = ["--servers-file", str(tmp_path / "servers.conf"), "--nginx-reload", "true",
            "--drain-seconds", "0", "--settle-seconds", "0", "--ready-timeout", "1"]
    for name, address in instances:
        argv += ["--instance", name, address, f"touch {tmp_path / ('restarted-' + name)}"]
    status = module.main(argv)
    return status, capsys.readouterr().err


def test_rolling_restart_refuses_to_take_out_an_instance_while_no_other_is_ready(tmp_path, capsys):
    draining = ReadyServer(503)
    try:
        status, err = run_script(tmp_path, [("a", draining.address), ("b", closed_address())], capsys)
    finally:
        draining.close()
    assert status == 1
    assert "a: not taken out: no other instance is ready (/ready b: no answer)" in err
    assert not (tmp_path / "servers.conf").exists() and not list(tmp_path.glob("restarted-*"))


def test_rolling_restart_stops_before_the_second_instance_when_the_first_is_not_ready_again(tmp_path, capsys):
    ready, draining = ReadyServer(200), ReadyServer(503)
    try:
        status, err = run_script(tmp_path, [("a", draining.address), ("b", ready.address)], capsys)
    finally:
        ready.close()
        draining.close()
    # a is taken out (b is ready), restarted, then never answers 200: it stays down, b is untouched.
    assert status == 1 and "a: http://" in err and "not 200" in err
    assert [p.name for p in tmp_path.glob("restarted-*")] == ["restarted-a"]


def test_rolling_restart_restarts_each_instance_while_another_is_ready(tmp_path, capsys):
    first, second = ReadyServer(200), ReadyServer(200)
    try:
        status, err = run_script(tmp_path, [("a", first.address), ("b", second.address)], capsys)
    finally:
        first.close()
        second.close()
    assert status == 0, err
    assert sorted(p.name for p in tmp_path.glob("restarted-*")) == ["restarted-a", "restarted-b"]
    assert "down" not in (tmp_path / "servers.conf").read_text()
