"""Notebook 03's exercises."""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

from labkit.exercises._core import Exercise, Mistake, answer_is, const, equal, int_form, one_line
from labkit.lab import run_scenario

VM_READ_SCENARIO = ("start\npwrite 7b 4K 0xb7\nvwrite 7b 4K 0xc7\ncheckpoint\n"
                    "pwrite 7b 4K 0xb8\n")
FAILOVER_SCENARIO = "start\npwrite 9b 4K 0xb9\ncheckpoint\npwrite 9b 4K 0xba\nfailover\n"
_byte_form = int_form("a byte", 0, 255, "0x2a")


def _vm_reads() -> int:
    lab = run_scenario(VM_READ_SCENARIO, size="128K")
    read = lab.vm_read(7 * 4096, 4096)
    lab.run()
    return read.result[0]


def _after_failover() -> int:
    lab = run_scenario(FAILOVER_SCENARIO, size="128K")
    return lab.secondary.peek(9 * 4096, 512)[0]



ex03 = SimpleNamespace(
    vm_reads=Exercise(
        name="03.vm_reads",
        question=f"`{one_line(VM_READ_SCENARIO)}` — what byte does the VM then "
                 "read at block 7? (Before anything is written, block k holds 0x10 + k.)",
        solve=_vm_reads, form=_byte_form, right=equal,
        mistakes=[Mistake("the VM's write survives the checkpoint", answer_is(0xC7), const(0xC7),
                          "0xc7 was the VM's own write, before the checkpoint. A checkpoint makes "
                          "the secondary VM a copy of the primary again: it empties active, so "
                          "what the VM wrote before it is gone."),
                  Mistake("the primary's newest write is visible", answer_is(0xB8), const(0xB8),
                          "0xb8 is the primary's write after the checkpoint. It lands on the "
                          "secondary disk only after the backup job copied the cluster's old "
                          "contents into hidden, and the VM reads hidden before the secondary "
                          "disk."),
                  Mistake("the original pattern", answer_is(0x17), const(0x17),
                          "0x17 is what block 7 held at start. The checkpoint moved the VM's view "
                          "forward: it is now the secondary disk as the primary left it at that "
                          "checkpoint.")],
        hints=["A checkpoint drops the VM's own writes: active is emptied.",
               "After a checkpoint the primary's next write to a cluster first copies that "
               "cluster's current contents into hidden."],
        explanation="0xb7: the checkpoint made the primary's 0xb7 the VM's view (and dropped "
                    "0xc7); the later 0xb8 is hidden from the VM by the COW copy of 0xb7 in "
                    "hidden.",
        placeholder=None, hex_answer=True),
    failover=Exercise(
        name="03.failover",
        question=f"`{one_line(FAILOVER_SCENARIO)}` — what byte does the "
                 "secondary disk hold at block 9 afterwards?",
        solve=_after_failover, form=_byte_form, right=equal,
        mistakes=[Mistake("failover keeps the primary's last write", answer_is(0xBA), const(0xBA),
                          "0xba reached the secondary disk after the checkpoint — but failover "
                          "commits active and hidden into the secondary disk, and hidden holds "
                          "the checkpoint-time copy of that cluster: what the primary wrote since "
                          "the checkpoint is reverted."),
                  Mistake("failover goes back to the start", answer_is(0x19), const(0x19),
                          "0x19 is what block 9 held at start. Failover goes back to the last "
                          "checkpoint, not to the start, and a write before that checkpoint is "
                          "part of it.")],
        hints=["Failover commits active and hidden into the secondary disk.",
               "hidden holds the checkpoint-time copy of block 9."],
        explanation="0xb9: hidden's copy (from the checkpoint epoch) is committed over the "
                    "primary's un-checkpointed 0xba — failover reverts "
                    "it.", placeholder=None, hex_answer=True,
        phrases=("reverted", "revert", "old copies win", "hidden's old copies",
                 "back to the last checkpoint")),
)


# 3.3: order the commands so that the VM ends up reading 0xbb; any such order is accepted
ORDER_LINES = {"A": "pwrite 5b 4K 0xbb", "B": "vwrite 5b 4K 0xcc", "C": "checkpoint",
               "D": "pwrite 5b 4K 0xbd"}
