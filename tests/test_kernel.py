"""The kernel: interleaving at scheduling points, policies, CoQueue, CoMutex, deadlocks."""

from __future__ import annotations

import pytest

from labkit import trace as tr
from labkit.errors import Deadlock, ScheduleError, StateError, TaskFailed, TaskNotDone
from labkit.kernel import FIFO, Chooser, CoMutex, CoQueue, Kernel, Random, Scripted, sched_point


def worker(log: list[str], name: str, steps: int):
    async def body():
        for i in range(steps):
            log.append(f"{name}{i}")
            await sched_point("io", detail=f"{name} step {i}")
        return name

    return body()


def test_fifo_interleaves_at_scheduling_points():
    k = Kernel()
    log: list[str] = []
    a = k.spawn("a#1", worker(log, "a", 3))
    b = k.spawn("b#1", worker(log, "b", 3))
    k.run()
    assert log == ["a0", "b0", "a1", "b1", "a2", "b2"]
    assert a.result == "a" and b.result == "b"
    assert k.schedule == ["a#1", "b#1"] * 4


def test_scripted_schedule_gives_another_interleaving():
    k = Kernel(Scripted(["a#1"] * 4))
    log: list[str] = []
    k.spawn("a#1", worker(log, "a", 3))
    k.spawn("b#1", worker(log, "b", 3))
    k.run()
    assert log == ["a0", "a1", "a2", "b0", "b1", "b2"]


def test_scripted_rejects_a_task_that_is_not_runnable():
    k = Kernel(Scripted(["a#1", "zz#9"]))
    k.spawn("a#1", worker([], "a", 2))
    k.step()
    with pytest.raises(ScheduleError) as exc:
        k.step()
    assert exc.value.position == 1
    assert "'zz#9' is not runnable" in str(exc.value) and "a#1" in str(exc.value)


def test_strict_script_too_short():
    k = Kernel(Scripted(["a#1"], strict=True))
    k.spawn("a#1", worker([], "a", 2))
    k.step()
    with pytest.raises(ScheduleError, match="too short"):
        k.step()


def run_random(seed: int) -> str:
    k = Kernel(Random(seed))
    for n in "abc":
        k.spawn(f"{n}#1", worker([], n, 4))
    k.run()
    return tr.dumps(k.trace, k.schedule, {"seed": seed})


def test_random_seed_is_reproducible_byte_for_byte():
    assert run_random(7) == run_random(7)
    assert any(run_random(7) != run_random(s) for s in range(8, 12))


def test_chooser_callback_picks_by_name():
    picks = []

    def choose(runnable):
        picks.append([t.name for t in runnable])
        return runnable[-1].name

    k = Kernel(Chooser(choose))
    log: list[str] = []
    k.spawn("a#1", worker(log, "a", 1))
    k.spawn("b#1", worker(log, "b", 1))
    k.run()
    assert log == ["b0", "a0"]
    assert picks[0] == ["a#1", "b#1"]


def test_woken_waiter_runs_after_the_wakers_next_scheduling_point_and_then_at_once():
    k = Kernel()
    q = CoQueue("the test queue")
    log: list[str] = []

    async def waiter():
        log.append("wait")
        await q.wait()
        log.append("woken")

    async def waker():
        log.append("restart")
        q.restart_all()
        log.append("still running")
        await sched_point("io")
        log.append("after yield")

    k.spawn("w#1", waiter())
    k.step()  # w#1 blocks
    assert k.tasks["w#1"].state == "blocked"
    assert k.tasks["w#1"].why_blocked == "the test queue"
    k.spawn("x#1", waker())
    k.step()  # x#1 restarts and runs on to its scheduling point
    assert log == ["wait", "restart", "still running"]
    # qemu_co_queue_run_restart: w#1 is entered now, before x#1 (or anything) runs on.
    assert [t.name for t in k.runnable()] == ["w#1"]
    assert k.forced is not None and k.forced[0].name == "w#1" and k.forced[1] == "x#1"
    k.run()
    assert log == ["wait", "restart", "still running", "woken", "after yield"]
    assert k.schedule == ["w#1", "x#1", "w#1", "x#1"]


def test_comutex_excludes_and_hands_over():
    k = Kernel()
    m = CoMutex("m")
    log: list[str] = []

    def user(name):
        async def body():
            await m.lock()
            log.append(f"{name} in")
            await sched_point("io")
            log.append(f"{name} out")
            m.unlock()

        return body()

    k.spawn("a#1", user("a"))
    k.spawn("b#1", user("b"))
    k.step()
    k.step()
    assert k.tasks["b#1"].why_blocked == "m held by a#1"
    k.run()
    assert log == ["a in", "a out", "b in", "b out"]


def test_deadlock_names_every_blocked_task():
    k = Kernel()
    q1, q2 = CoQueue("CowRequest of a#1"), CoQueue("CowRequest of b#1")

    async def a():
        await q2.wait()

    async def b():
        await q1.wait()

    k.spawn("a#1", a())
    k.spawn("b#1", b())
    with pytest.raises(Deadlock) as exc:
        k.run()
    msg = str(exc.value)
    assert "a#1 waits for CowRequest of b#1" in msg and "b#1 waits for CowRequest of a#1" in msg
    assert exc.value.blocked == [("a#1", "CowRequest of b#1"), ("b#1", "CowRequest of a#1")]


def test_task_errors_are_never_swallowed():
    k = Kernel()

    async def bug():
        await sched_point("io")
        raise ZeroDivisionError("model bug")

    k.spawn("bug#1", bug())
    k.step()
    with pytest.raises(ZeroDivisionError):
        k.step()
    t = k.tasks["bug#1"]
    assert t.state == "failed"
    with pytest.raises(TaskFailed, match="bug#1 failed") as exc:
        _ = t.result
    assert isinstance(exc.value.__cause__, ZeroDivisionError)


def test_reading_an_unfinished_result_and_duplicate_names():
    k = Kernel()
    t = k.spawn("a#1", worker([], "a", 1))
    with pytest.raises(TaskNotDone, match="a#1 is runnable"):
        _ = t.result
    coro = worker([], "a", 1)
    with pytest.raises(StateError, match="unique"):
        k.spawn("a#1", coro)
    assert list(k.tasks) == ["a#1"]
    k.run()
    with pytest.raises(StateError, match="no task is runnable"):
        k.step()


def test_fifo_repr_and_fork():
    assert repr(FIFO()) == "FIFO()"
    r = Random(3)
    assert r.fork().seed == 3
