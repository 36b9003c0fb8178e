"""labkit's benchmarks: how fast the kit is, side by side with real QEMU and the naive way.

``make bench`` (``python -m benchmarks``) runs every section, prints a table and
writes ``benchmarks/results.json``.  Sections (modules of this package):

1. :mod:`benchmarks.throughput` — the engine against real QEMU 7.2 on one
   seeded workload (operations per second, the simulator's peak memory);
2. :mod:`benchmarks.exploration` — interleavings run with and without
   reduction for the canonical conflicting read at 2, 3 and 4 tasks;
3. :mod:`benchmarks.interactivity` — one Step of each widget, p50 and p95;
4. :mod:`benchmarks.notebooks` — each notebook's execution time;
5. :mod:`benchmarks.setup_time` — clean clone to an installed venv, its size,
   and the test run.

Nothing here is a test assertion: the figures are measured and reported, each
next to its target.  ``benchmarks/README.md`` records the latest figures.
"""
