"""The real-QEMU backend: the COLO secondary's block replication on QEMU 7.2.

:class:`QemuSecondary` runs one ``qemu-system-x86_64 -machine none`` with the
secondary graph (secondary disk ← hidden ← active ← replication), drives it
over QMP and NBD and dumps each layer.  On top of it:

* :func:`run_scenario` plays a scenario-language text on QEMU and returns a
  :class:`QemuRun` (``dumps``, ``log``, ``expectation_failures``, like a
  :class:`labkit.Lab` after :func:`labkit.run_scenario`);
* :func:`compare` plays it on both and returns a :class:`Comparison`
  (``agree``, ``differences``, ``sim_dumps``, ``qemu_dumps``, ``text()``).

Needs the Debian packages ``qemu-system-x86`` and ``qemu-utils``;
:func:`qemu_available` says whether they are usable here.  ``labkit`` itself
never imports this package: import it where QEMU is wanted.
"""

from labkit.qemu._cleanup import close_all_sessions, install_signal_handlers, sweep_stale
from labkit.qemu._compare import Comparison, compare
from labkit.qemu._conformance import Conformance
from labkit.qemu._diff import Difference
from labkit.qemu._errors import BackendError, QemuError, QemuNotAvailable
from labkit.qemu._nbd import NbdClient, NbdError
from labkit.qemu._pause import PLACES, Place, RaceOrder, SimulatorHold
from labkit.qemu._probe import qemu_available
from labkit.qemu._process import leftover_sessions
from labkit.qemu._races import (
    BLKDEBUG_NOTE,
    BLOCK_WAIT,
    OrderResult,
    RaceComparison,
    compare_races,
    hold_on_simulator,
    race_orders,
)
from labkit.qemu._random_races import SweepResult, race_sweep, random_race
from labkit.qemu._run import CommandOutcome, QemuRun, run_scenario
from labkit.qemu._secondary import QemuSecondary
from labkit.qemu._version import (
    CHECKED,
    label_of,
    qemu_label,
    qemu_version,
    version_label,
    version_reason,
)

__all__ = [
    "BLKDEBUG_NOTE",
    "BLOCK_WAIT",
    "CHECKED",
    "PLACES",
    "BackendError",
    "CommandOutcome",
    "Comparison",
    "Conformance",
    "Difference",
    "NbdClient",
    "NbdError",
    "OrderResult",
    "Place",
    "QemuError",
    "QemuNotAvailable",
    "QemuRun",
    "QemuSecondary",
    "RaceComparison",
    "RaceOrder",
    "SimulatorHold",
    "SweepResult",
    "close_all_sessions",
    "compare",
    "compare_races",
    "hold_on_simulator",
    "install_signal_handlers",
    "label_of",
    "leftover_sessions",
    "qemu_available",
    "qemu_label",
    "qemu_version",
    "race_orders",
    "race_sweep",
    "random_race",
    "run_scenario",
    "sweep_stale",
    "version_label",
    "version_reason",
]
