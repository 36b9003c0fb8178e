"""Notebook 07's exercises (image fleecing), each answer computed by the engine.

* 7.1 ``overlay`` — a prediction: what a backup client reads after a guest write;
* 7.2 ``schedule`` — an open task checked by the engine: a schedule of the fleecing
  race under scheme "2.12" that breaks the point-in-time view (any the engine
  accepts is right);
* 7.3 ``serialise`` — a prediction on 3.0's mechanism: the copy meets the read;
* 7.4 ``frozen`` — a prediction on 7.2's: a guest write meets a frozen snapshot read;
* 7.5 ``cbw_error`` — a prediction: ``on-cbw-error=break-snapshot``, who pays.

Every wrong option of a prediction names the misconception behind it.
"""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

from labkit.exercises._core import Exercise, Mistake, Option, choice, lab_after, one_line
from labkit.exercises._nb04 import _schedule_as_shown, _schedule_form

#: The fleecing race of the lesson: the client reads block 5 while the guest overwrites it.
RACE07 = "# config: graph=fleecing size=128K\nfleece\npar { cread 5b 4K; vwrite 5b 4K 0xbb }\n"
CLIENT, GUEST = "client-read#1", "vm-write#1"
OVERLAY07 = "# config: graph=fleecing size=128K\nfleece\nvwrite 5b 4K 0xbb\ncread 5b 4K\n"
BREAK07 = ("# config: graph=fleecing size=128K backup_cluster=4K\n"
           "fleece on-cbw-error=break-snapshot\ninject-error write\nvwrite 0 4K 0xaa\n"
           "cread 64K 4K\n")


def _outcome(lab: Any, task: str) -> Any:
    return next(o for o in lab.outcomes if o.task == task)


# --- 7.1 --------------------------------------------------------------------------------

def _overlay_read() -> str:
    from labkit.lab import run_scenario

    lab = run_scenario(OVERLAY07, design="2.12")
    o = _outcome(lab, CLIENT)
    if o.error:
        return "c"
    got = set(o.data)
    return {frozenset({0x15}): "a", frozenset({0xBB}): "b",
            frozenset({0}): "d"}.get(frozenset(got), "?")


# --- 7.2 --------------------------------------------------------------------------------

def _race_schedule() -> str:
    from labkit.explore import explore

    return explore(RACE07, design="2.12").violations[0].schedule_text


def _replayed(answer: str) -> Any:
    """The lab the schedule names, or the labkit error that refused it."""
    from labkit.errors import LabkitError
    from labkit.explore import replay

    try:
        return replay(RACE07, answer, design="2.12")
    except LabkitError as exc:
        return exc


def _names(answer: str) -> list[str]:
    from labkit.trace import parse_schedule

    return parse_schedule(answer)


def _breaks_the_view(answer: str, want: str) -> bool:
    lab = _replayed(answer)
    return not isinstance(lab, Exception) and any(
        v.kind == "fleecing-read" for v in lab.violations())


def _does_not_fit(answer: str, want: str) -> bool:
    return isinstance(_replayed(answer), Exception)


def _with_fleece(answer: Any) -> Any:
    """A schedule as the trainee copied it (the playground's "schedule so far" line or
    ``format_schedule``), with the ``fleece`` line's decision put first if it was left
    out: the playground takes that step itself, so with it or without it is the same
    play (``fleece#1 client-read#1 ...`` and ``client-read#1 ...``)."""
    from labkit.errors import LabkitError

    answer = _schedule_as_shown(answer)
    if not isinstance(answer, str) or not answer.strip():
        return answer
    try:
        first = _names(answer)[:1]
    except LabkitError:  # not a schedule: the form check says why
        return answer
    return answer if first == ["fleece#1"] else f"fleece#1 {answer}"


def _engine_says(answer: str) -> str:
    lab = _replayed(answer)
    return f"The engine says: {lab}" if isinstance(lab, Exception) else ""


def _order(answer: str) -> list[str]:
    return [n for n in _names(answer) if n in (CLIENT, GUEST)]


def _client_first_to_end(answer: str, want: str) -> bool:
    names = _order(answer)
    reads = [i for i, n in enumerate(names) if n == CLIENT]
    writes = [i for i, n in enumerate(names) if n == GUEST]
    return bool(reads) and (not writes or max(reads) < min(writes))


