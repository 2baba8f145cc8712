"""tests/cluster/redis_group.py: Redis master, replica and three Sentinels on three test hosts.

The tests run in order on one group: the failover comes after the checks of the healthy group.
"""

from __future__ import annotations

import time

import pytest

from tests.cluster.labs import module_lab
from tests.cluster.redis_group import PORT, SENTINEL_PORT, RedisGroup

pytestmark = pytest.mark.cluster

# From the kill to the sentinels naming a promoted replica: down-after 1 s, the vote, the promotion.
FAILOVER_BOUND = 10.0


@pytest.fixture(scope="module")
def group(request, tmp_path_factory):
    lab = module_lab(request, "vdcrd", needs="redis-server")
    net = lab.network("cache", "10.231.3")
    hosts = [lab.host(f"redis{n}", {net: 30 + n}) for n in (1, 2, 3)]
    group = RedisGroup(hosts[0], hosts[1], hosts, tmp_path_factory.mktemp("redis"))
    request.addfinalizer(group.destroy)
    began = time.monotonic()
    group.start()
    print(f"\nredis: master, replica and three sentinels ready in {time.monotonic() - began:.1f} s")
    return group


def test_the_sentinels_agree_on_the_master_and_know_the_replica_and_each_other(group):
    master, replica, third = group.sentinel_hosts
    assert group.sentinels() == [(host.ip, SENTINEL_PORT) for host in (master, replica, third)]
    assert group.master_address() == (master.ip, PORT)
    for view in group.sentinel_views():
        assert (view["ip"], view["flags"], view["quorum"]) == (master.ip, "master", "2")
        assert (view["num-slaves"], view["num-other-sentinels"]) == ("1", "2")
    assert [seen["ip"] for seen in group.replicas_seen(third)] == [replica.ip]
    assert group.info(replica)["master_host"] == master.ip


def test_the_nodes_listen_only_on_their_own_address(group):
    master, _replica, third = group.sentinel_hosts
    # Another host reaches the master over the lab's network...
    assert third.run(["redis-cli", "-h", master.ip, "-p", str(PORT), "PING"]).stdout.strip() == "PONG"
    # ...and nothing answers on the host's loopback.
    refused = master.run(["redis-cli", "-h", "127.0.0.1", "-p", str(PORT), "PING"], check=False)
    assert "PONG" not in refused.stdout


def test_killing_the_master_promotes_the_replica_which_keeps_a_write_acknowledged_by_it(group):
    master, replica, third = group.sentinel_hosts
    # One connection: WAIT counts the replicas that hold this client's writes.
    written = third.run(["redis-cli", "-h", master.ip, "-p", str(PORT)],
                        input="SET drill:before-failover kept\nWAIT 1 2000\n").stdout.split()
    assert written == ["OK", "1"]
    began = time.monotonic()
    killed = group.kill_master()
    assert killed is master
    promoted = group.wait_failover(master.ip, timeout=FAILOVER_BOUND)
    took = time.monotonic() - began
    print(f"\nredis: failover (kill to promoted master named by the sentinels) in {took:.1f} s")
    assert promoted == replica.ip and took < FAILOVER_BOUND
    assert group.master_address() == (replica.ip, PORT)
    assert group.info(replica)["role"] == "master"
    assert third.run(["redis-cli", "-h", replica.ip, "-p", str(PORT), "GET", "drill:before-failover"]) \
        .stdout.strip() == "kept"
    assert group.info(master) == {}  # it is down


def test_the_old_master_restarted_comes_back_as_a_replica_of_the_new_one(group):
    old, new, third = group.sentinel_hosts
    assert group.master_address()[0] == new.ip  # after the failover above
    began = time.monotonic()
    group.restart(old)
    print(f"\nredis: old master restarted and reconfigured as a replica in {time.monotonic() - began:.1f} s")
    info = group.info(old)
    assert (info["role"], info["master_host"], info["master_link_status"]) == ("slave", new.ip, "up")
    assert group.master_address() == (new.ip, PORT)
    # It took a full copy from the new master (it came back empty: no persistence).
    assert third.run(["redis-cli", "-h", old.ip, "-p", str(PORT), "GET", "drill:before-failover"]) \
        .stdout.strip() == "kept"
    # Sentinel wrote its new role into its config: a second restart keeps it.
    assert f"replicaof {new.ip} {PORT}" in (group.root / old.name / "redis" / "redis.conf").read_text()


def test_after_the_restart_a_second_failover_promotes_the_restarted_node(group):
    first, second, third = group.sentinel_hosts  # second is the master since the first failover
    written = third.run(["redis-cli", "-h", second.ip, "-p", str(PORT)],
                        input="SET drill:second kept-too\nWAIT 1 2000\n").stdout.split()
    assert written == ["OK", "1"]
    began = time.monotonic()
    assert group.kill_master() is second
    assert group.wait_failover(second.ip, timeout=FAILOVER_BOUND) == first.ip
    print(f"\nredis: second failover in {time.monotonic() - began:.1f} s")
    assert third.run(["redis-cli", "-h", first.ip, "-p", str(PORT), "MGET", "drill:before-failover",
                      "drill:second"]).stdout.split() == ["kept", "kept-too"]
