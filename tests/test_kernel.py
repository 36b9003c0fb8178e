"""The kernel: interleaving at scheduling points, policies, CoQueue, CoMutex, deadlocks."""

from __future__ import annotations

import errno
import gc
import json

import pytest

from labkit import trace as tr
from labkit.errors import (
    ArgumentError,
    BlockError,
    Deadlock,
    ForeignAwaitError,
    InstrumentWarning,
    ScheduleError,
    StateError,
    TaskFailed,
    TaskNotDone,
)
from labkit.kernel import (
    DONE,
    FAILED,
    FIFO,
    Access,
    Chooser,
    CoMutex,
    CoQueue,
    Event,
    EventKind,
    Instrument,
    Kernel,
    Random,
    Scripted,
    Task,
    TaskState,
    current_task,
    sched_point,
    touch,
)


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


# --- the wake rule (qemu_co_queue_run_restart, facts §1.7, §8.6) ------------------------


def test_comutex_unlock_the_woken_waiter_takes_the_lock_before_a_third_task():
    k = Kernel()
    m = CoMutex("m")
    log: list[str] = []

    async def holder():
        await m.lock()
        await sched_point("io")
        m.unlock()
        log.append("a unlocked")
        await sched_point("io")  # the waiter runs right here, before c#1 or a#1

    async def user(name):
        await m.lock()
        log.append(f"{name} in")
        await sched_point("io")
        m.unlock()

    k.spawn("a#1", holder())
    k.spawn("b#1", user("b"))
    k.step()  # a#1 takes m
    k.step()  # b#1 waits
    k.spawn("c#1", user("c"))
    assert k.runnable()[0].name == "a#1"
    k.policy = Scripted([*k.schedule, "a#1", "c#1"])
    with pytest.raises(ScheduleError) as exc:
        k.run()
    assert exc.value.position == 3
    assert ("b#1 was woken by a#1 and runs at once (qemu_co_queue_run_restart); c#1 cannot "
            "run here") in str(exc.value)
    assert [t.name for t in k.runnable()] == ["b#1"]
    k.policy = FIFO()
    k.run()
    assert log == ["a unlocked", "b in", "c in"]


def test_wakeups_run_fifo_and_depth_first():
    k = Kernel()
    qa, qb = CoQueue("qa"), CoQueue("qb")
    log: list[str] = []

    async def waiter(name, q, then=None):
        await q.wait()
        log.append(name)
        if then is not None:
            then.restart_all()
        await sched_point("io")

    async def waker():
        qa.restart_all()
        await sched_point("io")

    k.spawn("x1#1", waiter("x1", qa, then=qb))
    k.spawn("x2#1", waiter("x2", qa))
    k.spawn("y#1", waiter("y", qb))
    for _ in range(3):
        k.step()
    k.spawn("w#1", waker())
    k.spawn("other#1", waiter("never", CoQueue("nobody")))
    k.step()  # w#1 wakes x1#1 and x2#1
    order = []
    while k.forced is not None:
        order.append(k.forced[0].name)
        k.step()
    # x1#1 runs first and wakes y#1, which is entered before x2#1 (nested enter)
    assert order == ["x1#1", "y#1", "x2#1"] and log == ["x1", "y", "x2"]
    k.tasks["other#1"].coro.close()


def test_random_policy_only_ever_sees_the_woken_task_at_a_forced_step():
    seen: list[list[str]] = []

    class Spy(Random):
        def choose(self, runnable, position):
            seen.append([t.name for t in runnable])
            return super().choose(runnable, position)

    k = Kernel(Spy(7))
    q = CoQueue("q")

    async def waiter():
        await q.wait()
        await sched_point("io")

    async def waker():
        await sched_point("io")
        q.restart_all()
        await sched_point("io")

    k.spawn("w#1", waiter())
    k.step()
    for n in range(3):
        k.spawn(f"o#{n + 1}", waker() if n == 0 else waiter_free())
    k.run()
    forced = [i for i, e in enumerate(k.trace) if e.kind == "wake"]
    assert forced, "the waiter was never woken"
    after_wake = k.trace[forced[0] + 1:]
    first_run = next(e for e in after_wake if e.kind == "run")
    assert first_run.task == "w#1"
    assert ["w#1"] in seen