def _guest_first_to_end(answer: str, want: str) -> bool:
    names = _order(answer)
    reads = [i for i, n in enumerate(names) if n == CLIENT]
    writes = [i for i, n in enumerate(names) if n == GUEST]
    return bool(writes) and (not reads or max(writes) < min(reads))


def _resumes_before_landing(answer: str, want: str) -> bool:
    """The near-miss: the client passed the overlay first, the guest's copy ran, and the
    client resumed before the guest's new data landed (it read the old data)."""
    lab = _replayed(answer)
    if isinstance(lab, Exception) or lab.violations():
        return False
    names = _order(answer)
    if not names or names[0] != CLIENT or GUEST not in names:
        return False
    first = names.index(GUEST)
    resumed = [i for i in range(first, len(names)) if names[i] == CLIENT]
    return bool(resumed) and GUEST in names[resumed[0]:]


def _sequential(first: str) -> Callable[[str], str]:
    def example(want: str) -> str:
        from labkit.trace import format_schedule

        names = _names(want)
        cut = names.index(CLIENT)
        tail = names[cut:]
        second = GUEST if first == CLIENT else CLIENT
        return format_schedule(names[:cut] + [n for n in tail if n == first]
                               + [n for n in tail if n == second])
    return example


def _near_miss(want: str) -> str:
    from labkit.trace import format_schedule

    names = _names(want)
    last = max(i for i, n in enumerate(names) if n == GUEST)
    return format_schedule(names[:last] + names[last + 1:] + [GUEST])


# --- 7.3 --------------------------------------------------------------------------------

def _guest_as_far_as_it_goes(design: str) -> Any:
    """The race under ``design``: the client steps once (past the overlay, or into its
    snapshot read), then the guest write runs until it cannot."""
    from labkit.errors import ScheduleError
    from labkit.kernel import Scripted

    lab = lab_after(RACE07, ["fleece#1", CLIENT], design, graph="fleecing", size="128K")
    for _ in range(30):
        if GUEST not in {t.name for t in lab.runnable()}:
            break
        lab.kernel.policy = Scripted([*lab.schedule, GUEST])
        try:
            lab.step()
        except ScheduleError:
            break
    return lab


def _copy_meets_client() -> str:
    lab = _guest_as_far_as_it_goes("3.0")
    why = {t.name: t.why_blocked for t in lab.kernel.blocked()}.get(GUEST, "")
    copied_into_overlay = any(e.kind == "req-end" and e.task == GUEST and e.node == "fleece"
                              for e in lab.trace)
    if CLIENT in why and not copied_into_overlay:
        return "a"
    return "b" if copied_into_overlay else "d"


# --- 7.4 --------------------------------------------------------------------------------

def _write_meets_frozen_read() -> str:
    lab = _guest_as_far_as_it_goes("7.2")
    why = {t.name: t.why_blocked for t in lab.kernel.blocked()}.get(GUEST, "")
    copied = any(e.kind == "cow-end" and e.task == GUEST for e in lab.trace)
    landed = any(e.kind == "req-end" and e.task == GUEST and e.node == "live-disk"
                 and e.op == "write" for e in lab.trace)
    if CLIENT in why and copied and not landed:
        return "a"
    if CLIENT in why and not copied:
        return "b"
    return "d" if landed else "c"


# --- 7.5 --------------------------------------------------------------------------------

def _who_pays() -> str:
    from labkit.lab import run_scenario

    lab = run_scenario(BREAK07, design="7.2")
    write_ok = _outcome(lab, GUEST).error is None
    read_ok = _outcome(lab, CLIENT).error is None
    return {(False, True): "a", (True, False): "b", (True, True): "c",
            (False, False): "d"}[(write_ok, read_ok)]


