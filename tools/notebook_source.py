"""The source of every notebook: (kind, text) cells, in teaching order.

Edit here, then ``make notebooks`` rebuilds and re-executes ``notebooks/*.ipynb``.
"""

from __future__ import annotations

SETUP = """
import labkit as lk
from labkit.render import block_map, LEGEND
"""

NB00 = [
    ("md", """
# 00 · Start here: COLO and the secondary disk

**What you will learn (10 minutes):** what COLO asks of the secondary's disk, the block
graph QEMU builds for it, and how to drive this lab's widgets.

COLO (COarse-grained LOck-stepping) runs the same VM twice: the *primary* and the
*secondary*. Both run freely; at every *checkpoint* the primary's state is copied to
the secondary. For the disk this means:

* the primary's disk writes are forwarded to the secondary **as they happen** (over NBD),
  so that a checkpoint only has to transfer little;
* but the secondary VM must keep seeing **its** disk: the state of the last checkpoint
  plus its own writes — never the primary's writes since the checkpoint.

QEMU solves this with three stacked images and a backup job:

```
 primary ──NBD write──▶ NBD server ──▶ secondary disk ◀─backing─ hidden disk ◀─backing─ active disk ◀── replication ◀── secondary VM
                                         │ before-write notifier                 ▲
                                         └──── backup job (sync=none): copy old ──┘
```

1. **Step 1** — an NBD write from the primary reaches the secondary disk; its
   *before-write notifier* calls `backup_do_cow`.
2. **Step 2** — `backup_do_cow` copies the old contents of the touched backup clusters
   into the **hidden** disk (once per checkpoint epoch).
3. **Step 3** — the write lands on the secondary disk.

The secondary VM reads through **active → hidden → secondary**: its own writes (active),
else the saved old data (hidden), else the secondary disk.
"""),
    ("code", SETUP + """
lab = lk.build_secondary(size="128K", block="4K", hidden_cluster="4K", active_cluster="4K")
lab
"""),
    ("md", """
The lab above is a 128 KiB secondary disk in 32 blocks of 4 KiB. Block *k* holds the
byte `0x10 + k`, so old data is easy to tell from new data (every write in these
notebooks uses a byte ≥ `0x80`). The table shows each layer, one cell per block:
"""),
    ("code", """
print(LEGEND)
print(block_map(lab.layers(), lab.block))
"""),
    ("md", """
Before replication starts the VM cannot read at all (QEMU returns `EIO`). `start`
checks the chain, starts the backup job, and empties active and hidden:
"""),
    ("code", """
lab.start()
lab.primary_write(5 * 4096, 4096, 0xBB)   # the primary writes 0xbb to block 5 ...
lab.run()                                 # ... steps 1-3 run
print(block_map(lab.layers(), lab.block))
"""),
    ("md", """
Look at the rows: **hidden** now holds the *old* contents of blocks 0–15 (one 64 KiB
backup cluster), the **secondary** disk holds the new `bb`, and the **VM view** still
shows `15` in block 5. That is the whole trick.

### How to use the widgets

The notebooks use three widgets. Each has buttons; each also prints a plain-text
summary (its *text twin*) so you can copy what you see.

* **WorkflowStepper** (notebook 02): *Step* makes one scheduling decision, *Expand COW*
  shows the copy cluster by cluster, *Undo* goes back one click, *Reset* to the start,
  *Run* to the end.
* **SchedulerPlayground** (notebook 04): **you** are the scheduler — one *Step* button per
  task that can run; a grey button says what its task waits for; a red banner appears
  when the VM reads data it must never see.
* **RaceReplay** (notebook 05): every interleaving checked for you, and a slider to scrub
  through a counterexample.

The same engine runs on the command line: `labkit demo`, `labkit run FILE`,
`labkit explore FILE`, `labkit compare FILE` (against a real QEMU), `labkit quiz`.
"""),
    ("code", """
from labkit.cli import demo_text
print("\\n".join(demo_text().splitlines()[:12]))   # the start of `labkit demo`
"""),
    ("md", """
## Recap

* The secondary disk receives the primary's writes immediately; the **hidden** disk keeps
  the old contents; the **active** disk keeps the secondary VM's own writes.
* The VM reads active → hidden → secondary, so it keeps seeing the checkpoint state.
* Next: **01-block-graph** — how these qcow2 layers work.
"""),
]