ORDER_GOAL = 0xBB


def _order_letters(answer: Any) -> Any:
    if isinstance(answer, str):
        return [c for c in answer.upper() if not c.isspace() and c not in ",'\"[]"]
    if isinstance(answer, (list, tuple)):
        return [a.strip().upper() if isinstance(a, str) else a for a in answer]
    return answer


def _order_form(answer: Any) -> str | None:
    if not isinstance(answer, list):
        return (f"Answer the four letters in the order you want them run, e.g. "
                f"['D', 'C', 'B', 'A'] or 'DCBA' (you gave {type(answer).__name__} {answer!r}).")
    if sorted(map(str, answer)) != sorted(ORDER_LINES):
        return (f"Use each of {', '.join(ORDER_LINES)} exactly once, e.g. 'DCBA'; you gave "
                f"{''.join(map(str, answer))!r}.")
    return None


def _vm_reads_after(order: list[str]) -> int:
    lab = run_scenario("start\n" + "\n".join(ORDER_LINES[k] for k in order) + "\n",
                       size="128K")
    read = lab.vm_read(5 * 4096, 4096)
    lab.run()
    return read.result[0]


def _an_order() -> list[str]:
    import itertools

    for order in itertools.permutations(ORDER_LINES):
        if _vm_reads_after(list(order)) == ORDER_GOAL:
            return list(order)
    raise AssertionError("no order of the commands gives the VM 0xbb")


def _winning_orders() -> list[str]:
    import itertools

    return ["".join(o) for o in itertools.permutations(ORDER_LINES)
            if _vm_reads_after(list(o)) == ORDER_GOAL]


def _order_reads(byte: int) -> Callable[[Any, Any], bool]:
    return lambda answer, want: _vm_reads_after(answer) == byte


def _order_giving(byte: int) -> Callable[[Any], Any]:
    def example(want: list[str]) -> list[str]:
        import itertools

        return next(list(o) for o in itertools.permutations(ORDER_LINES)
                    if _vm_reads_after(list(o)) == byte)
    return example


ex03.order = Exercise(
    name="03.order",
    question="After `start`, run these four commands in an order of your choice: "
             + "; ".join(f"{k} = `{v}`" for k, v in ORDER_LINES.items())
             + ". Then the VM reads block 5. Give an order in which that read returns 0xbb (any "
             "such order is accepted; the engine runs yours), e.g. 'DCBA'.",
    solve=_an_order, form=_order_form, right=lambda a, w: _vm_reads_after(a) == ORDER_GOAL,
    mistakes=[Mistake("a primary write is visible without a checkpoint after "
                      "it", _order_reads(0x15),
                      _order_giving(0x15),
                      "The VM read the old 0x15: in your order no checkpoint follows the "
                      "primary's writes to block 5, so hidden keeps them from the VM. Only a "
                      "checkpoint makes a primary write part of the VM's view."),
              Mistake("the VM's own write survives a checkpoint, or sits under the primary's",
                      _order_reads(0xCC), _order_giving(0xCC),
                      "The VM read its own 0xcc: a VM write after the last checkpoint sits in "
                      "active, on top of everything the primary wrote. A VM write before the "
                      "checkpoint would have been dropped by it."),
              Mistake("a checkpoint captures only the first write", _order_reads(0xBD),
                      _order_giving(0xBD),
                      "The VM read 0xbd: the checkpoint captured the secondary disk as it was "
                      "then, with D's 0xbd already on it. Where must D go so that the checkpoint "
                      "sees 0xbb — or so that it does not matter?")],
    hints=["The VM's view after a checkpoint is the secondary disk as it was at that checkpoint, "
           "plus the VM's writes since.", "A primary write after the last checkpoint is hidden "
           "from the VM (hidden saved the old data first)."],
    explanation="The checkpoint must come after A and after B (B is dropped by it), and D must "
                "either come before A or after the checkpoint (then hidden keeps it from the VM).",
    placeholder="", normalise=_order_letters,
    forms=lambda want: _winning_orders())