async def waiter_free():
    await sched_point("io")
    await sched_point("io")


@pytest.mark.parametrize("seed", [None, "x", True, 1.5])
def test_random_refuses_a_seed_that_is_not_an_int(seed):
    with pytest.raises(ArgumentError, match="seed must be an int"):
        Random(seed)


@pytest.mark.parametrize("names", [5, "vm-read#1", [1, 2], None])
def test_scripted_refuses_what_is_not_a_list_of_names(names):
    with pytest.raises(ArgumentError, match="Scripted"):
        Scripted(names)


def test_scripted_and_chooser_argument_checks():
    with pytest.raises(ArgumentError, match="then must be a policy"):
        Scripted([], then="fifo")
    with pytest.raises(ArgumentError, match="strict must be True or False"):
        Scripted([], strict=1)
    with pytest.raises(ArgumentError, match="fn must be a function"):
        Chooser(5)
    assert Scripted(("a#1",)).names == ["a#1"]


# --- the wake rule on the lab: a CowRequest's end (design 2.8) ------------------------------

WAKE_SCENARIO = "start\npar { vread 5b 4K; pwrite 5b 4K 0xbb; vread 6b 4K }"


def _every_run(text, **config):
    """Every run of ``text`` (a naive depth-first search over public API only):
    ``(schedule, offered, lab)`` with the runnable names offered at each decision."""
    import labkit as lk

    runs = []
    stack: list[list[int]] = [[]]
    while stack:
        prefix = stack.pop()
        offered: list[list[str]] = []

        def pick(runnable, prefix=prefix, offered=offered):
            i = len(offered)
            offered.append([t.name for t in runnable])
            return runnable[prefix[i] if i < len(prefix) else 0]

        lab = lk.build_secondary(policy=lk.Chooser(pick), **config)
        lab.play(text)
        for i in range(len(prefix), len(offered)):
            for alt in range(1, len(offered[i])):
                stack.append([*(prefix[j] if j < len(prefix) else 0 for j in range(i)), alt])
        runs.append((list(lab.schedule), offered, lab))
    return runs


def test_after_cow_request_end_the_woken_writer_runs_before_a_third_task():
    import labkit as lk

    runs = _every_run(WAKE_SCENARIO, design="2.8")
    explored = lk.explore(WAKE_SCENARIO, design="2.8", reduction="none")
    assert explored.complete and explored.interleavings == len(runs)
    assert explored.verdict == "safe"
    contested = 0
    for schedule, offered, lab in runs:
        trace = lab.trace
        for i, e in enumerate(trace):
            if e.kind != "wake" or e.task != "nbd-write#1" or e.detail != "by vm-read#1":
                continue
            assert any(t.kind == "cow-end" and t.task == "vm-read#1" for t in trace[:i])
            # Until nbd-write#1 runs, only tasks woken with it (FIFO: woken earlier) or
            # by them run: never a task that was merely runnable, like vm-read#2 when
            # it had not reached its CowRequest yet.
            woken = {t.task for t in trace[:i + 1] if t.kind == "wake"
                     and t.seq > max(x.seq for x in trace[:i] if x.kind == "run")}
            j = i + 1
            while True:
                t = trace[j]
                if t.kind == "wake":
                    woken.add(t.task)
                elif t.kind == "run":
                    if t.task == "nbd-write#1":
                        break
                    assert t.task in woken, (schedule, str(t))
                j += 1
            position = sum(1 for t in trace[:j] if t.kind == "run")
            assert offered[position] == ["nbd-write#1"], (schedule, position)
            contested += "vm-read#2" in _runnable_then(trace, i)
    assert contested, "no run had vm-read#2 runnable when nbd-write#1 was woken"


def _runnable_then(trace, i):
    """Tasks free to run (spawned or at a scheduling point, not just woken) at event ``i``."""
    state: dict[str, str] = {}
    for e in trace[:i]:
        if e.kind == "wake":
            state[e.task] = "woken"
        elif e.kind in ("spawn", "point"):
            state[e.task] = "runnable"
        elif e.kind == "wait":
            state[e.task] = "blocked"
        elif e.kind in ("done", "failed"):
            state[e.task] = "done"
    return [t for t, s in state.items() if s == "runnable"]


