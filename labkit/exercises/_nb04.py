"""Notebook 04's exercises."""

from __future__ import annotations

import re
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

from labkit.config import DESIGNS
from labkit.exercises._core import (
    START_STEPS,
    Exercise,
    Mistake,
    Option,
    choice,
    lab_after,
    list_form,
    one_line,
    same_set,
)

RACE = "start\npar { vread 5b 4K; pwrite 5b 4K 0xbb }\n"
READER, WRITER = "vm-read#1", "nbd-write#1"
_SCHEDULE_ITEM = re.compile(r"^[A-Za-z][A-Za-z0-9_.:-]*#\d+(\*\d+)?$")


def _race_schedule() -> str:
    from labkit.explore import explore

    return explore(RACE, size="128K", design="none").violations[0].schedule_text


def _schedule_as_shown(answer: Any) -> Any:
    """A schedule copied from the playground's "schedule so far" line (``start#1 ×3 ·
    ↯ vm-read#1``) as the schedule syntax (``start#1*3 vm-read#1``): the same choices."""
    if not isinstance(answer, str):
        return answer
    text = answer.split("):", 1)[1] if answer.lstrip().startswith("schedule so far") else answer
    text = re.sub(r"\s*×\s*(\d+)", r"*\1", text)
    return " ".join(text.replace("·", " ").replace("↯", " ").split())


def _schedule_form(answer: Any) -> str | None:
    example = "'name#1*2 other#1 ...'"
    if not isinstance(answer, str):
        return (f"Answer a schedule as a string of task names, e.g. {example} "
                f"(you gave {type(answer).__name__} {answer!r}).")
    items = [t for t in re.split(r"[\s,]+", answer.strip()) if t]
    if not items:
        return f"Your schedule is empty: write the task chosen at each decision, e.g. {example}."
    bad = [t for t in items if not _SCHEDULE_ITEM.match(t)]
    if not items or bad:
        return (f"A schedule is a string of task names, each optionally with a run-length, "
                f"e.g. {example}; {bad[0] if bad else answer!r} is not a task name (task "
                f"names are as the playground's buttons show them).")
    return None


def _replayed(answer: str) -> Any:
    """The lab the schedule names, or the labkit error that refused it."""
    from labkit.errors import LabkitError
    from labkit.explore import replay

    try:
        return replay(RACE, answer, size="128K", design="none")
    except LabkitError as exc:
        return exc


def _schedule_violates(answer: str, want: str) -> bool:
    lab = _replayed(answer)
    return not isinstance(lab, Exception) and bool(lab.violations())


def _names(answer: str) -> list[str]:
    from labkit.trace import parse_schedule

    return parse_schedule(answer)


def _does_not_fit(answer: str, want: str) -> bool:
    return isinstance(_replayed(answer), Exception)


def _without_start(answer: str, want: str) -> bool:
    return _does_not_fit(answer, want) and not _names(answer)[:1] == ["start#1"]


def _engine_says(answer: str) -> str:
    """lk.replay's own reason for refusing the schedule."""
    lab = _replayed(answer)
    return f"The engine says: {lab}" if isinstance(lab, Exception) else ""


def _resumes_between_copy_and_landing(answer: str, want: str) -> bool:
    """The instructive near-miss: the read passed hidden first, then the write copied, then
    the read resumed before the write landed (and read the old data)."""
    lab = _replayed(answer)
    if isinstance(lab, Exception) or lab.violations():
        return False
    names = [n for n in _names(answer) if n in (READER, WRITER)]
    if not names or names[0] != READER or WRITER not in names:
        return False
    first_write = names.index(WRITER)
    resumed = [i for i in range(first_write, len(names)) if names[i] == READER]
    return bool(resumed) and WRITER in names[resumed[0]:]


def _near_miss(want: str) -> str:
    from labkit.trace import format_schedule, parse_schedule

    names = parse_schedule(want)
    last_write = max(i for i, n in enumerate(names) if n == WRITER)
    moved = names[:last_write] + [n for n in names[last_write + 1:]] + [WRITER]
    return format_schedule(moved)


