"""Host-tier GCRA rate limiting over shared memory (vedina._native)."""

import multiprocessing
import os

import pytest

from vedina._native import HostRateLimiter, RateDecision, gcra_decide

T0 = 1_700_000_000.0


@pytest.fixture
def table_path(tmp_path):
    return str(tmp_path / "ratelimit.shm")


def test_burst_then_refusal_with_exact_retry_after(table_path):
    rl = HostRateLimiter(table_path, 1024)
    decisions = [rl.check("ip:1", limit=10, period=1.0, burst=3, now=T0) for _ in range(4)]
    assert [d.allowed for d in decisions] == [True, True, True, False]
    assert [d.remaining for d in decisions] == [2, 1, 0, 0]
    denied = decisions[-1]
    assert denied.limit == 3
    assert denied.retry_after == pytest.approx(0.1)
    assert denied.reset_after == pytest.approx(0.3)
    assert decisions[0].retry_after == 0.0
    # exactly at retry_after it passes
    assert rl.check("ip:1", limit=10, period=1.0, burst=3, now=T0 + 0.1).allowed
    assert not rl.check("ip:1", limit=10, period=1.0, burst=3, now=T0 + 0.1).allowed
    # keys are independent
    assert rl.check("ip:2", limit=10, period=1.0, burst=3, now=T0).remaining == 2


def test_cost_reset_and_idle_recovery(table_path):
    rl = HostRateLimiter(table_path, 1024)
    kw = dict(limit=2, period=1.0, burst=4)
    assert rl.check("k", cost=3, now=T0, **kw).remaining == 1
    d = rl.check("k", cost=2, now=T0, **kw)
    assert not d.allowed and d.retry_after == pytest.approx(0.5)
    rl.reset("k")
    assert rl.check("k", cost=4, now=T0, **kw).allowed
    assert rl.check("k", now=T0 + 2.0, **kw).remaining == 3  # fully recovered after reset_after


def test_state_is_shared_between_instances(table_path):
    a = HostRateLimiter(table_path, 256)
    b = HostRateLimiter(table_path, 256)
    assert a.check("k", limit=1, period=60, burst=1, now=T0).allowed
    assert not b.check("k", limit=1, period=60, burst=1, now=T0).allowed
    assert (b.path, b.capacity) == (table_path, 256)
    with pytest.raises(ValueError, match="capacity"):
        HostRateLimiter(table_path, 512)


def test_a_full_table_evicts_and_keeps_limiting(table_path):
    """A flood of keys cannot switch limiting off (issue 8, item 6): a full window evicts."""
    kw = dict(limit=1, period=60, burst=1, now=T0)
    rl = HostRateLimiter(table_path, 2, fail_open=True)
    assert rl.check("a", **kw).tracked and rl.check("b", **kw).tracked
    d = rl.check("c", **kw)
    assert d.allowed and d.tracked and d.evicted
    again = rl.check("c", **kw)
    assert not again.allowed and again.tracked and not again.evicted  # limited, even with fail_open
    assert rl.occupied() == 2
    # once the TATs are in the past their slots are reclaimed without evicting
    d = rl.check("d", limit=1, period=60, burst=1, now=T0 + 60)
    assert d.allowed and d.tracked and not d.evicted


def test_a_key_flood_leaves_a_hot_key_limited(table_path):
    rl = HostRateLimiter(table_path, 64)
    kw = dict(limit=1, period=3600, burst=3)
    hot = [rl.check("login:victim", now=T0, **kw).allowed for _ in range(3)]
    assert hot == [True, True, True]
    evictions = sum(rl.check(f"flood:{i}", now=T0, **kw).evicted for i in range(5000))
    assert evictions > 0
    # The victim's key was at most evicted (starting it afresh), never let through untracked:
    answers = [rl.check("login:victim", now=T0, **kw) for _ in range(10)]
    assert all(a.tracked for a in answers) and sum(a.allowed for a in answers) <= 3


def test_invalid_parameters(table_path):
    rl = HostRateLimiter(table_path, 16)
    with pytest.raises(ValueError):
        rl.check("k", limit=0, period=1, burst=1)
    with pytest.raises(ValueError):
        rl.check("k", limit=1, period=1, burst=0)
    with pytest.raises(ValueError):
        rl.check("k", limit=1, period=1, burst=2, cost=3)
    with pytest.raises(ValueError):
        rl.check("k", limit=1, period=float("nan"), burst=1)
    with pytest.raises(TypeError):
        rl.check("k", 1, 1.0, 1)  # keyword-only


