"""What every subcommand shares: scenario input, configuration options, one-line errors.

A scenario argument is a file, ``-`` for standard input, or the name of a
shipped scenario (:func:`labkit.scenarios.names`); a file's bytes are decoded
by :func:`labkit.scenario.decode` (UTF-8, a byte-order mark tolerated, bad
bytes named by file and line).  The configuration options are the
:class:`labkit.config.LabConfig` keys; :func:`configured_from_cli` applies the
scenario's ``# config:`` header under the options given and parses the
scenario with the result (:func:`labkit.scenario.configured`, the one way from
text and keywords to a run) — so ``run``, ``explore``, ``replay`` and
``compare`` read a scenario alike.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import stat
import sys
from collections.abc import Iterator
from typing import Any, NoReturn, TextIO

from .. import scenarios
from ..config import CONFIG_KEYS, LabConfig
from ..errors import ConfigError, LimitError, TraceFormatError, UnknownScenario
from ..scenario import MAX_TEXT, Scenario, configured, decode
from ..trace import MAX_TRACE_CHARS

CONFIG_HELP = {
    "size": "disk size (default 1M)",
    "block": "table block size (default 4K)",
    "hidden_cluster": "hidden qcow2 cluster size (default 4K)",
    "active_cluster": "active qcow2 cluster size (default 4K)",
    "design": "read protection design: none, 2.8 or 4.0 (default 2.8); with --graph fleecing "
              "the scheme: 2.12, 3.0 or 7.2 (default 7.2)",
    "era": "control-plane behaviour: 2.8 or 7.2 (default 2.8)",
    "fill": "secondary disk contents: index (block k = 0x10+k, default), zero or a byte",
    "backup_cluster": "override the backup cluster size (not QEMU; a power of two)",
    "graph": "the lab's graph: colo (the COLO secondary, default) or fleecing (image fleecing)",
}


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose errors are one line on stderr and exit status 2."""

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"{self.prog}: {one_line(message)} (see {self.prog} --help)\n")
        raise SystemExit(2)


def one_line(exc: BaseException | str) -> str:
    """An error as one line: its lines joined (a QEMU log tail stays readable)."""
    text = str(exc).strip()
    return " / ".join(part.strip() for part in text.splitlines() if part.strip()) or repr(exc)


def add_config_arguments(parser: argparse.ArgumentParser,
                         keys: tuple[str, ...] = ("size", "block", "hidden_cluster",
                                                  "active_cluster", "design", "era", "fill",
                                                  "backup_cluster", "graph")) -> None:
    """The configuration options (default: not given, so the header or the default applies)."""
    for key in keys:
        parser.add_argument(f"--{key.replace('_', '-')}", dest=key, default=None,
                            metavar="VALUE", help=CONFIG_HELP[key])


def given_config(args: argparse.Namespace, keys: tuple[str, ...] | None = None) -> dict[str, Any]:
    """The configuration options given on the command line (by key)."""
    return {k: getattr(args, k) for k in (keys or CONFIG_KEYS)
            if getattr(args, k, None) is not None}


def configured_from_cli(text: str, args: argparse.Namespace,
                        keys: tuple[str, ...] | None = None) -> tuple[LabConfig, Scenario]:
    """The scenario's ``# config:`` header, then the options given (checked, CLI
    wording), and the scenario parsed with them."""
    return configured(text, source="cli", **given_config(args, keys))


READ_PIECE = 1 << 20  # standard input and devices are read this much at a time