def _read_before_write(answer: str, want: str) -> bool:
    names = _names(answer)
    reads = [i for i, n in enumerate(names) if n == READER]
    writes = [i for i, n in enumerate(names) if n == WRITER]
    return bool(reads) and (not writes or max(reads) < min(writes))


def _write_before_read(answer: str, want: str) -> bool:
    names = _names(answer)
    reads = [i for i, n in enumerate(names) if n == READER]
    writes = [i for i, n in enumerate(names) if n == WRITER]
    return bool(writes) and (not reads or max(writes) < min(reads))


def _sequential(first: str) -> Callable[[str], str]:
    """The solution's schedule with ``first`` run to its end before the other task."""
    def example(want: str) -> str:
        from labkit.trace import format_schedule, parse_schedule

        names = parse_schedule(want)
        cut = names.index(READER)
        tail = names[cut:]
        second = WRITER if first == READER else READER
        order = ([n for n in tail if n == first] + [n for n in tail if n == second]
                 + [n for n in tail if n not in (READER, WRITER)])
        return format_schedule(names[:cut] + order)
    return example


def _bad_schedule(want: str) -> str:
    from labkit.trace import format_schedule, parse_schedule

    names = parse_schedule(want)
    return format_schedule([n for n in names if n != READER])


_design_names = list_form("designs 'none', '2.8', '4.0'", lambda d: d in DESIGNS, "['none']")


def _design_list_form(answer: Any) -> str | None:
    """Design names are strings: an unquoted 2.8 or 4.0 gets "quote them"."""
    items = answer if isinstance(answer, (list, tuple)) else [answer]
    numbers = [a for a in items if isinstance(a, (int, float)) and not isinstance(a, bool)]
    if numbers:
        return (f"Design names are strings: quote them, e.g. ['{numbers[0]}'] "
                f"(you wrote {numbers[0]!r} without quotes).")
    return _design_names(answer)


def _designs() -> list[str]:
    from labkit.explore import explore

    return [d for d in DESIGNS if explore(RACE, size="128K", design=d).verdict == "safe"]


ex04 = SimpleNamespace(
    schedule=Exercise(
        name="04.schedule",
        question=f"Write a schedule string for `{one_line(RACE)}` (design "
                 "'none') that makes the VM read primary data.",
        solve=_race_schedule, form=_schedule_form, right=_schedule_violates,
        mistakes=[Mistake("the start steps are left out", _without_start,
                          lambda want: want.split(" ", 1)[1],
                          "Your schedule does not begin with the start task's decisions: the "
                          "scenario's `start` line runs first, as task start#1 (the playground "
                          "takes those steps itself before it shows you buttons; "
                          "format_schedule(playground.lab.schedule) includes them).", _engine_says),
                  Mistake("a schedule the scenario cannot follow", _does_not_fit, _bad_schedule,
                          "That schedule does not fit the scenario. Play it in the playground, "
                          "then copy format_schedule(playground.lab.schedule).", _engine_says),
                  Mistake("the read resumes between the copy and the landing",
                          _resumes_between_copy_and_landing, _near_miss,
                          "Close: the read passed hidden before the copy — but it resumed after "
                          "step 2 and before step 3, so the secondary disk still held the old "
                          "data and the read returned it. A conflicting read needs the new data "
                          "on the secondary disk: let the write land before the read resumes."),
                  Mistake("the read runs to its end first", _read_before_write, _sequential(READER),
                          "Your schedule lets the read run to its end before the write starts: the "
                          "read sees the old data. The read must be preempted after it has passed "
                          "hidden and before it reads the secondary disk."),
                  Mistake("the write runs to its end first", _write_before_read,
                          _sequential(WRITER),
                          "Your schedule lets the write run to its end first: its copy saved the "
                          "old data in hidden before the read looked there, so the read finds it. "
                          "The read must pass hidden before the copy.")],
        hints=["Let vm-read#1 run until it waits for the secondary disk, then let nbd-write#1 run "
               "to the end, then finish the read.",
               "labkit.trace.format_schedule(lab.schedule) prints the schedule of a run you made "
               "with the playground."],
        explanation="The read checked hidden (empty), then the write copied the cluster and "
                    "landed, then the read took the new data from the secondary "
                    "disk.", placeholder="",
        normalise=_schedule_as_shown),
    designs=Exercise(
        name="04.designs",
        question="Which designs ('none', '2.8', '4.0') prevent every conflicting read in that "
                 "scenario? Answer a list of design names.",
        solve=_designs, form=_design_list_form,
        right=same_set,
        mistakes=[Mistake("'none' protects", lambda a, w: "none" in a and "none" not in w,
                          lambda want: ["none", *want],
                          "'none' has no protection at all: you made the read return the primary's "
                          "data under it in the playground."),
                  Mistake("only the reader-side design protects",
                          lambda a, w: set(a) < set(w) and "4.0" not in a, lambda want: ["2.8"],
                          "4.0 has no CowRequest in the read, but the copy's write to hidden is a "
                          "serialising request: it waits for every read in flight on hidden. Is "
                          "that enough here?"),
                  Mistake("only the writer-side design protects",
                          lambda a, w: set(a) < set(w) and "2.8" not in a, lambda want: ["4.0"],
                          "In 2.8 the read holds a CowRequest over its backup clusters: the "
                          "write's backup_do_cow waits for it until the read is done. Switch the "
                          "playground to 2.8 and play your order again.")],
        hints=["2.8 makes the read hold a CowRequest; 4.0 makes the COW's write to hidden wait for "
               "reads of hidden."],
        explanation="Both 2.8 (reader-side CowRequest) and 4.0 (serialising writes to hidden) are "
                    "safe; 'none' is not.", placeholder=[],
        forms=lambda want: [f"{d}: safe" for d in want] + [" and ".join(want)],
        phrases=("both designs", "both protections", "(and so the write) waits for the read",
                 "the write waits for the read", "both are safe")),
)


