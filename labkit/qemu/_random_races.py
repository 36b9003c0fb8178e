"""Seeded random races, every forced order of each compared with QEMU 7.2.

:func:`random_race` writes one scenario: ``start``, sometimes one sequential
write before the race (so that hidden or active already hold a cluster), then
a ``par`` block of two or three requests -- ``pwrite``, ``vread`` and
``vwrite`` -- that overlap: every request shares at least one byte with
another, most of them around one 64 KiB copy chunk, on a 128-256 KiB disk
with 4 KiB or 64 KiB clusters.  The same seed gives the same text, byte for
byte (Python's :class:`random.Random` with an integer seed).

:func:`race_sweep` runs :func:`labkit.qemu.compare_races` on ``count`` of
them (seeds ``first``, ``first + 1``...) and adds up the orders: agreeing,
disagreeing, unknown.  The suite runs a small count (``LABKIT_RACE_SCENARIOS``,
default :data:`CI_COUNT`); ``python tools/race_sweep.py --count 100`` a larger
one by hand.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from labkit.qemu._errors import QemuError, QemuNotAvailable
from labkit.qemu._races import RaceComparison, compare_races

K = 1024
#: The suite's count of random races (``LABKIT_RACE_SCENARIOS`` overrides it).
CI_COUNT = 20
_PWRITE_BYTES = (0xBB, 0xCC, 0xDD)
_VWRITE_BYTES = (0xEE, 0xAA, 0x99)


def random_race(seed: int) -> str:
    """One random race scenario (with its ``# config:`` header) for ``seed``."""
    rng = random.Random(seed)
    size = rng.choice([128 * K, 192 * K, 256 * K])
    hidden = rng.choice([4 * K, 64 * K])
    active = rng.choice([4 * K, 64 * K])
    fill = rng.choice(["index", "index", "index", "zero"])
    lines = [f"# config: size={size // K}K hidden_cluster={hidden // K}K "
             f"active_cluster={active // K}K fill={fill}",
             f"# random race, seed {seed} (labkit.qemu._random_races)",
             "start"]
    if rng.random() < 0.3:  # a cluster already copied to hidden, or already in active
        op = rng.choice(["pwrite", "vwrite"])
        off = rng.randrange(0, size // (4 * K)) * 4 * K
        byte = 0x51 if op == "pwrite" else 0x61
        lines.append(f"{op} {off // K}K 4K {byte:#04x}")
    n = rng.choice([2, 2, 3])
    ops = [rng.choice(["pwrite", "pwrite", "vread", "vwrite"]) for _ in range(n)]
    if "pwrite" not in ops and rng.random() < 0.7:
        ops[0] = "pwrite"  # most races of interest have a primary write in them
    # Every request overlaps the first one's range: a 4 KiB-aligned anchor inside the
    # disk, each request a run that contains the anchor's block.
    anchor = rng.randrange(0, size // (4 * K)) * 4 * K
    commands = []
    used = {"pwrite": 0, "vwrite": 0}
    for op in ops:
        length = rng.choice([4 * K, 4 * K, 8 * K, 16 * K, 64 * K, 68 * K, 128 * K])
        length = min(length, size)
        low = max(0, anchor + 4 * K - length)
        high = min(anchor, size - length)
        off = rng.randrange(low // (4 * K), high // (4 * K) + 1) * 4 * K
        if op == "vread":
            commands.append(f"vread {off // K}K {length // K}K")
        else:
            pool = _PWRITE_BYTES if op == "pwrite" else _VWRITE_BYTES
            commands.append(f"{op} {off // K}K {length // K}K {pool[used[op]]:#04x}")
            used[op] += 1
    lines.append("par { " + "; ".join(commands) + " }")
    return "\n".join(lines) + "\n"


@dataclass
class SweepResult:
    """The forced orders of a sweep of random races, added up."""

    scenarios: int = 0
    orders: int = 0
    agreeing: int = 0
    disagreeing: int = 0
    unknown: int = 0
    #: (seed, scenario text, order line) of every order not agreeing
    failures: list[tuple[int, str, str]] = field(default_factory=list)
    #: (seed, error) of every scenario QEMU could not run twice in a row (e.g. it did
    #: not answer within the timeout on a loaded machine): not counted as orders
    errors: list[tuple[int, str]] = field(default_factory=list)
    seconds: float = 0.0

    def add(self, seed: int, text: str, c: RaceComparison) -> None:
        self.scenarios += 1
        self.orders += len(c.results)
        self.disagreeing += len(c.disagreeing)
        self.unknown += len(c.unknown)
        self.agreeing += sum(1 for r in c.results if r.agree)
        for r in c.results:
            if not r.agree:
                self.failures.append((seed, text, r.line()))

    def summary(self) -> str:
        failed = f", {len(self.errors)} scenario(s) QEMU could not run" if self.errors else ""
        return (f"{self.scenarios} random races, {self.orders} forced orders: "
                f"{self.agreeing} agreeing, {self.disagreeing} disagreeing, "
                f"{self.unknown} unknown{failed}")


def race_sweep(count: int, first: int = 0, *, timeout: float = 10.0,
               qemu: str = "qemu-system-x86_64",
               progress: Callable[[int, RaceComparison], None] | None = None) -> SweepResult:
    """Every forced order of ``count`` random races (seeds ``first``...), on both backends.

    A scenario whose QEMU fails (:class:`~labkit.qemu.QemuError`: it died or did
    not answer within ``timeout``) is run once more, then listed in
    :attr:`SweepResult.errors`.  Raises :class:`~labkit.qemu.QemuNotAvailable`
    when there is no usable QEMU.
    """
    out = SweepResult()
    t0 = time.perf_counter()
    for seed in range(first, first + count):
        text = random_race(seed)
        for attempt in (1, 2):
            try:
                c = compare_races(text, timeout=timeout, qemu=qemu, with_conformance=False)
                break
            except QemuNotAvailable:
                raise
            except QemuError as exc:
                if attempt == 2:
                    out.errors.append((seed, str(exc).splitlines()[0]))
        else:
            continue
        out.add(seed, text, c)
        if progress is not None:
            progress(seed, c)
    out.seconds = time.perf_counter() - t0
    return out


__all__ = ["CI_COUNT", "SweepResult", "race_sweep", "random_race"]