NB01 = [
    ("md", """
# 01 · The block graph: raw, qcow2 and backing chains

**What you will learn (12 minutes):** how a read falls through a backing chain, what
"allocated" means in a qcow2 layer, and qcow2's own copy-on-write.

A `raw` node (the secondary disk) simply stores bytes. A `qcow2` node (hidden, active)
stores data in *clusters*; a cluster is

* **unallocated** — reads fall through to the backing node;
* **allocated** — this layer owns its data;
* a **zero cluster** — allocated, reads as zeros, hides the backing node.
"""),
    ("code", SETUP + """
from labkit.plot import plot_provenance

lab = lk.build_secondary(size="128K", hidden_cluster="4K", active_cluster="4K")
lab.play(\"\"\"
start
pwrite 1b 4K 0xb1     # the primary writes block 1: cluster 0 is copied to hidden first
vwrite 2b 4K 0xc2     # the VM writes block 2: it goes to active
pwrite 2b 4K 0xb2     # the primary writes block 2 too (no new copy: cluster 0 is done)
\"\"\")
print(block_map(lab.layers(), lab.block))
"""),
    ("md", """
A VM read of blocks 0–7 goes through the replication node to **active**, falls through
to **hidden** where active has nothing, and to the **secondary** disk where hidden has
nothing. The provenance plot shows which layer served each block:
"""),
    ("code", """
read = lab.vm_read(0, 8 * 4096)
lab.run()
print("read:", read.result[::4096].hex(" "))
print("served by:", lab.provenance(read)[:8])
plot_provenance(lab, read)
"""),
    ("md", """
### Exercise 1.1 — which layer serves each block?

Use the table above (don't copy the answer from the cell above!).
"""),
    ("code", """
from labkit.exercises import ex01
q = ex01.served
print(q.question)
answer = q.your_answer([])   # e.g. ["secondary", "hidden", ...] — replace [] with your answer
q.check(answer)
"""),
    ("md", """
### qcow2's own copy-on-write

When a write covers only *part* of an unallocated cluster, qcow2 must allocate the whole
cluster — so it first reads the rest of that cluster from the backing chain and writes
the whole cluster. This has nothing to do with the backup job; remember it for notebook 05.
"""),
    ("code", """
lab64 = lk.build_secondary(size="128K", active_cluster="64K")
lab64.play("start\\nvwrite 5b 512 0xcc")
print(block_map(lab64.layers(), lab64.block))
print([e.detail for e in lab64.trace if e.kind == "qcow2-cow"])
"""),
    ("md", """
### Exercise 1.2 — what does a 512-byte VM write allocate?
"""),
    ("code", """
q = ex01.partial
print(q.question)
answer = q.your_answer([])   # a list of block numbers
q.check(answer)
"""),
    ("md", """
## Recap

* A read takes each byte from the topmost layer that has it.
* qcow2 allocates whole clusters; a partial write fills the rest from the backing chain.
* `make_empty` (used by every checkpoint) drops all clusters: reads fall through again.
* Next: **02-backup-sync-none** — the backup job's steps 1–3, one decision at a time.
"""),
]

