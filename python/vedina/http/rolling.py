"""Granian's multi-process server, reloaded and stopped without failing a request.

Granian 2.8 on Linux gives each worker its own ``SO_REUSEPORT`` listener, and its
SIGHUP reload starts a new worker, sleeps ``respawn_interval`` and stops the old
one whether or not the new one is serving yet. Measured on ``vedina serve`` with
two workers (a worker needs a few seconds to import and open its pools): one
reload refused about 2,300 of 9,600 requests. Two causes, two changes here:

- **One listening socket, held by the main process.** Every worker accepts on the
  same inherited descriptor, so a stopping worker closes only its copy: connections
  waiting in the accept queue stay there for the other workers (with per-worker
  ``SO_REUSEPORT`` queues they are reset unless ``net.ipv4.tcp_migrate_req=1``), and
  while no worker is accepting, new connections wait in the queue, never refused.
- **A rolling reload.** SIGHUP replaces the workers one at a time, and an old worker
  is stopped only once its replacement has run the app's startup (pools open): the
  replacement sets a process-shared event from its ``__rsgi_init__``. A replacement
  that dies or hangs during startup (a broken release) is given up and the old
  worker keeps serving.
- **Keep-alive connections closed between requests, not under one.** Stopping a
  worker closes its idle keep-alive connections, and a client that sent its next
  request at that instant sees the connection drop with no answer (one such error
  in about 6,500 requests when measured). So before the old worker is stopped it
  gets SIGUSR1: it stops accepting (its copy of the listening descriptor is replaced
  by an idle listener: the shared socket stays open for the others) and, for
  ``CLOSE_GRACE`` seconds, answers every request with ``Connection: close``: each
  busy client gets its answer, then a clean close, and opens its next connection to
  a live worker. Only a connection idle through the whole grace can still race with
  the stop.

Stopping a worker (reload or SIGTERM) is Granian's: it stops accepting, lets hyper
finish every in-flight request (idle keep-alive connections are closed), runs
``__rsgi_del__`` (the app's shutdown: pools closed) and exits; one still running
after ``SHUTDOWN_TIMEOUT`` seconds is killed (``workers_kill_timeout``). On SIGTERM
every worker first gets SIGUSR1 too: with the main process's copy closed, the last
reference to the listening socket goes at once and new connections are refused
(a load balancer tries another instance) rather than queued for nobody.

Granian's own respawns (a crashed worker, ``WORKER_MAX_RSS`` or lifetime recycles) go
through the same replacement; SIGTERM during a reload abandons the reload (a
replacement not yet started is killed) and stops the server. After a worker exits the
main process drops its live gauges from the prometheus multiprocess files
(``mark_process_dead``), or scrapes would keep adding the dead worker's values.
Workers are signalled through a pidfd, never by pid: Granian's watcher thread may
reap a worker at any moment, and its pid could then belong to another process.

A reload forks the replacements from the main process, which imported the app's
modules and read the settings at start: it recycles workers of the same release with
the same settings. A new release or new settings need a restart (``deploy/rolling-restart``
over several instances).
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import socket
import threading
import time
from multiprocessing.connection import wait
from typing import Any

from granian.net import SocketSpec
from granian.server import MPServer
from granian.server.common import logger
from granian.server.mp import WorkerProcess

# Seconds an old worker answers with "Connection: close" before it is stopped.
CLOSE_GRACE = 1.5
# What the main process sends an old worker to start that grace.
CLOSE_SIGNAL = signal.SIGUSR1

# Set by the main process just before it forks a worker; the forked worker
# inherits it and sets it when its app has started (see _WorkerApp).
_ready_event: Any = None

_CLOSE = ("connection", "close")


class _Closing:
    """An RSGI protocol whose answers all carry ``Connection: close``."""

    __slots__ = ("_protocol",)

    def __init__(self, protocol: Any) -> None:
        self._protocol = protocol

    def __getattr__(self, name: str) -> Any:
        return getattr(self._protocol, name)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._protocol(*args, **kwargs)

    # Python looks special methods up on the class, not through __getattr__:
    # `async for chunk in protocol` (the request body) needs this one spelled out.
    def __aiter__(self) -> Any:
        return self._protocol.__aiter__()

    def response_empty(self, status, headers):
        return self._protocol.response_empty(status, [*headers, _CLOSE])

    def response_str(self, status, headers, body):
        return self._protocol.response_str(status, [*headers, _CLOSE], body)

    def response_bytes(self, status, headers, body):
        return self._protocol.response_bytes(status, [*headers, _CLOSE], body)

    def response_file(self, status, headers, file):
        return self._protocol.response_file(status, [*headers, _CLOSE], file)

    def response_file_range(self, status, headers, file, start, end):
        return self._protocol.response_file_range(status, [*headers, _CLOSE], file, start, end)

    def response_stream(self, status, headers):
        return self._protocol.response_stream(status, [*headers, _CLOSE])


class _WorkerApp:
    """The RSGI app, plus: tell the main process when startup is done, and close
    keep-alive connections after each answer once told the worker is going away."""

    def __init__(self, app: Any, event: Any, port: int | None) -> None:
        self._app = app
        self._event = event
        self._port = port
        self._closing = False

    def __rsgi_init__(self, loop: Any) -> None:
        init = getattr(self._app, "__rsgi_init__", None)
        if init is not None:
            init(loop)
        loop.add_signal_handler(CLOSE_SIGNAL, self._begin_closing)
        if self._event is not None:
            self._event.set()

    def _begin_closing(self) -> None:
        self._closing = True
        if self._port is not None:
            _stop_accepting(self._port)

    def __rsgi_del__(self, loop: Any) -> None:
        delete = getattr(self._app, "__rsgi_del__", None)
        if delete is not None:
            delete(loop)

    def __rsgi__(self, scope: Any, protocol: Any) -> Any:
        if self._closing:
            protocol = _Closing(protocol)
        return self._app.__rsgi__(scope, protocol)


class _Worker(WorkerProcess):
    """Granian's worker process, signalled through a pidfd (opened before its watcher thread
    can reap it, so a signal never reaches another process that reused the pid), with a
    readiness event, and remembering whether it exited on its own (a crash)."""

    ready: Any = None
    pidfd: int | None = None
    crashed = False
    watcher: threading.Thread | None = None

    def start(self) -> None:
        self.inner.start()
        self.pidfd = os.pidfd_open(self.inner.pid)
        logger.info(f"Spawning worker-{self.idx + 1} with PID: {self._id()}")
        self.watcher = threading.Thread(target=self._watcher)
        self.watcher.start()

    def _watcher(self) -> None:
        self.inner.join()
        if self.interrupt_by_parent:
            return
        self.crashed = True
        logger.error(f"Unexpected exit from worker-{self.idx + 1}")
        if self.parent.reload_on_changes and self.parent.reload_ignore_worker_failure:
            return
        self.parent.interrupt_children.append(self.idx)
        self.parent.main_loop_interrupt.set()

    def send(self, signum: int) -> bool:
        """``signum`` to this process; False once it has exited and been reaped."""
        if self.pidfd is None:
            return False
        try:
            signal.pidfd_send_signal(self.pidfd, signum)
        except ProcessLookupError:
            return False
        return True

    def terminate(self) -> None:
        self.interrupt_by_parent = True
        self.send(signal.SIGTERM)

    def kill(self) -> None:
        self.interrupt_by_parent = True
        self.send(signal.SIGKILL)


class RollingServer(MPServer):
    """``MPServer`` with one shared listening socket and a rolling, readiness-gated reload.

    ``startup_timeout``: seconds a new worker may take to start before a reload gives it up.
    """

    def __init__(self, *args: Any, startup_timeout: float = 60, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.startup_timeout = startup_timeout

    # -- one socket -------------------------------------------------------------------

    def _init_shared_socket(self) -> None:
        if self.bind_uds:
            super()._init_shared_socket()
            return
        self._ssp = None
        self._shd = SocketSpec(self.bind_addr, self.bind_port, self.backlog).build()
        self._sfd = self._shd.get_fd()
        self._sso = socket.socket(fileno=self._sfd)
        self._sso.set_inheritable(True)

    # -- workers ------------------------------------------------------------------------

    def _spawn_worker(self, idx: int, target: Any, callback_loader: Any) -> Any:
        global _ready_event
        _ready_event = multiprocessing.get_context("fork").Event()
        port = None if self.bind_uds else self.bind_port
        worker = super()._spawn_worker(idx, target, _signalling_loader(callback_loader, port))
        worker.__class__ = _Worker  # MPServer builds a WorkerProcess itself: the same object, our methods
        worker.ready = _ready_event
        return worker

    def _wait_ready(self, worker: Any) -> bool:
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline and not self.interrupt_signal:
            if worker.ready.wait(0.1):
                return True
            if _exited(worker, 0):
                return False
        return False

    def _hand_over(self, worker: Any) -> bool:
        """SIGUSR1: the worker stops accepting and closes keep-alive connections after each
        answer. Only to a started worker: before its app started it has no handler, and
        the signal would kill it."""
        return worker.ready.is_set() and not _exited(worker, 0) and worker.send(CLOSE_SIGNAL)

    def _retire(self, worker: Any) -> None:
        """After ``worker`` exited: wait for its watcher, forget a crash report its
        replacement made moot (or Granian's respawn would replace the healthy
        replacement), drop its live gauges from the metrics files, close its pidfd."""
        if worker.watcher is not None:
            worker.watcher.join(timeout=5)
        if worker.crashed and worker.idx in self.interrupt_children:
            self.interrupt_children.remove(worker.idx)
        from vedina.metrics import forget_process

        forget_process(worker.inner.pid)
        if worker.pidfd is not None:
            os.close(worker.pidfd)
            worker.pidfd = None

    def _pause(self, seconds: float) -> None:
        """Sleep, cut short by SIGTERM."""
        deadline = time.monotonic() + seconds
        while not self.interrupt_signal and (left := deadline - time.monotonic()) > 0:
            time.sleep(min(left, 0.1))

    def _wake_if_stopping(self) -> None:
        # Granian's loop may have cleared the event after SIGTERM set it: wake it again.
        if self.interrupt_signal:
            self.main_loop_interrupt.set()

    # -- rolling reload -----------------------------------------------------------------

    def _reload(self, spawn_target: Any, target_loader: Any) -> None:
        logger.info("HUP signal received, replacing workers one at a time")
        self.reload_signal = False
        self.respawned_wrks.clear()
        self.main_loop_interrupt.clear()
        self._env_loader(self.env_files)
        self._call_hooks(self.hooks_reload)
        replaced = 0
        for idx in range(self.workers):
            if self.interrupt_signal:
                break
            if not self._replace(idx, spawn_target, target_loader):
                if not self.interrupt_signal:
                    logger.error("reload stopped: the old workers keep serving")
                break
            replaced += 1
        self._metrics.incr_spawn(replaced)
        self._wake_if_stopping()

    def _respawn_workers(self, workers: Any, spawn_target: Any, target_loader: Any, delay: float = 0) -> None:
        """Granian's respawns (a crashed worker; WORKER_MAX_RSS and lifetime recycles) through
        :meth:`_replace`: a live worker is handed over like in a reload."""
        replaced = 0
        for idx in dict.fromkeys(workers):
            if self.interrupt_signal:
                break
            self.respawned_wrks[idx] = time.monotonic()
            replaced += self._replace(idx, spawn_target, target_loader)
        self._metrics.incr_spawn(replaced)
        self._wake_if_stopping()

    def _replace(self, idx: int, spawn_target: Any, target_loader: Any) -> bool:
        old = self.wrks[idx]
        new = self._spawn_worker(idx=idx, target=spawn_target, callback_loader=target_loader)
        if _exited(old, 0):
            # It died: nothing to hand over (the others serve meanwhile). A replacement
            # that dies too is Granian's crash report again, with its crash-loop check.
            new.start()
            self.wrks[idx] = new
            logger.info(f"worker-{idx + 1} (PID {old._id()}, exited) replaced by PID {new._id()}")
            self._retire(old)
            return True
        new.interrupt_by_parent = True  # until it is ready, its exit is ours to handle, not a crash
        new.start()
        if not self._wait_ready(new):
            if not self.interrupt_signal:
                logger.error(f"new worker-{idx + 1} (PID {new._id()}) did not start within {self.startup_timeout}s")
            new.kill()
            _exited(new, None)
            self._retire(new)
            return False
        new.interrupt_by_parent = False
        self.wrks[idx] = new
        logger.info(f"worker-{idx + 1} replaced by PID {new._id()}, stopping PID {old._id()}")
        old.interrupt_by_parent = True
        if self._hand_over(old):
            self._pause(CLOSE_GRACE)
        old.terminate()
        if not _exited(old, self.workers_kill_timeout):
            logger.warning(f"killing old worker-{idx + 1} after {self.workers_kill_timeout}s")
            old.kill()
            _exited(old, None)
        self._retire(old)
        return True

    # -- stop ---------------------------------------------------------------------------

    def _stop_workers(self) -> None:
        # shutdown() has just closed the main process's copy of the listening socket: once
        # every worker has put an idle listener in place of its own, the socket is closed
        # and new connections are refused at once, while in-flight requests go on.
        stopping = list(self.wrks)
        handed_over = [self._hand_over(worker) for worker in stopping]
        if any(handed_over):
            time.sleep(CLOSE_GRACE)
        super()._stop_workers()
        for worker in stopping:
            self._retire(worker)


def _exited(worker: Any, timeout: float | None) -> bool:
    # The process's sentinel, not is_alive(): Granian's watcher thread may reap the
    # process first, and is_alive() then reports a dead worker alive.
    return bool(wait([worker.inner.sentinel], timeout))


def _signalling_loader(callback_loader: Any, port: int | None) -> Any:
    event = _ready_event

    def load() -> Any:
        return _WorkerApp(callback_loader(), event, port)

    return load


def _stop_accepting(port: int) -> None:
    """In a worker: put an idle listener in place of this process's descriptor of the
    shared listening socket on ``port``. Granian's accept loop keeps polling the same
    descriptor number and finds nothing (EAGAIN), while the socket itself, open in the
    main process and the other workers, keeps accepting there."""
    idle = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    idle.bind(("127.0.0.1", 0))
    idle.listen(1)
    idle.setblocking(False)
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd == idle.fileno():
            continue
        try:
            probe = socket.socket(fileno=fd)  # borrowed, not owned: detached below, never closed
        except OSError:
            continue  # not a socket (or closed since the listing)
        try:
            listening = probe.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
            bound = probe.getsockname()
        except OSError:
            listening, bound = 0, None
        finally:
            probe.detach()
        if listening and isinstance(bound, tuple) and bound[1] == port:
            os.dup2(idle.fileno(), fd)
    idle.close()