def test_gcra_decide_is_pure_and_documents_the_formulas():
    s = 1_000_000_000
    now = 1_000 * s
    d, tat = gcra_decide(0, now, limit=10, period=1.0, burst=2)
    assert isinstance(d, RateDecision)
    assert (d.allowed, d.remaining, tat) == (True, 1, now + s // 10)
    d, tat = gcra_decide(tat, now, limit=10, period=1.0, burst=2)
    assert (d.allowed, d.remaining, tat) == (True, 0, now + 2 * s // 10)
    denied, same = gcra_decide(tat, now, limit=10, period=1.0, burst=2)
    assert not denied.allowed and same == tat  # a denial never moves the TAT
    assert denied.retry_after == pytest.approx(0.1) and denied.reset_after == pytest.approx(0.2)


# -- several processes, one key ----------------------------------------------------

LIMIT, PERIOD, BURST = 1000, 1.0, 20  # T = 1 ms
STEP = PERIOD / LIMIT / 4  # every process tries 4 times per emission interval
STEPS = 4000  # about one second of simulated time


def _hammer(path, start, results):
    rl = HostRateLimiter(path, 1024)
    start.wait()
    allowed = 0
    for k in range(STEPS):
        allowed += rl.check("hot", limit=LIMIT, period=PERIOD, burst=BURST, now=T0 + k * STEP).allowed
    results.put(allowed)


def _expected_allowed():
    """What GCRA allows one client trying at every step (extra clients add only refusals)."""
    tat, allowed = 0, 0
    for k in range(STEPS):
        now_ns = round((T0 + k * STEP) * 1e9)
        d, tat = gcra_decide(tat, now_ns, limit=LIMIT, period=PERIOD, burst=BURST)
        allowed += d.allowed
    return allowed


@pytest.mark.parametrize("processes", [2, 4])
def test_processes_sharing_the_file_make_exact_decisions(tmp_path, processes):
    path = str(tmp_path / f"mp-{processes}.shm")
    HostRateLimiter(path, 1024)  # create before the workers race to open it
    ctx = multiprocessing.get_context("spawn")
    start, results = ctx.Event(), ctx.Queue()
    workers = [ctx.Process(target=_hammer, args=(path, start, results)) for _ in range(processes)]
    for w in workers:
        w.start()
    start.set()
    counts = [results.get(timeout=60) for _ in workers]
    for w in workers:
        w.join(timeout=60)
        assert w.exitcode == 0
    expected = _expected_allowed()
    assert abs(expected - (BURST + STEPS // 4)) <= 1
    assert abs(sum(counts) - expected) <= 1, (counts, expected)
    assert all(c >= 0 for c in counts) and os.path.exists(path)


def test_table_refuses_a_symlink(tmp_path):
    target = tmp_path / "victim"
    target.write_bytes(b"precious")
    link = tmp_path / "table"
    link.symlink_to(target)
    with pytest.raises(OSError):
        HostRateLimiter(str(link), 64)
    assert target.read_bytes() == b"precious"


def test_table_refuses_a_file_others_may_write(tmp_path):
    path = tmp_path / "table"
    HostRateLimiter(str(path), 64)
    os.chmod(path, 0o666)
    with pytest.raises(ValueError, match="owned by this user"):
        HostRateLimiter(str(path), 64)


def test_new_table_is_private_and_fully_allocated(tmp_path):
    path = tmp_path / "table"
    HostRateLimiter(str(path), 1024)
    info = os.stat(path)
    assert info.st_mode & 0o777 == 0o600
    assert info.st_blocks * 512 >= info.st_size  # zeros written, not sparse
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind


def test_hash_key_differs_between_tables(tmp_path):
    HostRateLimiter(str(tmp_path / "one"), 64)
    HostRateLimiter(str(tmp_path / "two"), 64)
    one = (tmp_path / "one").read_bytes()[24:40]
    two = (tmp_path / "two").read_bytes()[24:40]
    assert one != two and one != bytes(16)
