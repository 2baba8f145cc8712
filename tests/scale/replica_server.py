"""A real MariaDB replica of the test server, on loopback, for tests/scale/test_replicas.py.

Its own datadir (``mariadb-install-db`` in a temp dir), ``server-id=2``, GTID replication from the
main server on 127.0.0.1:3306 (which runs with ``log-bin``), restricted to the databases named
(``replicate-do-db``) so it stays light. It starts empty at the primary's current position; the
tests then rebuild their database on the primary and replication creates everything.

>>> replica = ReplicaServer(Path(tmp), port=3317, databases=["vedina_dev1"], app_user="vedina", app_password="...")
>>> replica.start(); replica.follow_primary()
>>> replica.sql("STOP SLAVE SQL_THREAD")
>>> replica.shutdown(); replica.start()   # replication resumes where it stopped
>>> replica.destroy()
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import time
from pathlib import Path

PRIMARY_SOCKET = "/run/mysqld/mysqld.sock"
REPLICATION_USER = "vedina_scale_repl"


def primary_sql(statement: str) -> str:
    """Run ``statement`` on the main server as root over its socket; returns the output (tab-separated)."""
    return _client(["--socket", PRIMARY_SOCKET], statement)


def _client(connection: list[str], statement: str) -> str:
    done = subprocess.run(["mariadb", "--no-defaults", "-uroot", *connection, "-N", "-B", "-e", statement],
                          capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        raise RuntimeError(f"{statement!r}: {done.stderr.strip()}")
    return done.stdout.strip()


def wait_until_answering(sql, process: subprocess.Popen, *, timeout: float, failed) -> None:
    """Until a server started as ``process`` answers ``sql("SELECT 1")``; ``RuntimeError(failed())``
    if it exits first or takes longer than ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            sql("SELECT 1")
            return
        except RuntimeError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(failed()) from None
            time.sleep(0.2)


class ReplicaServer:
    def __init__(self, root: Path, *, port: int, databases: list[str], app_user: str, app_password: str) -> None:
        self.root = root
        self.port = port
        self.databases = databases
        self.app_user = app_user
        self.app_password = app_password
        self.datadir = root / "data"
        self.socket = root / "replica.sock"
        self.log = root / "replica.err"
        self.process: subprocess.Popen | None = None
        self._repl_password = secrets.token_hex(16)

    def sql(self, statement: str) -> str:
        """As root over the replica's socket."""
        return _client(["--socket", str(self.socket)], statement)

    def install(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        subprocess.run(["mariadb-install-db", "--no-defaults", f"--datadir={self.datadir}", "--user=root",
                        "--skip-test-db", "--auth-root-authentication-method=socket"],
                       check=True, capture_output=True, timeout=120)

    def start(self) -> None:
        if not self.datadir.exists():
            self.install()
        self.process = subprocess.Popen(
            ["mariadbd", "--no-defaults", "--user=root", f"--datadir={self.datadir}", f"--socket={self.socket}",
             f"--port={self.port}", "--bind-address=127.0.0.1", f"--pid-file={self.root / 'replica.pid'}",
             f"--log-error={self.log}", "--server-id=2", "--skip-log-bin", "--read-only=ON",
             # Row events on rows a test changed on the replica alone must not stop replication.
             "--slave-exec-mode=IDEMPOTENT",
             *(f"--replicate-do-db={name}" for name in self.databases),
             "--innodb-buffer-pool-size=32M", "--innodb-log-file-size=16M", "--performance-schema=OFF",
             "--skip-name-resolve", "--max-connections=200"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )
        wait_until_answering(self.sql, self.process, timeout=60,
                             failed=lambda: f"replica did not start: {self.log.read_text()[-2000:]}")

    def follow_primary(self) -> None:
        """Create the users, then replicate from the primary's current position."""
        for host in ("localhost", "127.0.0.1"):
            primary_sql(f"CREATE USER IF NOT EXISTS '{REPLICATION_USER}'@'{host}' IDENTIFIED BY '{self._repl_password}'")
            primary_sql(f"ALTER USER '{REPLICATION_USER}'@'{host}' IDENTIFIED BY '{self._repl_password}'")
            primary_sql(f"GRANT REPLICATION SLAVE ON *.* TO '{REPLICATION_USER}'@'{host}'")
        self.sql(f"CREATE USER IF NOT EXISTS '{self.app_user}'@'127.0.0.1' IDENTIFIED BY '{self.app_password}'")
        for name in self.databases:
            self.sql(f"CREATE DATABASE IF NOT EXISTS `{name}` CHARACTER SET utf8mb4")
            self.sql(f"GRANT SELECT ON `{name}`.* TO '{self.app_user}'@'127.0.0.1'")
        position = primary_sql("SELECT @@gtid_binlog_pos")
        self.sql(f"SET GLOBAL gtid_slave_pos = '{position}'")
        self.sql(f"CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT=3306, MASTER_USER='{REPLICATION_USER}', "
                 f"MASTER_PASSWORD='{self._repl_password}', MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=1")
        self.sql("START SLAVE")

    def wait_caught_up(self, timeout: float = 30) -> None:
        position = primary_sql("SELECT @@gtid_binlog_pos")
        if self.sql(f"SELECT MASTER_GTID_WAIT('{position}', {timeout})") != "0":
            raise TimeoutError(f"replica did not reach {position}: {self.sql('SHOW SLAVE STATUS')}")

    def shutdown(self) -> None:
        if self.process is not None and self.process.poll() is None:
            subprocess.run(["mariadb-admin", "--no-defaults", "-uroot", f"--socket={self.socket}", "shutdown"],
                           capture_output=True, timeout=60)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, 9)
                self.process.wait()

    def destroy(self) -> None:
        try:
            self.shutdown()
        finally:
            if self.process is not None and self.process.poll() is None:
                os.killpg(self.process.pid, 9)
                self.process.wait()
            for host in ("localhost", "127.0.0.1"):
                try:
                    primary_sql(f"DROP USER IF EXISTS '{REPLICATION_USER}'@'{host}'")
                except RuntimeError:
                    pass
            shutil.rmtree(self.root, ignore_errors=True)
