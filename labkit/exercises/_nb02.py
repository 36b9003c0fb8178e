"""Notebook 02's exercises."""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

from labkit.exercises._core import (
    START_STEPS,
    Exercise,
    Mistake,
    Option,
    choice,
    equal,
    is_int,
    lab_after,
    list_form,
    one_line,
)
from labkit.lab import run_scenario


def _copied(scenario: str) -> Callable[[], list[int]]:
    def solve() -> list[int]:
        lab = run_scenario(scenario, size="256K")
        return [e.offset // lab.backup_cluster for e in lab.trace if e.kind == "cow-copy"]
    return solve


COPY_SCENARIO = "start\npwrite 5b 4K 0xb5\npwrite 15b 8K 0xb6\npwrite 6b 4K 0xb7\n"
EPOCH_SCENARIO = "start\npwrite 3b 4K 0xb3\ncheckpoint\npwrite 4b 4K 0xb4\npwrite 40b 4K 0xb5\n"
CLUSTERS = 4  # a 256 KiB disk has four 64 KiB backup clusters
_cluster_form = list_form("backup cluster indices 0-3 (block // 16)",
                           lambda c: is_int(c) and 0 <= c < CLUSTERS, "[2, 3]")


def _repeats(answer: Any, want: list[int]) -> bool:
    return len(set(answer)) < len(answer)


def _same_items_other_order(answer: Any, want: list[int]) -> bool:
    return sorted(answer) == sorted(want) and list(answer) != list(want)


ex02 = SimpleNamespace(
    copied=Exercise(
        name="02.copied",
        question="Backup clusters are 64 KiB (16 blocks of 4 KiB) on a 256 KiB disk. For `"
                 f"{one_line(COPY_SCENARIO)}`, list the backup cluster index of "
                 "every copy, in the order the copies happen.",
        solve=_copied(COPY_SCENARIO), form=_cluster_form, right=equal,
        mistakes=[Mistake("a cluster is copied on every write", _repeats,
                          lambda want: [0, 0, 1, 0],
                          "A cluster appears twice in your list. The backup job copies a cluster "
                          "at most once per checkpoint epoch: its done bitmap remembers what it "
                          "copied, and later writes into a done cluster go straight to the "
                          "secondary disk."),
                  Mistake("a write copies only the cluster of its first block",
                          lambda a, w: set(a) < set(w),
                          lambda want: [0],
                          "One copy is missing. `pwrite 15b 8K` covers blocks 15 and 16: which "
                          "backup cluster is block 16 in? A write copies every cluster it "
                          "touches."),
                  Mistake("copies in another order", _same_items_other_order,
                          lambda want: list(reversed(want)),
                          "The right clusters, in the wrong order: copies happen write by write, "
                          "in the order of the writes, and in ascending order within one write.")],
        hints=["Cluster of block b = b // 16. A write copies every cluster it touches, in "
               "ascending "
               "order.", "A cluster is copied at most once per checkpoint epoch (the done "
                         "bitmap)."],
        explanation="Block 5 copies cluster 0; blocks 15-16 straddle clusters 0 and 1, but 0 is "
                    "done, so only 1 is copied; block 6 is in cluster 0, already "
                    "done.", placeholder=[]),
    epochs=Exercise(
        name="02.epochs",
        question=f"Same disk. For `{one_line(EPOCH_SCENARIO)}`, list the backup "
                 "cluster index of every copy, in order.",
        solve=_copied(EPOCH_SCENARIO), form=_cluster_form, right=equal,
        mistakes=[Mistake("the done bitmap survives a checkpoint",
                          lambda a, w: sorted(set(a)) == sorted(set(w)) and len(a) < len(w),
                          lambda want: sorted(set(want)),
                          "A checkpoint starts a new epoch: backup_do_checkpoint clears the whole "
                          "done bitmap (and hidden is emptied), so a cluster copied before the "
                          "checkpoint is copied again the next time the primary writes into it."),
                  Mistake("block 40 in the wrong cluster",
                          lambda a, w: len(a) == len(w) and list(a)[:-1] == list(w)[:-1],
                          lambda want: [*want[:-1], (want[-1] + 1) % CLUSTERS],
                          "Look at the last write again: block 40 is in backup cluster 40 // 16."),
                  Mistake("copies in another order", _same_items_other_order,
                          lambda want: list(reversed(want)),
                          "The right clusters, in the wrong order: copies happen in the order of "
                          "the writes.")],
        hints=["backup_do_checkpoint clears the whole done bitmap."],
        explanation="The checkpoint clears the done bitmap, so cluster 0 is copied again (now "
                    "holding 0xb3 in block 3); block 40 is in cluster 2.", placeholder=[]),
)


# 2.3: a write that straddles two backup clusters meets a copy in flight (era 2.8's
# backup_do_cow: wait_for_overlapping_requests over the whole range, then the done bitmap)
TWO_WRITES = "start\npar { pwrite 5b 4K 0xb5; pwrite 15b 8K 0xb6 }\n"
SECOND = "nbd-write#2"


def _second_write() -> str:
    lab = lab_after(TWO_WRITES, [*START_STEPS, "nbd-write#1", SECOND], size="256K")
    waited = "CowRequest" in {t.name: t.why_blocked for t in lab.kernel.blocked()}.get(SECOND, "")
    lab.run()
    copied = [e.offset // lab.backup_cluster for e in lab.trace
              if e.kind == "cow-copy" and e.task == SECOND]
    return {(False, (0, 1)): "a", (True, (1,)): "b", (False, (1,)): "c",
            (True, (0, 1)): "d"}.get((waited, tuple(copied)), "?")


ex02.concurrent = choice(
    name="02.concurrent",
    question=f"`{one_line(TWO_WRITES)}` (256 KiB disk, 64 KiB backup clusters). nbd-write#1 "
             "reaches step 2 first and starts copying backup cluster 0; then nbd-write#2's "
             "notifier fires for blocks 15-16 — the end of backup cluster 0, still being "
             "copied, and the start of cluster 1, not copied yet. What does nbd-write#2 do?",
    options=[Option("a", "it copies clusters 0 and 1 itself, then lands",
                    "every write makes its own copy",
                    "The done bitmap exists so that a cluster is copied at most once per epoch: "
                    "a second copy of cluster 0 could save data that is already new."),
             Option("b", "it waits for nbd-write#1's CowRequest, then copies only cluster 1, "
                         "then lands"),
             Option("c", "it copies cluster 1 and lands at once: cluster 0's copy is already "
                         "in flight",
                    "a copy in flight already protects its cluster",
                    "The copy of cluster 0 reads the secondary disk's old data; if block 15 "
                    "landed while that copy was still reading, it could save the new data as "
                    "'old'. backup_do_cow first waits for every CowRequest that overlaps the "
                    "write's clusters (wait_for_overlapping_requests)."),
             Option("d", "it waits for nbd-write#1's CowRequest, then copies clusters 0 and 1",
                    "what to copy is decided before the wait",
                    "backup_do_cow tests each cluster's bit in the done bitmap after the wait, "
                    "cluster by cluster: what had nbd-write#1 done to cluster 0 by then?")],
    solve=_second_write,
    explanation="backup_do_cow first waits for every overlapping CowRequest "
                "(wait_for_overlapping_requests covers both of the write's clusters, so it waits "
                "for nbd-write#1); then, cluster by cluster, it skips what the done bitmap says "
                "is copied — cluster 0, by the time the wait is over — and copies cluster 1.",
    hints=["Step 2 begins with wait_for_overlapping_requests, over all the clusters the write "
           "touches.",
           "The done bitmap is read after the wait, one cluster at a time."],
    phrases=("never copy it twice", "never copied twice", "see to that",
             "copies only cluster 1", "waits for nbd-write#1", "only cluster 1 is copied"))