def test_replay_rejects_a_schedule_that_picks_another_task_after_the_wakeup():
    import labkit as lk

    for run in _every_run(WAKE_SCENARIO, design="2.8"):
        schedule, trace = run[0], run[2].trace
        hits = [i for i, e in enumerate(trace) if e.kind == "wake" and e.task == "nbd-write#1"
                and e.detail == "by vm-read#1" and "vm-read#2" in _runnable_then(trace, i)]
        if hits:
            break
    else:
        pytest.fail("no run where vm-read#2 could have gone first")
    position = sum(1 for t in trace[:hits[0]] if t.kind == "run")
    assert schedule[position] == "nbd-write#1"
    bad = [*schedule[:position], "vm-read#2", *schedule[position:]]
    with pytest.raises(ScheduleError) as exc:
        lk.replay(WAKE_SCENARIO, bad, design="2.8")
    assert exc.value.position == position
    assert ("nbd-write#1 was woken by vm-read#1 and runs at once (qemu_co_queue_run_restart); "
            "vm-read#2 cannot run here") in str(exc.value)
    assert lk.replay(WAKE_SCENARIO, schedule, design="2.8").schedule == schedule


def test_a_dropped_lab_with_tasks_never_run_warns_nothing():
    """A widget's Reset drops a lab whose queued tasks never ran: no "coroutine ... was
    never awaited" RuntimeWarning reaches the notebook."""
    import gc
    import warnings

    import labkit as lk

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        lab = lk.build_secondary(size="1M")
        lab.start()
        lab.vm_read(0, 4096)
        lab.primary_write(0, 4096, 0xBB)
        del lab
        gc.collect()
    assert [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)] == []


def test_event_log_reads_like_a_list_of_events():
    """The flat trace (Event.FIELDS per event in one list) indexes, slices and compares
    like the list of Events it stands for."""
    from labkit.kernel import Event, EventLog

    events = [Event(i, f"t{i}", "run", "n", i * 512, 512, f"d{i}", "op") for i in range(5)]
    log = EventLog(events)
    assert len(log) == 5 and list(log) == events and log == events
    assert log[-1] == events[-1] and log[1:4] == events[1:4] and log[::-2] == events[::-2]
    with pytest.raises(IndexError):
        log[5]
    with pytest.raises(IndexError):
        log[-6]
    log[2] = Event(2, "x", "wake")
    assert log[2] == Event(2, "x", "wake") and log[3] == events[3]
    assert log.record("y", "done", "", -1, -1, "", "") == 5 and log[5].task == "y"


def test_a_task_spawned_with_a_function_makes_its_coroutine_when_it_first_runs():
    made = []

    async def body() -> int:
        return 7

    def make():
        made.append(1)
        return body()

    k = Kernel()
    task = k.spawn("t#1", make)
    assert made == [] and task.coro is None
    k.run()
    assert made == [1] and task.result == 7

    k2 = Kernel()
    k2.spawn("t#1", make)
    k2.close()
    with pytest.raises(StateError, match="t#1 was closed before it ran"):
        k2.step()


@pytest.mark.parametrize("handoff", [False, True])
def test_comutex_relock_before_yield_2_8_takes_it_again_2_9_queues_behind(handoff):
    """qemu_co_mutex_unlock: 2.8 releases then wakes (the unlocker may lock again before
    it yields; the woken waiter waits again); 2.9+ hands the mutex to the waiter."""
    k = Kernel()
    m = CoMutex("m", handoff=handoff)
    log: list[str] = []

    async def a():
        await m.lock()
        await sched_point("io")
        m.unlock()
        await m.lock()  # no yield between the unlock and this lock
        log.append("a again")
        await sched_point("io")
        m.unlock()

    async def b():
        await m.lock()
        log.append("b in")
        await sched_point("io")
        m.unlock()

    k.spawn("a#1", a())
    k.spawn("b#1", b())
    k.run()
    assert log == (["b in", "a again"] if handoff else ["a again", "b in"])
    assert m.holder is None


def test_comutex_unlock_of_a_free_mutex_is_refused_in_both_modes():
    for handoff in (False, True):
        with pytest.raises(StateError, match="unlocked while not locked"):
            CoMutex("m", handoff=handoff).unlock()