def read_bounded(path: str, limit: int, what: str) -> bytes:
    """The bytes of ``path`` (``-``: standard input), refused before they are allocated
    when there are more than ``limit`` of them — the one policy of every CLI input.

    A regular file's size is checked before reading; standard input, a pipe or a
    device is read ``READ_PIECE`` bytes at a time and refused at the first byte past
    ``limit`` or at a NUL byte (text has none: ``/dev/zero`` is refused at once).
    """
    label = "<stdin>" if path == "-" else path
    if path == "-":
        return _read_pieces(sys.stdin.buffer, limit, what, label)
    with open(path, "rb") as f:
        st = os.fstat(f.fileno())
        if stat.S_ISREG(st.st_mode):
            if st.st_size > limit:
                raise LimitError(f"{label}: {what} of {st.st_size:,} bytes is larger than the "
                                 f"{limit:,} allowed")
            data = f.read(limit + 1)
            if len(data) > limit:  # grew while being read
                raise LimitError(f"{label}: {what} is larger than the {limit:,} bytes allowed")
            return data
        return _read_pieces(f, limit, what, label)


def _read_pieces(f: Any, limit: int, what: str, label: str) -> bytes:
    pieces: list[bytes] = []
    total = 0
    while True:
        piece = f.read(min(READ_PIECE, limit + 1 - total))
        if not piece:
            return b"".join(pieces)
        if b"\0" in piece:
            line = sum(p.count(b"\n") for p in pieces) + piece.count(b"\n", 0,
                                                                    piece.index(b"\0")) + 1
            raise LimitError(f"{label}: line {line}: a NUL byte; {what} is text")
        total += len(piece)
        if total > limit:
            raise LimitError(f"{label}: {what} is larger than the {limit:,} bytes allowed")
        pieces.append(piece)


@contextlib.contextmanager
def json_only_stdout(target: str | None) -> Iterator[TextIO]:
    """Yields the standard output for the JSON; with ``--json -`` every other line a
    command prints goes to standard error, so that stdout holds the JSON only."""
    stdout = sys.stdout
    if target != "-":
        yield stdout
        return
    with contextlib.redirect_stdout(sys.stderr):
        yield stdout


def read_scenario(path: str) -> str:
    """A scenario file's text, or standard input for ``-`` (decoded, BOM dropped; at
    most :data:`labkit.scenario.MAX_TEXT` bytes, see :func:`read_bounded`)."""
    label = "<stdin>" if path == "-" else path
    return decode(read_bounded(path, MAX_TEXT + 3, "a scenario"), label)


def read_json_text(path: str, what: str) -> str:
    """A schedule or trace file's text (UTF-8, at most
    :data:`labkit.trace.MAX_TRACE_CHARS` bytes); bad bytes named by file and line."""
    data = read_bounded(path, MAX_TRACE_CHARS, what)
    try:
        return data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise TraceFormatError(f"{path}: line {line}: not UTF-8 ({exc.reason}); {what} is "
                               f"UTF-8 text") from None


def scenario_input(arg: str) -> tuple[str, str]:
    """(text, label) for a file, ``-`` or a shipped scenario's name."""
    if arg == "-" or os.path.exists(arg):
        return read_scenario(arg), ("<stdin>" if arg == "-" else arg)
    try:
        return scenarios.load(arg), f"{arg.removesuffix('.scn')}.scn (shipped)"
    except UnknownScenario:
        raise ConfigError(f"{arg!r} is neither a file nor a shipped scenario; shipped: "
                          f"{', '.join(scenarios.names())}") from None


def positive_int(value: str) -> int:
    """An argparse type: an integer ≥ 1."""
    if not value.isascii() or not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}")
    return int(value)


def natural_int(value: str) -> int:
    """An argparse type: an integer ≥ 0."""
    if not value.isascii() or not value.isdigit():
        raise argparse.ArgumentTypeError(f"expected an integer ≥ 0, got {value!r}")
    return int(value)


def seconds(value: str) -> float:
    """An argparse type: a QEMU timeout, a finite number from 0.1 to 3600 seconds."""
    try:
        x = float(value)
    except ValueError:
        x = math.nan
    if not 0.1 <= x <= 3600:  # refuses nan and inf too
        raise argparse.ArgumentTypeError(f"expected seconds from 0.1 to 3600, got {value!r}")
    return x