NB02 = [
    ("md", """
# 02 · The backup job (sync=none): steps 1–3

**What you will learn (15 minutes):** exactly what happens inside a primary write on the
secondary, in QEMU's order, and why the copy is of *whole backup clusters*.

The backup job runs with `sync=none`: it never copies on its own. Everything happens in
its **before-write notifier** on the secondary disk, which calls `backup_do_cow` for each
write:

1. **Step 1** — the NBD write reaches the secondary disk (`bdrv_aligned_pwritev`) and the
   notifier fires, *before* the data reaches the disk;
2. **Step 2** — `backup_do_cow` waits for overlapping CowRequests, registers its own,
   and for each backup cluster (64 KiB, or the hidden disk's cluster size if larger) not
   yet copied in this epoch: reads the old contents from the secondary disk and writes
   them to hidden; then ends the CowRequest;
3. **Step 3** — the write resumes and the new data lands.

Press **Step** below and watch the header name the step. Turn on **Expand COW** to see
the copy cluster by cluster.
"""),
    ("code", SETUP + """
from labkit.widgets import WorkflowStepper

stepper = WorkflowStepper(\"\"\"
start
pwrite 5b 4K 0xbb
vread 5b 4K
\"\"\", size="128K")
stepper
"""),
    ("md", """
The widget keeps its state in the engine. Below, the same stepper is driven from code, and
its text twin is printed after each step — this is what the plot shows.
"""),
    ("code", """
demo = WorkflowStepper("start\\npwrite 5b 4K 0xbb\\nvread 5b 4K", size="128K")
shown = set()
while not demo.session.done:
    demo.step()
    if demo.current_step not in shown:
        shown.add(demo.current_step)
        print(demo.text())
        print()
"""),
    ("md", """
Notice the order: **hidden fills before the secondary row changes**, and the VM view
never shows `bb`.

### Exercise 2.1 — which clusters get copied?
"""),
    ("code", """
from labkit.exercises import ex02
q = ex02.copied
print(q.question)
answer = q.your_answer([])   # backup cluster indices, in the order copies happen
q.check(answer)
"""),
    ("md", """
### Exercise 2.2 — copies across a checkpoint

A checkpoint clears the job's *done bitmap* (`backup_do_checkpoint`), and empties active
and hidden.
"""),
    ("code", """
q = ex02.epochs
print(q.question)
answer = q.your_answer([])
q.check(answer)
"""),
    ("md", """
### Whole clusters, also at the edges

A write that straddles two backup clusters copies both; the last cluster of a disk whose
size is not a multiple of 64 KiB is copied only up to the end of the disk:
"""),
    ("code", """
lab = lk.run_scenario("start\\npwrite 63K 2K 0xbb", size="256K")
print([f"cluster {e.offset // lab.backup_cluster}" for e in lab.trace if e.kind == "cow-copy"])
short = lk.run_scenario("start\\npwrite 99K 1K 0xbb", size="100K", block="1K")
print([(e.offset // 1024, e.length // 1024) for e in short.trace if e.kind == "cow-copy"],
      "(KiB offset, KiB copied)")
"""),
    ("md", """
## Recap

* The copy happens *inside* the primary's write, before its data lands (step 2 before 3).
* It copies whole backup clusters, at most once per checkpoint epoch, in ascending order.
* A failed copy fails the primary's write, which then writes nothing.
* Next: **03-replication-secondary** — the driver around it: start, checkpoint, failover.
"""),
]

NB03 = [
    ("md", """
# 03 · The replication driver: start, checkpoint, failover

**What you will learn (15 minutes):** what `replication_start` checks, what a checkpoint
drops, and what the secondary disk holds after failover.

`start` (QMP `xen-set-replication enable=true primary=false`) follows the backing links
active → hidden → secondary and refuses a graph it cannot use, with QEMU's exact messages:
"""),
    ("code", SETUP + """
from labkit.errors import ReplicationError

lab = lk.build_secondary(size="128K")
lab.secondary.backends.clear()          # no NBD export on the secondary disk
try:
    lab.start()
except ReplicationError as exc:
    print("start refused:", exc)

lab = lk.build_secondary(size="128K")
lab.start()
try:
    lab.start()
except ReplicationError as exc:
    print("second start:", exc)
"""),
    ("md", """
### VM reads and writes, then a checkpoint

The VM's writes go to **active** and never trigger a copy. A checkpoint
(`xen-colo-do-checkpoint`) clears the done bitmap and **empties active and hidden**: the VM
now sees the secondary disk as the primary left it — its own writes are gone, because the
checkpoint made the secondary VM a copy of the primary again.
"""),
    ("code", """
lab.play(\"\"\"
pwrite 5b 4K 0xbb
vwrite 20b 4K 0xcc
dump before checkpoint
checkpoint
dump after checkpoint
\"\"\")
for title, layers in lab.dumps:
    print("--", title)
    print(block_map(layers, lab.block))
"""),
    ("md", """
### Exercise 3.1 — what does the VM read?
"""),
    ("code", """
from labkit.exercises import ex03
q = ex03.vm_reads
print(q.question)
answer = q.your_answer(None)   # a byte, e.g. 0x17
q.check(answer)
"""),
    ("md", """
### Failover

If the primary dies, `xen-set-replication enable=false failover=true` cancels the backup
job and starts an **active commit** of active *and* hidden into the secondary disk. The
primary's writes since the checkpoint are **reverted** (hidden's old copies win); the VM's
writes are kept. Afterwards the replication node's `file` is the secondary disk itself.
"""),
    ("code", """
from labkit.plot import plot_layers

lab = lk.run_scenario(\"\"\"
start
checkpoint
pwrite 6b 4K 0xbc
pwrite 24b 4K 0xbd
vwrite 4b 4K 0xcf
dump before failover
failover
dump after failover
\"\"\", size="128K")
for title, layers in lab.dumps:
    print("--", title)
    print(block_map(layers, lab.block))
print("replication:", lab.state, "| violations:", lab.violations())
plot_layers(lab)
"""),
    ("md", """
### Exercise 3.2 — after failover
"""),
    ("code", """
q = ex03.failover
print(q.question)
answer = q.your_answer(None)
q.check(answer)
"""),
    ("md", """
## Recap

* `start` checks the chain (with QEMU's messages), starts the backup job and checkpoints.
* A checkpoint drops the VM's writes and the saved old data: a new epoch begins.
* Failover commits active and hidden into the secondary disk: un-checkpointed primary
  writes are reverted, VM writes kept. The oracle checks it for every run.
* QEMU 2.8 and 7.2 differ in what happens to commands *after* failover: see
  `docs/qemu-eras.md` (`era="7.2"` follows 7.2).
* Next: **04-conflicting-reads** — what goes wrong when a VM read and a primary write race.
"""),
]

