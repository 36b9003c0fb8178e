"""``labkit run`` (a scenario, its dumps as tables) and ``labkit demo`` (steps 1–3 narrated)."""

from __future__ import annotations

import argparse
import json
from typing import Any, TextIO

from ..config import LabConfig
from ..lab import Lab, build_lab, build_secondary
from ..layers import Layer
from ..render import LEGEND, block_map, dumps_text
from ..steps import STEP_TITLES, workflow_step
from ._common import (
    add_config_arguments,
    configured_from_cli,
    json_only_stdout,
    scenario_input,
    seconds,
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="run a scenario and print each dump as a table",
                       description="Run a scenario (a file, - for standard input, or a shipped "
                                   "scenario's name) on the simulator and print each dump as a "
                                   "block-map table.  The scenario's '# config:' header "
                                   "applies; options given here win over it.")
    p.add_argument("file", help="scenario file, - for standard input, or a shipped scenario "
                                "name")
    p.add_argument("--json", metavar="OUT",
                   help="also write the dumps as JSON (- for stdout: then only the JSON there)")
    p.add_argument("--backend", choices=("sim", "qemu"), default="sim",
                   help="sim: the simulator (default); qemu: a real QEMU 7.2 (Debian packages "
                        "qemu-system-x86 and qemu-utils; --design and --era are simulator-only)")
    add_config_arguments(p)
    p.add_argument("--qemu", default="qemu-system-x86_64", metavar="BINARY",
                   help="with --backend qemu: the QEMU binary (default qemu-system-x86_64)")
    p.add_argument("--timeout", type=seconds, default=10.0, metavar="SECONDS",
                   help="with --backend qemu: bound on every QMP command, NBD request and "
                        "wait (0.1-3600, default 10)")
    p.set_defaults(func=cmd_run)

    d = sub.add_parser("demo", help="narrate steps 1-3 of the backup workflow on a small disk",
                       description="Narrate how a primary write reaches the COLO secondary: "
                                   "steps 1-3, with a block map after each step.")
    d.set_defaults(func=cmd_demo)


def config_json(config: LabConfig | dict[str, Any]) -> dict[str, Any]:
    """A run's configuration as JSON: a lab's :class:`~labkit.config.LabConfig` as its
    keywords, a QEMU run's (a dict with the QEMU version) as it is."""
    return config.keywords() if isinstance(config, LabConfig) else dict(config)


def dumps_json(lab: Any) -> dict[str, Any]:
    """The run's dumps, log and violations as a JSON-ready dict."""
    def layer(lay: Layer | None) -> dict[str, Any] | None:
        return None if lay is None else lay.to_json()

    return {
        "config": config_json(lab.config),
        "dumps": [{"title": t, "layers": {n: layer(lay) for n, lay in layers.items()}}
                  for t, layers in lab.dumps],
        "log": lab.log,
        "violations": [v.message for v in lab.violations()],
        "expectation_failures": lab.expectation_failures,
    }


def report(lab: Any) -> str:
    """Everything a run produced, as text (dumps, then outcomes)."""
    out = [LEGEND, dumps_text(lab.dumps, lab.block)]
    for line in lab.log:
        out.append(f"note: {line}")
    for v in lab.violations():
        out.append(f"VIOLATION: {v.message}")
    for f in lab.expectation_failures:
        out.append(f"EXPECT FAILED: {f}")
    out.append(f"replication: {lab.state}; {len(lab.violations())} violation(s), "
               f"{len(lab.expectation_failures)} failed expectation(s)")
    return "\n".join(out)


def cmd_run(args: argparse.Namespace) -> int:
    with json_only_stdout(args.json) as stdout:
        return _run(args, stdout)


