"""tests/cluster/mariadb.py: a GTID primary and replica on two test hosts, used from a third."""

from __future__ import annotations

import time

import pytest

from tests.cluster import netns
from tests.cluster.labs import module_lab
from tests.cluster.mariadb import MariaDB

pytestmark = pytest.mark.cluster

APP_DB, APP_USER, APP_PASSWORD = "vedina", "vedina", "cluster-app-password"


class Pair:
    def __init__(self, lab: netns.Lab, primary: MariaDB, replica: MariaDB, app: netns.Host) -> None:
        self.lab, self.primary, self.replica, self.app = lab, primary, replica, app

    def as_app(self, server: MariaDB, statement: str, *, check: bool = True) -> str:
        """``statement`` as the app user over TCP, from the app host."""
        done = self.app.run(["mariadb", "--no-defaults", "-h", server.address, "-P", "3306", "-u", APP_USER,
                             f"-p{APP_PASSWORD}", APP_DB, "-N", "-B", "-e", statement], check=check)
        return done.stdout.strip() if done.returncode == 0 else f"ERROR: {done.stderr.strip()}"


@pytest.fixture(scope="module")
def pair(request, tmp_path_factory):
    lab = module_lab(request, "vdcdb", needs="mariadbd")
    net = lab.network("db", "10.231.2")
    db1, db2, app = lab.host("db1", {net: 11}), lab.host("db2", {net: 12}), lab.host("app", {net: 21})
    root = tmp_path_factory.mktemp("mariadb")
    primary, replica = MariaDB(db1, root / "db1", server_id=1), MariaDB(db2, root / "db2", server_id=2)
    for server in (primary, replica):
        request.addfinalizer(server.destroy)
    began = time.monotonic()
    primary.start()
    replica.start()
    started = time.monotonic()
    primary.create_app_database(APP_DB, APP_USER, APP_PASSWORD)
    replica.follow(primary)
    replica.wait_caught_up(30)
    print(f"\nmariadb: two servers started in {started - began:.1f} s, "
          f"replica following and caught up in {time.monotonic() - started:.1f} s")
    return Pair(lab, primary, replica, app)


def test_a_write_on_the_primary_is_read_on_the_replica_by_the_app_user(pair):
    pair.as_app(pair.primary, "CREATE TABLE IF NOT EXISTS notes (id INT PRIMARY KEY, body VARCHAR(50))")
    pair.as_app(pair.primary, "INSERT INTO notes VALUES (1, 'first')")
    pair.replica.wait_caught_up(10)
    assert pair.as_app(pair.replica, "SELECT body FROM notes WHERE id = 1") == "first"
    assert pair.replica.sql("SELECT @@server_id, @@read_only, @@log_bin, @@binlog_format, @@log_slave_updates") \
        == "2\t1\t1\tROW\t1"


def test_the_app_user_can_ask_what_the_replica_reader_asks_but_cannot_write_on_the_replica(pair):
    pair.as_app(pair.primary, "CREATE TABLE IF NOT EXISTS notes (id INT PRIMARY KEY, body VARCHAR(50))")
    pair.replica.wait_caught_up(10)
    position = pair.as_app(pair.primary, "SELECT @@gtid_binlog_pos")
    assert position.startswith("0-1-")
    assert pair.as_app(pair.replica, f"SELECT MASTER_GTID_WAIT('{position}', 5)") == "0"
    assert pair.as_app(pair.replica, "SELECT @@gtid_slave_pos") == position
    assert pair.as_app(pair.replica, "SHOW SLAVE STATUS").split("\t")[1] == pair.primary.address
    refused = pair.as_app(pair.replica, "INSERT INTO notes VALUES (99, 'on the replica')", check=False)
    assert "read-only" in refused
    assert pair.replica.sql(f"SELECT COUNT(*) FROM {APP_DB}.notes WHERE id = 99") == "0"


def test_a_stopped_sql_thread_leaves_the_replica_stale_until_it_starts_again(pair):
    pair.as_app(pair.primary, "CREATE TABLE IF NOT EXISTS counters (id INT PRIMARY KEY, n INT)")
    pair.as_app(pair.primary, "REPLACE INTO counters VALUES (1, 1)")
    pair.replica.wait_caught_up(10)
    pair.replica.stop_sql_thread()
    try:
        pair.as_app(pair.primary, "UPDATE counters SET n = 2 WHERE id = 1")
        time.sleep(0.5)  # time enough for the relay log to receive it
        assert pair.as_app(pair.replica, "SELECT n FROM counters WHERE id = 1") == "1"
        with pytest.raises(TimeoutError):
            pair.replica.wait_caught_up(1)
        assert pair.replica.slave_status()["Slave_IO_Running"] == "Yes"
    finally:
        pair.replica.start_sql_thread()
    pair.replica.wait_caught_up(10)
    assert pair.as_app(pair.replica, "SELECT n FROM counters WHERE id = 1") == "2"


def test_a_replica_stopped_and_started_again_resumes_replication(pair):
    pair.as_app(pair.primary, "CREATE TABLE IF NOT EXISTS events (id INT PRIMARY KEY)")
    pair.as_app(pair.primary, "INSERT INTO events VALUES (1)")
    pair.replica.wait_caught_up(10)
    began = time.monotonic()
    pair.replica.stop()
    assert not pair.replica.running()
    pair.as_app(pair.primary, "INSERT INTO events VALUES (2), (3)")  # written while the replica is down
    pair.replica.start()
    pair.replica.wait_replicating(30)
    pair.replica.wait_caught_up(20)
    print(f"\nmariadb: replica stopped, started and caught up in {time.monotonic() - began:.1f} s")
    assert pair.as_app(pair.replica, "SELECT GROUP_CONCAT(id ORDER BY id) FROM events") == "1,2,3"
    assert pair.replica.sql("SELECT @@read_only") == "1"


def test_a_killed_replica_recovers_and_catches_up(pair):
    pair.as_app(pair.primary, "CREATE TABLE IF NOT EXISTS crashes (id INT PRIMARY KEY)")
    pair.as_app(pair.primary, "INSERT INTO crashes VALUES (1)")
    pair.replica.wait_caught_up(10)
    pair.replica.kill()
    pair.as_app(pair.primary, "INSERT INTO crashes VALUES (2)")
    pair.replica.start()
    pair.replica.wait_caught_up(20)
    assert pair.as_app(pair.replica, "SELECT GROUP_CONCAT(id ORDER BY id) FROM crashes") == "1,2"