NB04 = [
    ("md", """
# 04 · Conflicting reads: be the scheduler

**What you will learn (15 minutes):** how a secondary-VM read can see primary data it
must never see, and how QEMU 2.8 prevents it.

A VM read of block 5 goes replication → active → hidden → secondary. Each layer it passes
is a separate request, and requests interleave only where a coroutine yields (an I/O in
flight). So this can happen:

1. the read looks at **hidden**: cluster 0 is not there yet, so it goes on to the
   secondary disk — and yields, waiting for that I/O;
2. meanwhile the primary's write runs steps 1–3: copies cluster 0 to hidden, then writes
   `bb` to the secondary disk;
3. the read resumes and reads the secondary disk: **`bb`** — primary data from after the
   checkpoint. A *conflicting read*.

Below, you are the scheduler. Design `"none"` has no protection: make the read return
`bb`. A red banner tells you when you have won. Then switch the design to `"2.8"` and try
again: a button turns grey and says which CowRequest its task waits for.
"""),
    ("code", SETUP + """
from labkit.widgets import SchedulerPlayground

RACE = "start\\npar { vread 5b 4K; pwrite 5b 4K 0xbb }"
playground = SchedulerPlayground(RACE, design="none", size="128K")
playground
"""),
    ("md", """
### One way to win, from code

The same widget, driven by its methods instead of buttons. The read goes first until it
waits for the secondary disk, then the write runs to its end, then the read finishes:
"""),
    ("code", """
game = SchedulerPlayground(RACE, design="none", size="128K", timeline=False)
game.choose("vm-read#1")          # the read passes active and hidden, reaches the secondary disk
while "nbd-write#1" in [t.name for t in game.lab.runnable()]:
    game.choose("nbd-write#1")    # steps 1-3 of the primary write
while not game.won and game.lab.runnable():
    game.choose("vm-read#1")
print(game.banner_text())
print()
print(game.text())
"""),
    ("md", """
### The same choices under design 2.8

In 2.8 `replication_co_readv` registers a **CowRequest** over the read's backup clusters
before it reads the chain (commit `a8bbee0edf`). The write's `backup_do_cow` waits for it
— so the order you just played is impossible. Replaying the winning schedule under 2.8 is
rejected at the point where the write would have to run:
"""),
    ("code", """
from labkit.errors import ScheduleError
from labkit.trace import format_schedule

winning = format_schedule(game.lab.schedule)
print("winning schedule under 'none':", winning)
try:
    lk.replay(RACE, winning, size="128K", design="2.8")
except ScheduleError as exc:
    print("under '2.8':", exc)
"""),
    ("code", """
game.switch_design("2.8")         # rebuilds the lab and replays the choices as far as possible
print(game.text())
"""),
    ("md", """
### Exercise 4.1 — write a racing schedule yourself

A schedule string names the task chosen at each decision, with run-lengths:
`start#1*3 vm-read#1 ...`. Hint: play in the widget above, then
`format_schedule(playground.lab.schedule)`.
"""),
    ("code", """
from labkit.exercises import ex04
q = ex04.schedule
print(q.question)
answer = q.your_answer("")   # a schedule string
q.check(answer)
"""),
    ("md", """
### Exercise 4.2 — which designs prevent it?
"""),
    ("code", """
q = ex04.designs
print(q.question)
answer = q.your_answer([])
q.check(answer)
"""),
    ("md", """
## Recap

* A conflicting read needs the read to pass hidden *before* the copy and read the
  secondary disk *after* step 3.
* QEMU 2.8 makes the read hold a CowRequest for the whole chain read: the write's copy
  (and so the write) waits for the read, and the read waits for a copy in flight.
* Next: **05-exploring-interleavings** — let the explorer try every order for you.
"""),
]

