"""A MariaDB server on a test host (a network namespace), as a GTID primary or replica.

``mariadbd`` runs inside the host's namespace, listening on the host's address, port 3306, with
its datadir under ``root`` (``mariadb-install-db`` on first start), small buffers, a binary log in
row format that also records replicated transactions (``log-slave-updates``), and strict GTID
mode. Root talks to it over its unix socket; apps reach it over the lab's network.

>>> primary = MariaDB(db1, root / "db1", server_id=1); primary.start()
>>> replica = MariaDB(db2, root / "db2", server_id=2); replica.start()
>>> primary.create_app_database("vedina", "vedina", "secret")   # replicated once the replica follows
>>> replica.follow(primary)              # from the primary's first transaction; the replica is read-only
>>> replica.stop_sql_thread(); ...; replica.start_sql_thread(); replica.wait_caught_up(10)
>>> replica.stop(); replica.start()      # replication resumes where it stopped
"""

from __future__ import annotations

import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from tests.cluster.netns import Host
from tests.scale.replica_server import wait_until_answering

PORT = 3306
REPLICATION_USER = "vedina_repl"
_SOCKET_PATH_MAX = 100  # sun_path holds 108 bytes


class MariaDB:
    def __init__(self, host: Host, root: Path, *, server_id: int) -> None:
        self.host = host
        self.root = root
        self.server_id = server_id
        self.datadir = root / "data"
        self.log = root / "mariadbd.err"
        socket = root / "mysqld.sock"
        if len(str(socket)) > _SOCKET_PATH_MAX:
            socket = Path(tempfile.mkdtemp(prefix="vdcdb-")) / "mysqld.sock"
        self.socket = socket
        self.process: subprocess.Popen | None = None
        self.primary: MariaDB | None = None  # set by follow()
        self._repl_password = secrets.token_hex(16)

    @property
    def address(self) -> str:
        return self.host.ip

    # -- the process ----------------------------------------------------------------------

    def install(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(
            ["mariadb-install-db", "--no-defaults", f"--datadir={self.datadir}", "--user=root", "--skip-test-db",
             "--auth-root-authentication-method=socket"],
            capture_output=True, text=True, timeout=180)
        if done.returncode != 0:
            shutil.rmtree(self.datadir, ignore_errors=True)
            raise RuntimeError(f"mariadb-install-db on {self.host.name}: {done.stdout[-1500:]}{done.stderr[-1500:]}")

    def start(self, timeout: float = 60) -> None:
        """Start the server (installing the datadir the first time) and wait until it answers."""
        if self.running():
            return
        if not self.datadir.exists():
            self.install()
        argv = [
            "mariadbd", "--no-defaults", "--user=root", f"--datadir={self.datadir}", f"--socket={self.socket}",
            f"--port={PORT}", f"--bind-address={self.address}", f"--pid-file={self.root / 'mariadbd.pid'}",
            f"--log-error={self.log}", f"--server-id={self.server_id}",
            f"--log-bin={self.datadir / 'binlog'}", f"--relay-log={self.datadir / 'relay'}",
            "--binlog-format=ROW", "--log-slave-updates", "--gtid-strict-mode=ON", "--sync-binlog=1",
            # A lost primary is noticed within seconds, not the default minute.
            "--slave-net-timeout=10",
            "--innodb-buffer-pool-size=32M", "--innodb-log-file-size=16M", "--performance-schema=OFF",
            "--skip-name-resolve", "--max-connections=200", "--character-set-server=utf8mb4",
        ]
        if self.primary is not None:
            argv.append("--read-only=ON")  # replication restarts by itself (master.info)
        self.process = self.host.popen(argv, log=self.root / "mariadbd.out")
        wait_until_answering(self.sql, self.process, timeout=timeout,
                             failed=lambda: f"mariadbd on {self.host.name} did not start: {self._log_tail()}")

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout: float = 60) -> None:
        """A clean shutdown (``mariadb-admin shutdown``); SIGKILL if it takes longer than ``timeout``."""
        if not self.running():
            return
        try:
            self.host.run(["mariadb-admin", "--no-defaults", "-uroot", f"--socket={self.socket}", "shutdown"],
                          check=False, timeout=timeout)
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        """SIGKILL: the host lost power (InnoDB and the GTID position recover on the next start)."""
        if not self.running():
            return
        self.process.send_signal(signal.SIGKILL)  # ``ip netns exec`` execs: this is mariadbd itself
        self.process.wait(timeout=30)

    def _log_tail(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-2000:]
        except OSError:
            return "(no error log)"

    # -- SQL as root ------------------------------------------------------------------------

    def sql(self, statement: str, *, timeout: float = 60) -> str:
        """Run ``statement`` as root over the unix socket, inside the namespace; tab-separated rows."""
        done = self.host.run(["mariadb", "--no-defaults", "-uroot", f"--socket={self.socket}", "-N", "-B",
                              "-e", statement], check=False, timeout=timeout)
        if done.returncode != 0:
            raise RuntimeError(f"[{self.host.name}] {statement!r}: {done.stderr.strip()}")
        return done.stdout.strip()

    def slave_status(self) -> dict[str, str]:
        """``SHOW SLAVE STATUS`` as field -> value; empty when the server replicates from nobody."""
        done = self.host.run(["mariadb", "--no-defaults", "-uroot", f"--socket={self.socket}", "-E",
                              "-e", "SHOW SLAVE STATUS"], timeout=30)
        fields: dict[str, str] = {}
        for line in done.stdout.splitlines():
            name, sep, value = line.partition(": ")
            if sep and not name.startswith("*"):
                fields[name.strip()] = value.strip()
        return fields

    def gtid_position(self) -> str:
        return self.sql("SELECT @@gtid_binlog_pos")

    # -- users --------------------------------------------------------------------------------

    def create_app_database(self, name: str, user: str, password: str) -> None:
        """A database and its app user (from any host), with what the replica reader needs:
        ``@@gtid_binlog_pos`` and ``MASTER_GTID_WAIT`` need nothing more, ``SHOW SLAVE STATUS``
        needs SLAVE MONITOR; BINLOG MONITOR (the old REPLICATION CLIENT) shows binlog positions.
        Run on the primary, it reaches every replica through replication."""
        self.sql(f"CREATE DATABASE IF NOT EXISTS `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
        self.sql(f"CREATE USER IF NOT EXISTS '{user}'@'%' IDENTIFIED BY '{password}'")
        self.sql(f"ALTER USER '{user}'@'%' IDENTIFIED BY '{password}'")
        self.sql(f"GRANT ALL PRIVILEGES ON `{name}`.* TO '{user}'@'%'")
        self.sql(f"GRANT BINLOG MONITOR, SLAVE MONITOR ON *.* TO '{user}'@'%'")

    # -- replication ----------------------------------------------------------------------------

    def follow(self, primary: MariaDB, timeout: float = 30) -> None:
        """Replicate from ``primary`` (GTID, from its first transaction) and wait until both
        replication threads run. The replica becomes read-only, now and on every restart."""
        primary.sql(f"CREATE USER IF NOT EXISTS '{REPLICATION_USER}'@'%' IDENTIFIED BY '{self._repl_password}'")
        primary.sql(f"ALTER USER '{REPLICATION_USER}'@'%' IDENTIFIED BY '{self._repl_password}'")
        primary.sql(f"GRANT REPLICATION SLAVE ON *.* TO '{REPLICATION_USER}'@'%'")
        self.primary = primary
        self.sql("SET GLOBAL read_only = ON")
        self.sql(f"CHANGE MASTER TO MASTER_HOST='{primary.address}', MASTER_PORT={PORT}, "
                 f"MASTER_USER='{REPLICATION_USER}', MASTER_PASSWORD='{self._repl_password}', "
                 "MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=1")
        self.sql("START SLAVE")
        self.wait_replicating(timeout)

    def wait_replicating(self, timeout: float = 30) -> None:
        """Until both the IO and the SQL thread run (the IO thread connected to the primary)."""
        deadline = time.monotonic() + timeout
        while True:
            status = self.slave_status()
            if status.get("Slave_IO_Running") == "Yes" and status.get("Slave_SQL_Running") == "Yes":
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"replication on {self.host.name} is not running: {status}")
            time.sleep(0.2)

    def stop_sql_thread(self) -> None:
        """The replica keeps receiving the primary's binlog but applies nothing: it goes stale."""
        self.sql("STOP SLAVE SQL_THREAD")

    def start_sql_thread(self) -> None:
        self.sql("START SLAVE SQL_THREAD")

    def wait_caught_up(self, timeout: float = 30) -> None:
        """Until the replica has applied everything the primary has logged now."""
        if self.primary is None:
            raise RuntimeError(f"{self.host.name} follows no primary")
        position = self.primary.gtid_position()
        reached = self.sql(f"SELECT MASTER_GTID_WAIT('{position}', {timeout})", timeout=timeout + 30)
        if reached != "0":
            raise TimeoutError(f"{self.host.name} did not reach {position} in {timeout} s: {self.slave_status()}")

    def destroy(self) -> None:
        """Kill the server and remove its files (the lab's destroy kills it anyway)."""
        self.kill()
        shutil.rmtree(self.root, ignore_errors=True)
        if self.socket.parent != self.root:
            shutil.rmtree(self.socket.parent, ignore_errors=True)