# the wake rule (two writes wait for one read's CowRequest) and the 4.0 mechanism:
# predictions, answered by the engine
WAKE = "start\npar { vread 5b 4K; pwrite 5b 4K 0xbb; pwrite 6b 4K 0xbc; vread 20b 4K }\n"
WRITER2, READER2 = "nbd-write#2", "vm-read#2"


def _after_wake() -> str:
    from labkit.kernel import Scripted

    lab = lab_after(WAKE, [*START_STEPS, READER, WRITER, WRITER2], design="2.8",
                    size="128K")
    assert {WRITER, WRITER2} <= {t.name for t in lab.kernel.blocked()}

    def step(name: str) -> None:
        lab.kernel.policy = Scripted([*lab.schedule, name])
        lab.step()

    while READER in {t.name for t in lab.runnable()}:
        step(READER)
    forced = []  # the woken tasks QEMU enters at once (no choice: one button)
    while lab.kernel.forced is not None:
        forced.append(lab.kernel.forced[0].name)
        step(forced[-1])
    offered = {t.name for t in lab.runnable()}
    waits = {t.name: t.why_blocked for t in lab.kernel.blocked()}.get(WRITER2, "")
    if forced == [WRITER, WRITER2] and WRITER in waits and offered == {WRITER, READER2}:
        return "a"
    return "b" if not forced and offered >= {WRITER, WRITER2, READER2} else "?"


