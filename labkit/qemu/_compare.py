"""One scenario on the simulator and on a real QEMU 7.2, compared layer by layer.

:func:`compare` plays the scenario on :func:`labkit.run_scenario` with
``era="7.2"`` (QEMU 7.2's control plane: start / checkpoint / stop ignored
after failover) and on :func:`labkit.qemu.run_scenario`, then checks

* every dump, layer by layer (``secondary``, ``hidden``, ``active``,
  ``vm-view``): same bytes and same allocation per 512-byte sector (the zero
  flag is shown but, as in :class:`~labkit.layers.Layer` equality, not
  compared);
* every command's outcome: failed on one side only, or — for the control
  commands, whose messages the simulator copies from QEMU — failed with
  another message;
* the failed ``expect`` lines and ``vread`` checks, and the oracle's
  violations.

A trainee reads :meth:`Comparison.text`: per dump and layer ``same``, or the
first differing sectors with both values and the two block-map rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from labkit.config import header_config
from labkit.errors import ConfigError
from labkit.lab import Lab
from labkit.lab import run_scenario as sim_run_scenario
from labkit.layers import SECTOR, Layer
from labkit.qemu._diff import LAYERS, Difference, compare_runs
from labkit.qemu._races import RaceComparison, compare_races
from labkit.qemu._run import QemuRun, configured_scenario, refuse_par
from labkit.qemu._run import run_scenario as qemu_run_scenario
from labkit.render import LEGEND
from labkit.scenario import Scenario


@dataclass
class Comparison:
    """The result of :func:`compare`: both runs and their differences."""

    scenario: Scenario
    config: dict[str, Any]
    sim: Lab
    qemu: QemuRun
    differences: list[Difference]

    @property
    def agree(self) -> bool:
        """True when no difference was found."""
        return not self.differences

    @property
    def sim_dumps(self) -> list[tuple[str, dict[str, Layer | None]]]:
        return self.sim.dumps

    @property
    def qemu_dumps(self) -> list[tuple[str, dict[str, Layer | None]]]:
        return self.qemu.dumps

    def __repr__(self) -> str:
        verdict = "agree" if self.agree else f"{len(self.differences)} difference(s)"
        return f"<Comparison simulator vs QEMU {self.qemu.version}: {verdict}>"

    def text(self) -> str:
        """The comparison as deterministic text (no timings, pids or paths)."""
        cfg = self.config
        out = [
            f"simulator (era 7.2, design {self.sim.design}) vs QEMU {self.qemu.version}",
            f"size {cfg['size']}, block {cfg['block']}, hidden cluster {cfg['hidden_cluster']}, "
            f"active cluster {cfg['active_cluster']}, fill {cfg['fill']}",
            LEGEND,
        ]
        by_layer = {(d.dump, d.layer): d for d in self.differences
                    if d.kind in ("layer", "readable")}
        for i, (title, layers) in enumerate(self.sim.dumps, start=1):
            out.append(f"-- dump {i}: {title}")
            if i > len(self.qemu.dumps):
                out.append("   (no such dump on QEMU)")
                continue
            for name in layers:
                d = by_layer.get((i, name))
                if d is None:
                    out.append(f"   {name:<10} same")
                    continue
                out.append(f"   {name:<10} DIFFERENT: {_short(d)}")
                if d.rows:
                    out.extend("      " + line for line in d.rows.split("\n"))
        others = [d for d in self.differences if d.kind not in ("layer", "readable")]
        for d in others:
            out.append(f"DIFFERENT {d.kind}: {d}")
        notes = [("simulator", line) for line in self.sim.log] + \
                [("QEMU", line) for line in self.qemu.log]
        for who, line in notes:
            out.append(f"note ({who}): {line}")
        ndumps = len(self.sim.dumps)
        ncmds = len(self.qemu.outcomes)
        if self.agree:
            out.append(f"result: AGREE ({ndumps} dump(s) x {len(LAYERS)} layers, "
                       f"{ncmds} command(s))")
        else:
            out.append(f"result: DISAGREE ({len(self.differences)} difference(s))")
        return "\n".join(out)


def _short(d: Difference) -> str:
    if d.sectors is None:
        return f"simulator {d.sim}; QEMU {d.qemu}"
    s0, s1 = d.sectors
    return (f"sectors {s0}-{s1 - 1} (bytes {s0 * SECTOR:#x}-{s1 * SECTOR - 1:#x}) differ; "
            f"at sector {s0}: simulator {d.sim}, QEMU {d.qemu}")


def compare(text: str | Scenario, *, size: int | str | None = None,
            block: int | str | None = None, hidden_cluster: int | str | None = None,
            active_cluster: int | str | None = None, fill: str | int | None = None,
            design: str | None = None, era: str | None = None,
            timeout: float = 10.0, qemu: str = "qemu-system-x86_64",
            order: str | None = None) -> Comparison | RaceComparison:
    """Run a scenario on the simulator (``era="7.2"``) and on QEMU; compare.

    A sequential scenario gives a :class:`Comparison`.  A scenario with a
    ``par`` block is a race: every order QEMU can force on it is run on both
    (:func:`labkit.qemu.compare_races`, design "4.0" by default) and a
    :class:`~labkit.qemu.RaceComparison` is returned; ``order`` runs only the
    order with those words.  Both have ``agree`` and ``text()``.

    ``size``, ``block``, ``hidden_cluster``, ``active_cluster`` and ``fill``
    configure both (the simulator's defaults; the scenario's ``# config:``
    header applies under the keywords, as in :func:`labkit.run_scenario`);
    ``design`` is the simulator's read protection (without ``par`` it does not
    matter; default "4.0", QEMU 7.2's); ``era`` (keyword or header) must be ``"7.2"``, the
    QEMU the kit checks against.  ``timeout`` and ``qemu`` are the QEMU
    session's.  Raises what :func:`labkit.qemu.run_scenario` raises.
    """
    source = text.text if isinstance(text, Scenario) else text
    if era is None:
        era = header_config(source).get("era", "7.2") if isinstance(source, str) else "7.2"
    if era != "7.2":
        # The kit checks against QEMU 7.2 only: a 2.8 era (or a misspelt one) has no
        # real QEMU to compare with here, so say so in one line (the CLI: exit 2).
        raise ConfigError(f"era {era!r}: the comparison with QEMU runs era 7.2 only (the QEMU "
                          f"installed is 7.2); drop 'era' from the scenario's '# config:' "
                          f"header or set era=7.2 (docs/qemu-eras.md lists where 2.8 differs)")
    config, scenario = configured_scenario(text, size, block, hidden_cluster, active_cluster,
                                           fill)
    if scenario.has_par:
        return compare_races(scenario, design=design or "4.0", order=order,
                             timeout=timeout, qemu=qemu, **config)
    if order is not None:
        raise ConfigError(f"order {order!r}: only a scenario with a par block has orders "
                          f"to force; this one is sequential")
    design = design or "4.0"  # QEMU 7.2's read protection (serialising copy writes)
    refuse_par(scenario)
    sim = sim_run_scenario(scenario, design=design, era="7.2", **config)
    q = qemu_run_scenario(scenario, timeout=timeout, qemu=qemu, **config)
    # The interpreter records each command's outcome on both backends the same way.
    differences = compare_runs(sim, q, config["block"])
    return Comparison(scenario, dict(config, design=design, era="7.2"), sim, q, differences)


__all__ = ["Comparison", "compare"]