def _run(args: argparse.Namespace, stdout: TextIO) -> int:
    text, _ = scenario_input(args.file)
    if args.backend == "qemu":
        from ._qemu import run_on_qemu

        lab: Any = run_on_qemu(text, args)  # a labkit.qemu.QemuRun: dumps, log, ... as a Lab's
    else:
        cfg, scenario = configured_from_cli(text, args)
        lab = build_lab(cfg).play(scenario)
    print(report(lab))
    if args.json:
        text = json.dumps(dumps_json(lab), indent=1, sort_keys=True)
        if args.json == "-":
            stdout.write(text + "\n")
        else:
            with open(args.json, "w", encoding="utf-8") as f:
                f.write(text + "\n")
    return 1 if lab.expectation_failures else 0


def _table(lab: Lab) -> str:
    return block_map(lab.layers(), lab.block)


def demo_text() -> str:
    """The whole demo narration (deterministic)."""
    lab = build_secondary(size="128K", block="4K", hidden_cluster="4K", active_cluster="4K")
    out: list[str] = []
    say = out.append
    say("labkit demo: a COLO secondary on a 128 KiB disk (32 blocks of 4 KiB).")
    say("The secondary disk (raw) holds block k = 0x10+k. hidden and active are qcow2 images")
    say("with 4 KiB clusters, stacked on it: secondary-disk <- hidden <- active <- colo-top.")
    say(LEGEND)
    say("")
    say("== Before replication starts: the secondary VM cannot read (EIO).")
    say(_table(lab))
    lab.start()
    say("")
    say("== xen-set-replication enable=true: replication_start checks the chain, starts the")
    say(f"   backup job (secondary-disk -> hidden, sync=none, backup cluster "
        f"{lab.backup_cluster // 1024} KiB = {lab.backup_cluster // lab.block} blocks) and")
    say("   empties active and hidden with a first checkpoint. The VM reads the secondary disk.")
    say(_table(lab))
    say("")
    say("== The primary writes 0xbb to block 5 through NBD (task nbd-write#1).")
    task = lab.primary_write(5 * 4096, 4096, 0xBB)
    shown = 0
    while not task.done:
        start = len(lab.trace)
        before = _table(lab)  # Step 3's event comes with the data landing: show the map before
        lab.step()
        for event in lab.trace[start:]:
            note = workflow_step(event, era=lab.graph.era)
            if note is None:
                continue
            if note.step > shown:
                if shown:
                    say(before if shown != 1 else "")
                say(STEP_TITLES[note.step])
                shown = note.step
            say(f"   - {note.text}")
    say(_table(lab))
    say("")
    read = lab.vm_read(5 * 4096, 4096)
    lab.run()
    say(f"== The secondary VM reads block 5 (vm-read#1): it gets {read.result[0]:#04x}, the old "
        f"data,")
    say(f"   served by the {lab.provenance(read)[5]} disk: active is empty, hidden holds the "
        f"old copy.")
    say("   The primary's new data stays invisible to the VM until the next checkpoint.")
    say("")
    lab.vm_write(20 * 4096, 4096, 0xCC)
    lab.run()
    say("== The VM writes 0xcc to block 20 (vm-write#1): it goes to active only.")
    say(_table(lab))
    say("")
    lab.checkpoint()
    say("== xen-colo-do-checkpoint: the done bitmap is cleared, active and hidden are emptied.")
    say("   The VM now reads the primary's 0xbb; its own 0xcc is gone (the primary's state won).")
    say(_table(lab))
    say("")
    lab.primary_write(6 * 4096, 4096, 0xBC)
    lab.vm_write(4 * 4096, 4096, 0xCF)
    lab.run()
    say("== The primary writes 0xbc to block 6, the VM writes 0xcf to block 4.")
    say(_table(lab))
    say("")
    lab.failover()
    lab.run()
    say("== Failover: the backup job is cancelled and active (and hidden) are committed into")
    say("   the secondary disk: the primary's un-checkpointed 0xbc is reverted, the VM's 0xcf")
    say("   kept. active and hidden are detached, their contents untouched.")
    say(block_map(lab.layers(), lab.block, note={"hidden": "(detached)",
                                                 "active": "(detached)"}))
    say("")
    say(f"Oracle: {len(lab.violations())} violation(s). Replication is {lab.state}.")
    return "\n".join(out)


def cmd_demo(args: argparse.Namespace) -> int:
    print(demo_text())
    return 0