ex04.wake = choice(
    name="04.wake",
    question=f"Design 2.8, `{one_line(WAKE)}`. You step vm-read#1 once: it holds a CowRequest "
             "over backup cluster 0. Then you step nbd-write#1 and nbd-write#2 (blocks 5 and "
             "6, both in cluster 0): both now wait for vm-read#1's CowRequest (their buttons "
             "are grey). vm-read#2 (block 20, cluster 1) could run all along. You step "
             "vm-read#1 until it ends, which ends its CowRequest. What happens next?",
    options=[Option("a", "nbd-write#1 runs one step, then nbd-write#2 one step, which finds a "
                         "CowRequest of nbd-write#1 and waits again; then you choose between "
                         "nbd-write#1 and vm-read#2"),
             Option("b", "you choose at once among nbd-write#1, nbd-write#2 and vm-read#2",
                    "every scheduling point is a free choice",
                    "When a task ends a CowRequest, the tasks waiting for it are woken, and QEMU "
                    "enters them as soon as the waker yields or ends, in the order they began "
                    "waiting, before any other task (qemu_co_queue_run_restart): there is no "
                    "choice at that point."),
             Option("c", "nbd-write#1 runs to its end, then nbd-write#2 runs to its end, then "
                         "you choose",
                    "a woken task runs until it ends",
                    "A woken coroutine runs only until it next yields — its next I/O or lock, "
                    "a scheduling point like any other; after that you choose again."),
             Option("d", "nbd-write#1 runs one step, then nbd-write#2 one step: both copy "
                         "backup cluster 0",
                    "a woken task goes on without looking again",
                    "Being woken does not mean the way is clear: backup_do_cow's "
                    "wait_for_overlapping_requests looks at the CowRequests in flight again "
                    "after every wake-up — and the first write woken has just registered one.")],
    solve=_after_wake,
    explanation="Ending the CowRequest woke both writes; QEMU enters them at once, in the order "
                "they began waiting, each until it next yields (qemu_co_queue_run_restart). "
                "nbd-write#1 registers its own CowRequest over cluster 0 and starts its copy; "
                "nbd-write#2, woken too, looks at the CowRequests in flight again "
                "(wait_for_overlapping_requests loops) and waits for nbd-write#1's. Only then do "
                "you choose again.",
    hints=["What does cow_request_end do with the tasks waiting for it, and when do they run?",
           "A woken write is back inside wait_for_overlapping_requests: what does it find "
           "there once the first woken write has run?"])

SERIALISE = RACE


def _copy_meets_read() -> str:
    from labkit.errors import ScheduleError

    lab = lab_after(SERIALISE, [*START_STEPS, READER], design="4.0", size="128K")
    from labkit.kernel import Scripted

    for _ in range(20):
        if WRITER not in {t.name for t in lab.runnable()}:
            break
        lab.kernel.policy = Scripted([*lab.schedule, WRITER])
        try:
            lab.step()
        except ScheduleError:
            break
    why = {t.name: t.why_blocked for t in lab.kernel.blocked()}.get(WRITER, "")
    if READER in why and "hidden" in why:
        return "a"
    return "b" if any(e.kind == "cow-copy" for e in lab.trace) else "d"


ex04.serialise = choice(
    name="04.serialise",
    question="Design 4.0, the same race. vm-read#1 has looked at hidden (nothing there) and waits "
             "for its read of the secondary disk. nbd-write#1 runs: its copy of backup cluster 0 "
             "now wants to write the old data into hidden. What happens?",
    options=[Option("a", "the copy's write to hidden waits until vm-read#1's read has finished"),
             Option("b", "the copy writes hidden at once: the read has already left hidden",
                    "a read leaves a layer once it has looked there",
                    "The read of hidden is a tracked request: it stays in flight on hidden until "
                    "the read below it (of the secondary disk) returns. A serialising write waits "
                    "for every overlapping request in flight on its node."),
             Option("c", "vm-read#1 is cancelled and read again after the copy",
                    "QEMU retries a read that raced",
                    "Nothing is cancelled or retried in QEMU's block layer: requests wait for each "
                    "other (wait_serialising_requests), they do not restart."),
             Option("d", "vm-read#1 waits for the copy's write to hidden",
                    "serialising makes the reader wait",
                    "New reads of hidden wait for a serialising write — but vm-read#1 is already "
                    "in flight there, so it is the copy's write that waits for it.")],
    solve=_copy_meets_read,
    explanation="The copy's write to hidden is serialising (mark_request_serialising): it waits "
                "for every overlapping request in flight on hidden, and vm-read#1's read of "
                "hidden is still in flight (a tracked request) until its read of the secondary "
                "disk returns. So the write cannot land before the read has its data.",
    hints=["How long is a read of hidden in flight on hidden?",
           "A serialising request waits for overlapping requests in flight on its node."],
    phrases=("tracked requests in flight on hidden", "reads still in flight on hidden",
             "wait for reads still in flight", "waits until vm-read#1",
             "read of hidden is still in flight", "stays in flight on hidden"))


