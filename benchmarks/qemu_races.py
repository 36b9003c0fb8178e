"""Section "races": forcing orders on QEMU 7.2 — orders per second, and the whole comparison.

Two figures, on the six shipped race scenarios (``canonical``, ``straddle``,
``partial-overlap``, ``same-cluster-disjoint``, ``partial-cluster-vm-write``,
``vm-write-race``):

* the whole race comparison (:func:`labkit.qemu.compare_races` on each: every
  forceable order on the simulator and on a fresh QEMU with blkdebug), wall
  time — target under 60 s on the 2-core machine;
* orders per second on QEMU alone: the QEMU side of the same comparison
  (``OrderResult.qemu.seconds``: QEMU start, prefix, the forced order — a
  blocked request costs ``BLOCK_WAIT`` — suffix, dumps, stop).

``python -m benchmarks.qemu_races`` prints the figures and a JSON line.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

SHIPPED = ("canonical", "straddle", "partial-overlap", "same-cluster-disjoint",
           "partial-cluster-vm-write", "vm-write-race")
TARGET_S = 60.0
_KEYS = ("size", "block", "hidden_cluster", "active_cluster", "fill")


def run(log: Callable[[str], None] = print) -> dict[str, Any]:
    from labkit import scenarios
    from labkit.qemu import BLOCK_WAIT, compare_races, qemu_available

    reason = qemu_available()
    if reason is not None:
        log(f"  QEMU not available: {reason}")
        return {"available": False, "reason": reason}
    per: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    orders = disagreeing = 0
    qemu_s = 0.0
    blocked = 0
    for name in SHIPPED:
        text = scenarios.load(name)
        cfg = {k: v for k, v in scenarios.config(text).items() if k in _KEYS}
        s0 = time.perf_counter()
        c = compare_races(text, **cfg)
        per.append({"scenario": name, "orders": len(c.results),
                    "disagreeing": len(c.disagreeing),
                    "seconds": round(time.perf_counter() - s0, 2)})
        orders += len(c.results)
        disagreeing += len(c.disagreeing)
        # QEMU's side alone: each order's fresh QEMU, its I/O and its blocked waits
        qemu_s += sum(r.qemu.seconds for r in c.results)
        blocked += sum(len(r.qemu.blocked) for r in c.results)
        log(f"  {name}: {len(c.results)} orders, {len(c.disagreeing)} disagreeing, "
            f"{per[-1]['seconds']:.1f} s")
    whole = time.perf_counter() - t0
    qemu_orders = orders
    result = {
        "available": True,
        "scenarios": per,
        "orders": orders,
        "disagreeing": disagreeing,
        "whole_s": round(whole, 2),
        "whole_target_s": TARGET_S,
        "whole_met": whole < TARGET_S,
        "qemu_orders": qemu_orders,
        "qemu_s": round(qemu_s, 2),
        "qemu_orders_per_s": round(qemu_orders / qemu_s, 2) if qemu_s else None,
        "blocked_waits": blocked,
        "block_wait_s": BLOCK_WAIT,
    }
    log(f"  whole race comparison: {orders} orders in {whole:.1f} s "
        f"(target < {TARGET_S:.0f} s: {'met' if whole < TARGET_S else 'MISSED'}), "
        f"{disagreeing} disagreeing")
    log(f"  QEMU alone: {qemu_orders} orders in {qemu_s:.1f} s = "
        f"{result['qemu_orders_per_s']} orders/s ({blocked} blocked waits of "
        f"{BLOCK_WAIT} s each)")
    return result


def rows(r: dict[str, Any] | None) -> list[tuple[str, str, str, str]]:
    """The section's rows of the ``python -m benchmarks`` table."""
    if not r:
        return []
    if not r.get("available"):
        return [("6 races on QEMU", "not available", "", "n/a")]
    return [
        ("6 race comparison, 6 shipped scenarios", f"{r['whole_s']:.1f} s ({r['orders']} "
         f"orders, {r['disagreeing']} disagreeing)", f"< {r['whole_target_s']:.0f} s",
         "met" if r["whole_met"] else "MISSED"),
        ("6 QEMU orders/s (fresh QEMU per order)", f"{r['qemu_orders_per_s']}", "", ""),
    ]


if __name__ == "__main__":
    print(json.dumps(run()))