NB05 = [
    ("md", """
# 05 · Exploring every interleaving

**What you will learn (15 minutes):** how the explorer checks *every* interleaving of a
scenario, why a partial-order reduction makes that affordable, what it says about each
design — including a hazard QEMU 2.8 did not cover — and how QEMU moved the protection
from the reader to the writer.

`lk.explore` re-runs a scenario from the start under every schedule that matters. Two
schedules that only swap *independent* steps (touching different data, different
requests) end in the same state, so the explorer runs one of them: dynamic partial-order
reduction with sleep sets (as in CHESS and Rust's loom). A verdict is **safe** only when
every interleaving was covered; if the budget runs out the verdict is **unknown**.
"""),
    ("code", SETUP + """
from labkit import scenarios

for name in ("canonical", "canonical3"):
    text = scenarios.load(name)
    print(f"== {name}")
    for design in ("none", "2.8", "4.0"):
        reduced = lk.explore(text, design=design, **scenarios.config(text))
        naive = lk.explore(text, design=design, reduction="none", **scenarios.config(text))
        print(f"  {design:>4}: {reduced.verdict:9}  runs with reduction {reduced.runs:5}, "
              f"without {naive.runs:5}  (same verdict: {reduced.verdict == naive.verdict})")
"""),
    ("md", """
Every counterexample is **shrunk** to the fewest preemptions (switches away from a task
that could have gone on) and can be replayed exactly:
"""),
    ("code", """
found = lk.explore(scenarios.load("canonical"), design="none")
print(found.summary())
again = lk.replay(scenarios.load("canonical"), found.violations[0].schedule_text, design="none")
print("replayed:", again.violations()[0].message == found.violations[0].message)
"""),
    ("md", """
### RaceReplay: scrub through a counterexample

The widget explores each design, lists the verdicts, and loads a counterexample; the
slider moves through its decisions, with the block map and the timeline beside it.
"""),
    ("code", """
from labkit.widgets import RaceReplay

replay = RaceReplay(scenarios.load("canonical"), size="128K")
replay
"""),
    ("code", """
replay.load("none")
replay.seek(8)
print(replay.text())
"""),
    ("md", """
### A hazard 2.8 does not cover: the partial-cluster VM write

The 2.8 protection lives in `replication_co_readv`. But not every read of hidden and the
secondary disk comes through there: when the VM writes **part** of an unallocated
64 KiB active cluster, qcow2 fills the rest of that cluster by reading the backing chain
itself (notebook 01). That read holds no CowRequest. If the primary writes into the same
cluster meanwhile, active can capture the primary's post-checkpoint data — and the VM
reads it later. (`qemu-replication-facts.md` §9.3 (a).)
"""),
    ("code", """
text = scenarios.load("partial-cluster-vm-write")
print(text)
for design in ("none", "2.8", "4.0"):
    result = lk.explore(text, design=design, **scenarios.config(text))
    print(result.summary())
    print()
"""),
    ("md", """
### From the reader to the writer: QEMU 3.0 and 4.0

QEMU 3.0 (`f8d59dfb40`, for image fleecing) made the backup job's writes to its target
**serialising** requests whenever the source is in the target's backing chain: such a
write waits for every overlapping request in flight on hidden — and every read of hidden
is one, *including qcow2's own fill read* — and new reads of hidden wait for it. QEMU 4.0
(`e4f9752c4a`, `3a75187fd8`) then removed the read-side CowRequest from replication as
redundant. Design `"4.0"` models that scheme, and the explorer finds it safe here too.

### Exercise 5.1 — predict the verdicts
"""),
    ("code", """
from labkit.exercises import ex05
q = ex05.partial
print(q.question)
answer = q.your_answer({})
q.check(answer)
"""),
    ("md", """
### Exercise 5.2 — how simple is the simplest counterexample?
"""),
    ("code", """
q = ex05.preemptions
print(q.question)
answer = q.your_answer(None)
q.check(answer)
"""),
    ("md", """
## Recap

* The explorer covers every interleaving (or says "unknown"), runs equivalent ones once,
  and shrinks each counterexample to the fewest preemptions.
* `"none"` has conflicting reads; `"2.8"` closes the read-vs-COW race but not qcow2's own
  fill read; `"4.0"` (serialising writes to hidden) covers both.
* From the command line: `labkit explore canonical --stats`, `labkit replay FILE --schedule S`.
* Next: **06-real-qemu** — the same scenarios on a real QEMU 7.2.
"""),
]