ex07 = SimpleNamespace(
    overlay=choice(
        "07.overlay",
        "Scheme '2.12', `" + one_line(OVERLAY07.split("\n", 1)[1]) + "` (the live disk's "
        "original data: block 5 holds 0x15). The backup started (fleece), then the guest "
        "wrote 0xbb to block 5, then the backup client reads block 5 of the export. What "
        "does the client get?",
        [Option("a", "0x15: the old contents, which the fleece overlay now holds"),
         Option("b", "0xbb: the overlay is empty, so the read falls through to the live disk",
                "the copy happens only when the backup client asks for the data",
                "Nothing waits for the client: the guest write's before-write notifier "
                "(backup_before_write_notify -> backup_do_cow) copied the old contents of "
                "cluster 0 (blocks 0–15) into the overlay before its new data landed (step 2 "
                "before step 3). By the time the client reads, the overlay holds block 5."),
         Option("c", "an error: sync=none copied nothing, so block 5 is not in the backup",
                "a fleecing export serves only what the backup job has copied",
                "The overlay's backing is the live disk: a cluster the overlay does not "
                "hold is read from its backing, as in any qcow2 chain. That is how the "
                "export serves the blocks nobody has written since the backup started."),
         Option("d", "zeros: the overlay is a new, empty qcow2 image",
                "an unallocated qcow2 cluster always reads as zeros",
                "Only without a backing file. The overlay was created with backing = the "
                "live disk, and its cluster 0 (blocks 0–15) is no longer unallocated "
                "anyway: the guest's copy-before-write filled it.")],
        _overlay_read,
        "Before the guest's 0xbb landed, its copy-before-write put the old contents of "
        "cluster 0 (blocks 0–15) into the overlay; the client's read of block 5 stops at the "
        "overlay, which now holds it: 0x15, the disk as it was when the backup started.",
        ["What did the guest write do before its new data reached the live disk?",
         "A read of a qcow2 overlay stops at the first layer that holds the cluster."]),
    schedule=Exercise(
        "07.schedule",
        "Write a schedule string for `" + one_line(RACE07.split("\n", 1)[1]) + "` (scheme "
        "'2.12') that makes the backup client read data the guest wrote after the backup "
        "started.",
        _race_schedule, _schedule_form, _breaks_the_view,
        [Mistake("a schedule the scenario cannot follow", _does_not_fit,
                 lambda want: " ".join(n for n in want.split() if CLIENT not in n),
                 "That schedule does not fit the scenario. Play it in the playground, then "
                 "copy format_schedule(playground.lab.schedule).", _engine_says),
         Mistake("the client resumes between the copy and the landing",
                 _resumes_before_landing, _near_miss,
                 "Close: the client passed the overlay before the copy — but it resumed "
                 "after the copy and before the guest's data landed, so the live disk still "
                 "held the old data. Let the guest write land before the client resumes."),
         Mistake("the client reads to its end first", _client_first_to_end,
                 _sequential(CLIENT),
                 "Your schedule lets the client's read end before the guest writes: it reads "
                 "the old data. The read must be interrupted after it has passed the overlay "
                 "and before it reads the live disk."),
         Mistake("the guest writes to its end first", _guest_first_to_end,
                 _sequential(GUEST),
                 "Your schedule lets the guest write end first: its copy put the old data in "
                 "the overlay before the client looked there, so the client finds it. The "
                 "client must pass the overlay before the copy.")],
        ["Let client-read#1 run until it waits for the live disk, then let vm-write#1 run to "
         "its end, then finish the read.",
         "format_schedule(playground.lab.schedule) prints the schedule you played."],
        "The client's read found cluster 0 unallocated in the overlay and went on to the live "
        "disk; parked there, the guest write copied the cluster and landed; the read resumed "
        "and took the guest's new data from the live disk.",
        placeholder="", normalise=_with_fleece),
    serialise=choice(
        "07.serialise",
        "Scheme '3.0', the same race. client-read#1 has passed the overlay (cluster 0 "
        "unallocated) and waits for its read of the live disk. vm-write#1 runs as far as it "
        "can: its copy of cluster 0 wants to write the old contents into the overlay. What "
        "happens?",
        [Option("a", "the copy's write into the overlay waits until the client's read ends"),
         Option("b", "the copy writes the overlay at once: the client's read has moved on",
                "a read leaves a layer once it has looked there",
                "The client's read of the overlay is a tracked request on the overlay until "
                "the read of its backing (the live disk) returns. In 3.0 the backup job's "
                "writes to the target are serialising (f8d59dfb40): they wait for every "
                "overlapping request in flight on the target."),
         Option("c", "the guest write waits before it copies, as for a 2.8 CowRequest",
                "3.0 protects the reader with a lock the writer must wait for",
                "The client holds no CowRequest: 3.0 changed the writer's side. The copy "
                "reads the old contents at once; it is its *write into the overlay* that "
                "is serialising."),
         Option("d", "the client's read is restarted after the copy",
                "QEMU retries a read that raced",
                "Nothing in QEMU's block layer restarts a request: requests wait for each "
                "other (wait_serialising_requests).")],
        _copy_meets_client,
        "The backup job's write into the overlay is serialising because the overlay's "
        "backing chain holds the source (f8d59dfb40, 'block/backup: fix fleecing scheme: use "
        "serialized writes'): it waits for the client's read, in flight on the overlay "
        "until the live disk's data is back. The guest's new data lands only after the copy, "
        "so the client gets the old data.",
        ["How long is the client's read in flight on the overlay?",
         "A serialising request waits for overlapping requests in flight on its node."]),
    frozen=choice(
        "07.frozen",
        "Scheme '7.2', the same race. client-read#1's snapshot read found cluster 0 not "
        "copied yet and is reading the live disk, holding a frozen request. vm-write#1 runs "
        "as far as it can. Where does it stop?",
        [Option("a", "after copying cluster 0 into fleece: its own write waits for the read"),
         Option("b", "before copying anything: the frozen read keeps the whole write out",
                "a reader's lock makes the writer wait from its first step",
                "cbw_do_copy_before_write calls block_copy first: the old contents are still "
                "on the live disk, so copying them is safe while the client reads. Only then "
                "does it wait for the frozen reads (reqlist_wait_all) — what must not happen "
                "under the client is the new data landing."),
         Option("c", "at its copy's write into fleece, which is serialising as in 3.0",
                "7.2 keeps 3.0's serialising target writes as its protection",
                "The client's snapshot read is not on fleece at all: cbw_snapshot_read_lock "
                "sent it to the live disk (cluster 0 not in done_bitmap). Nothing in flight "
                "on fleece overlaps the copy."),
         Option("d", "nowhere: it lands, and the client's read then fails with EACCES",
                "a conflict between a write and a snapshot read is reported as an error",
                "-EACCES is for areas outside the access bitmap, or a broken snapshot. A "
                "conflict with a frozen read is waited for, not reported.")],
        _write_meets_frozen_read,
        "cbw_do_copy_before_write copies first (block_copy), marks the clusters in "
        "done_bitmap, then waits for every overlapping frozen snapshot read "
        "(reqlist_wait_all on frozen_read_reqs) before the write goes on to the live disk. "
        "The client's read of the live disk gets the old data.",
        ["Where is the client's read in flight: on fleece or on the live disk?",
         "What must not happen while the client reads the live disk: the copy, or the "
         "new data landing?"]),
    cbw_error=choice(
        "07.cbw_error",
        "Scheme '7.2' with `on-cbw-error=break-snapshot` (Proxmox VE's choice). The guest "
        "writes block 0 and its copy-before-write fails (the fleecing image returns EIO). "
        "Afterwards the client reads block 16, in another cluster the guest never wrote. "
        "What happens?",
        [Option("a", "the guest write fails with EIO; the client's read gets the old data",
                "the guest always pays for a failed copy",
                "That is on-cbw-error=break-guest-write, the default. break-snapshot makes "
                "cbw_do_copy_before_write keep the error for the snapshot (snapshot_error) "
                "and let the guest's write go on."),
         Option("b", "the guest write succeeds; the client's read fails: the snapshot broke"),
         Option("c", "the guest write succeeds; the client's read of the other cluster works",
                "only the cluster whose copy failed is lost",
                "snapshot_error is one value for the whole filter: once it is set, "
                "cbw_snapshot_read_lock refuses every snapshot read, in every cluster."),
         Option("d", "both fail: a failed copy fails the write and the backup",
                "a failed copy fails everything",
                "on-cbw-error chooses who pays, not whether both do: with break-snapshot the "
                "guest's write is not failed.")],
        _who_pays,
        "With break-snapshot a failed copy sets snapshot_error and the guest's write goes on "
        "(the guest does not pay); from then on cbw_snapshot_read_lock refuses every snapshot "
        "read (-EACCES, sent over NBD as EINVAL), so the backup fails instead.",
        ["Which of the two does on-cbw-error=break-snapshot protect: the guest or the backup?",
         "Is snapshot_error per cluster, or one value for the filter?"]),
)

#: 7.4's answer said in other words — the order inside cbw_do_copy_before_write — as
#: a label or a sentence could say it before the trainee answered (the leak test looks
#: for these too).
ex07.frozen.forms = lambda answer: ["copies, then writes", "copies, then waits",
                                    "copy, then wait", "copies first, then",
                                    "copy first, then"]

__all__ = ["BREAK07", "OVERLAY07", "RACE07", "ex07"]