# --- observation: one channel, instruments that fail --------------------------


class _Raises(Instrument):
    def __init__(self, hook: str) -> None:
        self.hook = hook
        self.calls = 0

    def _maybe(self, hook: str) -> None:
        self.calls += 1
        if hook == self.hook:
            raise RuntimeError(f"broken {hook}")

    def before_step(self, task: Task) -> None:
        self._maybe("before_step")

    def after_step(self, task: Task) -> None:
        self._maybe("after_step")

    def on_event(self, event: Event) -> None:
        self._maybe("on_event")

    def on_access(self, task: Task, access: Access) -> None:
        self._maybe("on_access")


@pytest.mark.parametrize("hook", ["before_step", "after_step", "on_event", "on_access"])
def test_a_failing_instrument_is_removed_with_a_warning_and_the_task_keeps_its_outcome(hook):
    async def body():
        touch(("data", "n"), 0, 1, True)
        await sched_point("io")
        raise BlockError(errno.EIO, "Input/output error")

    k = Kernel()
    task = k.spawn("t#1", body())
    bad, good = _Raises(hook), Instrument()
    k.add_instrument(bad)
    k.add_instrument(good)
    with pytest.warns(InstrumentWarning, match=f"RuntimeError: broken {hook} in {hook}") as w:
        k.run()
    assert len(w) == 1 and w[0].message.instrument is bad and w[0].message.hook == hook
    assert k.instruments == (good,)
    # the task's own exception, not the instrument's, in the task and in the trace
    assert isinstance(task.exception, BlockError) and task.exception.__context__ is None
    assert task.state == TaskState.FAILED == "failed"
    assert k.trace[-1].kind == EventKind.FAILED and "Input/output error" in k.trace[-1].detail


def test_an_instrument_failing_while_a_task_raises_a_bug_leaves_that_bug_to_propagate():
    async def body():
        raise ZeroDivisionError("model bug")
        await sched_point("io")  # pragma: no cover

    k = Kernel()
    k.add_instrument(_Raises("after_step"))
    task = k.spawn("t#1", body())
    with pytest.warns(InstrumentWarning), pytest.raises(ZeroDivisionError, match="model bug"):
        k.step()
    assert isinstance(task.exception, ZeroDivisionError) and k.instruments == ()


def test_instrument_hooks_are_chosen_when_added():
    class Events(Instrument):
        def __init__(self) -> None:
            self.kinds: list[str] = []

        def on_event(self, event: Event) -> None:
            self.kinds.append(event.kind)

    k = Kernel()
    k.tracing = False
    events = Events()
    k.add_instrument(events)
    with pytest.raises(StateError, match="already an instrument"):
        k.add_instrument(events)
    with pytest.raises(ArgumentError, match="labkit.kernel.Instrument"):
        k.add_instrument(object())  # type: ignore[arg-type]
    with pytest.raises(ArgumentError, match="True or False"):
        k.tracing = 1  # type: ignore[assignment]
    k.spawn("a#1", worker([], "a", 1))
    k.run()
    assert events.kinds == ["spawn", "run", "point", "run", "done"] and not k.trace
    k.remove_instrument(events)
    with pytest.raises(StateError, match="not an instrument"):
        k.remove_instrument(events)


def test_access_sink_instrument_gets_tuples():
    class Sink(Instrument):
        def __init__(self) -> None:
            self.access_sink = []

    async def body():
        touch(("map", "hidden"), 0, 4, False, waits=True)

    k = Kernel()
    sink = Sink()
    k.add_instrument(sink)
    k.spawn("t#1", body())
    k.run()
    assert sink.access_sink == [(("map", "hidden"), 0, 4, False, True)]


# --- the yield protocol: a foreign await ----------------------------------------


class _Foreign:
    def __await__(self):
        yield "an asyncio future"