NB06 = [
    ("md", """
# 06 · The same scenario on a real QEMU

**What you will learn (10 minutes):** that the simulator is not a story — the same
scenario runs on Debian's QEMU 7.2, layer by layer, and the two are compared.

The real-QEMU backend (`labkit.qemu`) starts `qemu-system-x86_64 -machine none` with a QMP
socket in a private temporary directory, builds the same graph with `blockdev-add`
(secondary-disk ← hidden ← active ← `replication` node `colo-top`), exports the secondary
disk over NBD for the primary's writes and `colo-top` for the VM's I/O, and drives
`xen-set-replication` and `xen-colo-do-checkpoint`. Each `dump` reads every layer through
a temporary read-only NBD export with `qemu:allocation-depth`.

It needs the Debian packages `qemu-system-x86` and `qemu-utils` (Binder installs them from
`binder/apt.txt`).
"""),
    ("code", SETUP + """
from labkit import qemu

print(qemu.qemu_available() or "QEMU with the replication driver: available")
SCENARIO = \"\"\"
start
pwrite 5b 4K 0xbb        # the primary writes block 5: cluster 0 is copied to hidden
pwrite 6b 4K 0xbc
vwrite 20b 4K 0xcc       # the VM writes block 20 (to active)
vwrite 5b 4K 0xcd
dump after writes
checkpoint
pwrite 7b 4K 0xbe
pwrite 24b 4K 0xbd
vwrite 2b 4K 0xcf
dump before failover
failover
dump after failover
\"\"\"
"""),
    ("md", """
### QEMU's tables

`qemu.run_scenario` runs the scenario on QEMU and returns the same `dumps` as the
simulator:
"""),
    ("code", """
on_qemu = qemu.run_scenario(SCENARIO, size="128K", hidden_cluster="4K", active_cluster="4K")
for title, layers in on_qemu.dumps:
    print("-- QEMU:", title)
    print(block_map(layers, 4096))
"""),
    ("md", """
### Side by side

`qemu.compare` runs both and compares every layer of every dump (and which commands
failed, with which messages). The simulator runs with `era="7.2"`, the control-plane
behaviour of QEMU 7.2 (see `docs/qemu-eras.md`).
"""),
    ("code", """
result = qemu.compare(SCENARIO, size="128K", hidden_cluster="4K", active_cluster="4K")
print(result.text())
print("agree:", result.agree)
"""),
    ("md", """
From the command line: `labkit compare FILE` (exit status 0 only when everything agrees)
and `labkit run FILE --backend qemu`.

Things to try: a hidden cluster of 128 KiB (the backup cluster grows to 128 KiB), a VM
write of 512 bytes with 64 KiB active clusters, a disk of 100 KiB.

## Recap

* The same scenario language drives the simulator and QEMU 7.2.
* The comparison is exact, per 512-byte sector: bytes and allocation in every layer.
* The test suite compares 16 scenarios this way, and shows that a deliberately wrong
  engine (copying only the written bytes instead of whole clusters) is caught.
"""),
]

NOTEBOOKS: dict[str, list[tuple[str, str]]] = {
    "00-start-here": NB00,
    "01-block-graph": NB01,
    "02-backup-sync-none": NB02,
    "03-replication-secondary": NB03,
    "04-conflicting-reads": NB04,
    "05-exploring-interleavings": NB05,
    "06-real-qemu": NB06,
}