def test_a_foreign_await_fails_that_task_and_run_reports_it():
    async def foreign():
        await sched_point("io")
        await _Foreign()
        return "never"

    k = Kernel()
    bad = k.spawn("bad#1", foreign())
    ok = k.spawn("ok#1", worker([], "ok", 3))
    with pytest.raises(ForeignAwaitError, match="bad#1 awaited 'an asyncio future'") as exc:
        k.run()
    assert isinstance(exc.value, TypeError) and exc.value.task == "bad#1"
    assert bad.state == FAILED and bad.exception is exc.value
    assert k.trace[-1].kind == "failed" and k.trace[-1].task == "bad#1"
    with pytest.raises(TaskFailed):
        _ = bad.result
    k.run()  # no task lost: the others run on and the kernel ends cleanly
    assert ok.result == "ok" and not k.has_runnable() and k.blocked() == []


def test_a_task_may_handle_a_foreign_await_error():
    async def careful():
        try:
            await _Foreign()
        except ForeignAwaitError:
            await sched_point("io")
            return "recovered"

    k = Kernel()
    task = k.spawn("t#1", careful())
    k.run()
    assert task.result == "recovered"


def test_an_asyncio_future_is_a_foreign_await():
    import asyncio

    async def body():
        await asyncio.sleep(0)

    k = Kernel()
    task = k.spawn("t#1", body())
    with pytest.raises(ForeignAwaitError, match="t#1 awaited None"):
        k.step()
    assert task.state == FAILED


def test_kernel_and_spawn_refuse_wrong_types_at_the_call():
    with pytest.raises(ArgumentError, match=r"Kernel\(policy\).*got 'fifo'"):
        Kernel("fifo")  # type: ignore[arg-type]
    k = Kernel()
    with pytest.raises(ArgumentError, match=r"spawn\('a#1', coro\).*got 5"):
        k.spawn("a#1", 5)  # type: ignore[arg-type]
    with pytest.raises(ArgumentError, match="non-empty str"):
        k.spawn("", worker([], "a", 1))
    assert k.tasks == {} and not k.trace


def test_the_current_task_belongs_to_the_kernel_stepping():
    seen = []

    async def body():
        seen.append((current_task(), k.current))
        await sched_point("io")

    k = Kernel()
    task = k.spawn("t#1", body())
    assert current_task() is None and k.current is None
    k.step()
    assert seen == [(task, task)] and k.current is None and current_task() is None


def test_states_and_kinds_are_str_enums_and_the_trace_json_is_text():
    k = Kernel()
    task = k.spawn("a#1", worker([], "a", 1))
    k.run()
    assert task.state is TaskState.DONE and task.state == "done" and DONE is TaskState.DONE
    kinds = [e.kind for e in k.trace]
    assert kinds == ["spawn", "run", "point", "run", "done"]
    assert json.dumps([e.as_dict()["kind"] for e in k.trace]) == \
        '["spawn", "run", "point", "run", "done"]'
    assert f"{EventKind.REQ_START}" == "req-start" and str(TaskState.BLOCKED) == "blocked"


class _CollectAtDrain(Instrument):
    """Runs the garbage collector inside a step (at ``drained-begin``), as an allocation
    there may."""

    def on_event(self, event: Event) -> None:
        if event.kind == "drained-begin":
            gc.collect()


def test_an_abandoned_labs_coroutines_never_write_into_another_labs_trace() -> None:
    """A lab dropped with a task suspended mid-copy leaves coroutines that only the
    garbage collector frees; their ``finally`` blocks (a request's end,
    ``cow_request_end``) run then and must not be recorded into the kernel that is
    stepping when the collection starts."""
    import labkit as lk
    from labkit.run import ScenarioRun

    race = "start\npar { vread 5b 4K; pwrite 5b 4K 0xbb }\n"
    want = [str(e) for e in lk.run_scenario(race, size="128K", design="none").trace]
    for steps in range(1, 6):  # dropped in the COW's read, its write, and after it
        lab = lk.build_secondary(size="128K", design="none")
        lab.kernel.add_instrument(_CollectAtDrain())
        run = ScenarioRun(lab, race)
        dropped = lk.build_secondary(size="128K", design="none")
        dropped.start()
        dropped.run()
        dropped.primary_write(0, 4096, 0xAA)
        for _ in range(steps):
            if dropped.runnable():
                dropped.step()
        dropped.cycle = dropped  # type: ignore[attr-defined]  # only the collector frees it
        del dropped
        while not run.done:
            run.step()
        assert [str(e) for e in lab.trace] == want, f"dropped after {steps} step(s)"
