"""The scenario language: one command per line, shared by the simulator, QEMU and the CLI.

::

    start                      pwrite OFF LEN BYTE        vwrite OFF LEN BYTE
    vread OFF LEN [BYTE|orig]  checkpoint                 failover
    stop                       dump [TITLE]               expect LAYER OFF LEN WHAT
    par { ... }                # the commands inside start together as concurrent tasks

Image fleecing (a lab built with ``graph="fleecing"``, :mod:`labkit.fleecing`)
has two more, and reads ``vwrite`` / ``vread`` as the guest's I/O on the live
disk::

    fleece [OFF LEN] [on-cbw-error=break-guest-write|break-snapshot]
    cread OFF LEN [BYTE|orig]  # the backup client's read of the NBD export
    inject-error read|write    # the copy's next read (live disk) / write (overlay) fails

``fleece`` starts the point-in-time view (the scheme's QMP commands, one
drained section); ``OFF LEN`` is copy-before-write's ``bitmap`` (7.2 only:
only that area is copied, and the client may read only there).
``inject-error`` is blkdebug's: the next read of the live disk or write to the
overlay fails with EIO (simulator only), which is how ``on-cbw-error`` is
reached.  A fleecing
scenario's ``expect`` names the layers ``live``, ``fleece`` (the overlay's
own clusters) and ``snapshot`` (what the client reads).  COLO's commands
(``start``, ``pwrite``, ``checkpoint``, ``failover``, ``stop``) and layers
cannot be mixed with fleecing's in one scenario (:func:`check`).

``#`` starts a comment (at the start of a line or after a space, so that a
title may say ``nbd-write#1``).  OFF and LEN accept ``4096``, ``4K``, ``1M``,
``1G``, ``0x1000``, ``3s`` (512-byte sectors) and ``5b`` (blocks of the
configured block size) — ASCII digits only: ``1_0``, ``+5``, ``0x_bb`` or
``٤K`` are refused.  BYTE is ``0xNN`` or a decimal 0–255.  WHAT is
``unalloc``, ``alloc``, ``orig``, ``zero`` or a byte.  Inside ``par { ... }``
commands are separated by newlines or ``;``; a ``par`` block may span lines;
``par`` blocks do not nest (the nesting depth is 1).

``dump TITLE``: the title is the rest of the line (``;``, ``{`` and ``}``
belong to it; `` #`` still starts a comment).  Control characters in a
title (an ANSI escape, a tab...) are kept escaped (``\x1b``), so printing a
title never drives the terminal.

A file may start with a UTF-8 byte-order mark; :func:`decode` turns a file's
bytes into text and names the file and line of any invalid UTF-8.

Bounds, checked before the scenario is split: at most :data:`MAX_TEXT`
characters, :data:`MAX_COMMANDS` commands and :data:`MAX_PAR` commands in one
``par`` block, and the par blocks' cost (:data:`MAX_PAR_WORK`: the sum of each
block's commands squared) before anything runs
(:class:`~labkit.errors.ScenarioLimitError`).

:func:`parse` checks everything before anything runs — syntax, alignment to
512 bytes, the disk's bounds when the size is known — and reports the line
number, the offending text and what was expected.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from .config import (
    BYTE_FORMS,
    MAX_SIZE,
    SIZE_FORMS,
    LabConfig,
    byte_token,
    resolve,
    size_token,
    split_lines,
)
from .errors import ArgumentError, ScenarioError, ScenarioLimitError
from .layers import LAYER_NAMES, SECTOR

IO_COMMANDS = ("pwrite", "vwrite", "vread")
CONTROL_COMMANDS = ("start", "checkpoint", "failover", "stop")
#: Image fleecing's commands (:mod:`labkit.fleecing`).
FLEECING_COMMANDS = ("fleece", "cread", "inject-error")
#: COLO's own commands: never in a fleecing scenario.
COLO_COMMANDS = ("start", "pwrite", "checkpoint", "failover", "stop")
ALL_COMMANDS = (*IO_COMMANDS, *CONTROL_COMMANDS, "dump", "expect", *FLEECING_COMMANDS)
EXPECT_WHATS = ("unalloc", "alloc", "orig", "zero")
#: The layers a fleecing scenario's ``expect`` names.
FLEECING_LAYER_NAMES = ("live", "fleece", "snapshot")
ON_CBW_ERRORS = ("break-guest-write", "break-snapshot")

MAX_TEXT = 64 << 20       # characters of scenario text
MAX_COMMANDS = 1_000_000  # commands in a scenario
MAX_PAR = 2_000           # commands in one par block
# The cost bound of par blocks, checked before anything runs: the sum over a scenario's
# par blocks of (commands in the block)², at most MAX_PAR_WORK.  A par of n reads under
# design "2.8" costs O(n²), faithfully: every read waits on the CowRequests in flight and
# is woken by each (block/backup.c, wait_for_overlapping_requests; qemu_co_queue_restart_all).
# One par of 2,000 reads (the most this allows) ran in 5.5 s and 74 MB on the 2-core
# machine of benchmarks/README.md; with MAX_COMMANDS sequential commands (linear: 100,000
# in 37 s, 411 MB) any accepted scenario stays within about 10 minutes and 6 GB.
MAX_PAR_WORK = MAX_PAR ** 2
MAX_TITLE = 200           # characters of a dump title (longer ones are cut, marked "...")

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def safe_title(title: str) -> str:
    """``title`` with control characters escaped (``\\x1b``), cut at :data:`MAX_TITLE`."""
    out = _CONTROL.sub(lambda m: f"\\x{ord(m[0]):02x}", title)
    return out if len(out) <= MAX_TITLE else out[:MAX_TITLE - 3] + "..."


def decode(data: bytes, name: str = "<scenario>") -> str:
    """A scenario file's bytes as text: UTF-8, an initial byte-order mark dropped.

    Invalid UTF-8 raises :class:`ScenarioError` naming ``name`` and the line.
    """
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        bad = data[exc.start:exc.end]
        raise ScenarioError(line, repr(bad)[2:-1], f"not UTF-8 ({exc.reason}); a scenario file "
                                                   f"is UTF-8 text", source=name) from None
    return text.removeprefix("\ufeff")


@dataclass(frozen=True)
class Command:
    """One scenario command.  ``byte`` is the written or expected byte; ``what`` is
    ``orig`` for ``vread ... orig`` and the check of an ``expect``."""

    op: str
    line: int
    text: str
    offset: int = 0
    length: int = 0
    byte: int | None = None
    what: str | None = None
    layer: str | None = None
    title: str = ""


@dataclass(frozen=True)
class Par:
    """A ``par { ... }`` block: its commands start together and interleave."""

    commands: tuple[Command, ...]
    line: int


Step = Command | Par


@dataclass(frozen=True)
class Scenario:
    """A parsed scenario: its steps in order, and the text it came from."""

    steps: tuple[Step, ...]
    text: str

    @property
    def commands(self) -> list[Command]:
        out: list[Command] = []
        for step in self.steps:
            out.extend(step.commands if isinstance(step, Par) else (step,))
        return out

    @property
    def has_par(self) -> bool:
        return any(isinstance(s, Par) for s in self.steps)


def parse_size(token: str, block: int, line: int, text: str, what: str) -> int:
    """``4096``, ``4K``, ``1M``, ``0x1000``, ``3s``, ``5b`` → bytes (ASCII digits only)."""
    value = size_token(token, block)
    if value is None:
        raise ScenarioError(line, text, f"{what} {token!r} is not a size; expected a number "
                                        f"like {SIZE_FORMS}")
    return value


def parse_byte(token: str, line: int, text: str) -> int:
    value = byte_token(token)
    if value is None:
        raise ScenarioError(line, text, f"{token!r} is not a byte; expected {BYTE_FORMS}")
    return value


_DELIM = re.compile(r"[{};]")
_DUMP = re.compile(r"dump(\s|$)")


def _split_commands(text: str) -> list[tuple[int, str]]:
    """(line number, command text) with comments removed; ``par`` braces kept as tokens.

    A ``dump`` takes the rest of its line as its title, delimiters included.
    """
    out: list[tuple[int, str]] = []
    for number, raw in enumerate(split_lines(text), start=1):
        line = _strip_comment(raw)
        pos = 0
        while pos < len(line):
            while pos < len(line) and line[pos].isspace():
                pos += 1
            if _DUMP.match(line, pos):
                out.append((number, line[pos:].strip()))
                break
            m = _DELIM.search(line, pos)
            end = m.start() if m else len(line)
            part = line[pos:end].strip()
            if part:
                out.append((number, part))
            if m is None:
                break
            if m[0] != ";":
                out.append((number, m[0]))
            pos = m.end()
    return out


def _strip_comment(raw: str) -> str:
    # '#' starts a comment at the start of a line or after a space, so that a dump
    # title may name a task ("dump after nbd-write#1").
    m = re.search(r"(^|\s)#", raw)
    return raw[:m.start()] if m else raw


def parse(text: str, *, block: int = 4096, size: int | None = None) -> Scenario:
    """Parse and check a whole scenario; raise :class:`ScenarioError` at the first problem."""
    if not isinstance(text, str):
        raise ScenarioError(0, repr(text)[:40], "a scenario is text (str)")
    if len(text) > MAX_TEXT:
        raise ScenarioLimitError(0, f"{len(text)} characters", f"a scenario has at most "
                                 f"{MAX_TEXT} characters")
    tokens = _split_commands(text.removeprefix("\ufeff"))
    if len(tokens) > MAX_COMMANDS:
        raise ScenarioLimitError(tokens[MAX_COMMANDS][0], tokens[MAX_COMMANDS][1],
                                 f"a scenario has at most {MAX_COMMANDS} commands")
    steps: list[Step] = []
    i = 0
    while i < len(tokens):
        line, part = tokens[i]
        if part == "}":
            raise ScenarioError(line, part, "'}' without an open 'par {'")
        if part == "{":
            raise ScenarioError(line, part, "'{' must follow 'par'")
        if part.split()[0] == "par":
            if part != "par" or i + 1 >= len(tokens) or tokens[i + 1][1] != "{":
                raise ScenarioError(line, part, "'par' must be followed by '{'")
            j = i + 2
            inner: list[Command] = []
            while j < len(tokens) and tokens[j][1] != "}":
                l2, p2 = tokens[j]
                if p2 in ("{", "par"):
                    raise ScenarioError(l2, p2, "par blocks cannot be nested")
                if p2.split()[0] in ("dump", "expect"):
                    raise ScenarioError(l2, p2, f"'{p2.split()[0]}' cannot run inside par; "
                                        f"put it after the block")
                if len(inner) >= MAX_PAR:
                    raise ScenarioLimitError(l2, p2, f"a par block has at most {MAX_PAR} "
                                                     f"commands")
                inner.append(_command(l2, p2, block, size))
                j += 1
            if j >= len(tokens):
                raise ScenarioError(line, "par {", "'par {' is never closed with '}'")
            if not inner:
                raise ScenarioError(line, "par { }", "a par block needs at least one command")
            steps.append(Par(tuple(inner), line))
            i = j + 1
            continue
        steps.append(_command(line, part, block, size))
        i += 1
    scenario = Scenario(tuple(steps), text)
    check(scenario)
    return scenario


def parse_for(scenario: object, *, block: int, size: int) -> Scenario:
    """``scenario`` (text, or a parsed one parsed again from its text) for a disk of
    ``size`` bytes and a ``b`` unit of ``block``: every command checked before any runs.

    A parsed scenario may be a part of its text (the steps before or after a ``par``
    block, as labkit.qemu's race orders play them): only its own steps, found again
    by their line numbers, are kept."""
    part: set[int] | None = None
    if isinstance(scenario, Scenario):
        part = {step.line for step in scenario.steps}
        scenario = scenario.text
    if not isinstance(scenario, str):
        raise ArgumentError(f"a scenario is its text (str) or a parsed Scenario, got "
                            f"{type(scenario).__name__}")
    whole = parse(scenario, block=block, size=size)
    if part is None:
        return whole
    return Scenario(tuple(s for s in whole.steps if s.line in part), whole.text)


def configured(text: str | Scenario, *, source: str = "keyword",
               **explicit: object) -> tuple[LabConfig, Scenario]:
    """The one way from scenario text plus keywords to a run's configuration and steps.

    The configuration is the scenario's ``# config:`` header, then ``explicit``
    over it (a None value means "not given"), checked by
    :class:`~labkit.config.LabConfig` (:func:`labkit.config.resolve`); the
    scenario is parsed with that configuration's ``block`` (the ``b`` unit) and
    ``size`` (:func:`parse_for`, so a parsed part of a scenario stays that part).
    Nothing is built: a bad value raises :class:`~labkit.errors.ConfigError`,
    :class:`~labkit.errors.ArgumentError` (a bad type or an unknown key, naming
    the allowed ones) or :class:`~labkit.errors.LimitError` naming the key as
    ``source`` spells it (``"keyword"``, ``"cli"``), a bad scenario
    :class:`~labkit.errors.ScenarioError`.  Every entry point that runs a
    scenario (``lk.run_scenario``, explore and replay, the widgets, the CLI,
    the QEMU backend) starts here.
    """
    source_text = text.text if isinstance(text, Scenario) else text
    if not isinstance(source_text, str):
        raise ArgumentError(f"a scenario is its text (str) or a parsed Scenario, got "
                            f"{type(text).__name__}")
    if source not in ("keyword", "cli"):
        raise ArgumentError(f"configured: source is 'keyword' or 'cli' (how errors name a "
                            f"key), got {source!r}")
    config = resolve(source_text, explicit, source)
    return config, parse_for(text, block=config.block, size=config.size)


def check(scenario: Scenario) -> None:
    """Checks on a whole parsed scenario, after the syntax: the one place to add them.

    :func:`parse` calls it last, so every command (run, explore, replay,
    compare, the widgets) refuses the same scenarios.  A check raises
    :class:`ScenarioError` naming the line and why.  (Rules about control
    commands inside ``par`` belong here.)  The cost bound of ``par`` blocks
    (:data:`MAX_PAR_WORK`) is checked here.

    A scenario is either COLO's or image fleecing's: fleecing's commands
    (``fleece``, ``cread``) and layers do not mix with COLO's.
    """
    work = 0
    for step in scenario.steps:
        if isinstance(step, Par):
            work += len(step.commands) ** 2
            if work > MAX_PAR_WORK:
                raise ScenarioLimitError(
                    step.line, "par {", f"the par blocks up to here cost {work:,} (the sum of "
                    f"each block's commands squared), more than the {MAX_PAR_WORK:,} allowed: "
                    f"a par of n reads costs n² (each waits on the others' copies); use "
                    f"fewer or smaller par blocks")
    first: dict[str, Command] = {}
    for cmd in scenario.commands:
        kind = _graph_of(cmd)
        if kind is None:
            continue
        other = "colo" if kind == "fleecing" else "fleecing"
        if other in first:
            was = first[other]
            raise ScenarioError(cmd.line, cmd.text, f"a scenario is COLO's or image fleecing's, "
                                f"not both: line {was.line} ({was.text!r}) is "
                                f"{'COLO' if other == 'colo' else 'fleecing'}'s")
        first.setdefault(kind, cmd)


def _graph_of(cmd: Command) -> str | None:
    if cmd.op in FLEECING_COMMANDS or (cmd.op == "expect" and cmd.layer in FLEECING_LAYER_NAMES):
        return "fleecing"
    if cmd.op in COLO_COMMANDS or (cmd.op == "expect" and cmd.layer in LAYER_NAMES):
        return "colo"
    return None


def scenario_graph(scenario: Scenario) -> str | None:
    """``"fleecing"`` or ``"colo"`` when the scenario's commands say which graph they
    need, None when they fit both (only ``vread``/``vwrite``/``dump``)."""
    for cmd in scenario.commands:
        kind = _graph_of(cmd)
        if kind is not None:
            return kind
    return None


def _command(line: int, text: str, block: int, size: int | None) -> Command:
    cmd = _parse_command(line, text, block, size)
    if cmd.op != "dump" and _CONTROL.search(cmd.text):  # a tab or form feed between words
        cmd = replace(cmd, text=_CONTROL.sub(" ", cmd.text))
    return cmd


def _parse_command(line: int, text: str, block: int, size: int | None) -> Command:
    words = text.split()
    op, args = words[0], words[1:]
    if op not in ALL_COMMANDS:
        raise ScenarioError(line, text, f"unknown command {op!r}; expected one of "
                                        f"{', '.join(ALL_COMMANDS)}, or 'par {{'")
    if op in ("fleece", "inject-error"):
        return _fleece(line, text, args, block, size, op)
    if op in CONTROL_COMMANDS:
        if args:
            raise ScenarioError(line, text, f"'{op}' takes no arguments")
        return Command(op, line, text)
    if op == "dump":
        title = text[len("dump"):].strip()
        return Command(op, line, safe_title(text), title=safe_title(title) or f"line {line}")
    if op == "expect":
        if len(args) != 4:
            raise ScenarioError(line, text, "expected 'expect LAYER OFF LEN WHAT' with LAYER one "
                                f"of {', '.join(LAYER_NAMES)} and WHAT one of "
                                f"{', '.join(EXPECT_WHATS)} or a byte")
        layer = args[0]
        if layer not in LAYER_NAMES + FLEECING_LAYER_NAMES:
            raise ScenarioError(line, text, f"unknown layer {layer!r}; expected one of "
                                            f"{', '.join(LAYER_NAMES)} (COLO) or "
                                            f"{', '.join(FLEECING_LAYER_NAMES)} (fleecing)")
        offset, length = _range(args[1], args[2], line, text, block, size)
        what = args[3]
        byte = None
        if what not in EXPECT_WHATS:
            byte = parse_byte(what, line, text)
            what = "byte"
        return Command(op, line, text, offset, length, byte, what, layer)
    # I/O commands
    if op in ("vread", "cread"):
        if len(args) not in (2, 3):
            raise ScenarioError(line, text, f"expected '{op} OFF LEN [BYTE|orig]'")
    elif len(args) != 3:
        raise ScenarioError(line, text, f"expected '{op} OFF LEN BYTE'")
    offset, length = _range(args[0], args[1], line, text, block, size)
    data: int | None = None
    check: str | None = None
    if len(args) == 3:
        if op in ("vread", "cread") and args[2] == "orig":
            check = "orig"
        else:
            data = parse_byte(args[2], line, text)
            check = "byte" if op in ("vread", "cread") else None
    return Command(op, line, text, offset, length, data, check)


def _fleece(line: int, text: str, args: list[str], block: int,
            size: int | None, op: str = "fleece") -> Command:
    """``fleece [OFF LEN] [on-cbw-error=MODE]``: the bitmap in offset/length (length 0:
    none, the whole disk), the error mode in ``what``; ``inject-error read|write``."""
    if op == "inject-error":
        if len(args) != 1 or args[0] not in ("read", "write"):
            raise ScenarioError(line, text, "expected 'inject-error read|write' (the copy's "
                                            "next read of the live disk, or write into the "
                                            "overlay, fails with EIO)")
        return Command(op, line, text, what=args[0])
    usage = ("expected 'fleece [OFF LEN] [on-cbw-error=break-guest-write|break-snapshot]'")
    mode: str | None = None
    if args and args[-1].startswith("on-cbw-error="):
        mode = args[-1].split("=", 1)[1]
        if mode not in ON_CBW_ERRORS:
            raise ScenarioError(line, text, f"on-cbw-error {mode!r} is not one of "
                                            f"{', '.join(ON_CBW_ERRORS)}")
        args = args[:-1]
    if len(args) == 0:
        return Command("fleece", line, text, what=mode)
    if len(args) != 2:
        raise ScenarioError(line, text, usage)
    offset, length = _range(args[0], args[1], line, text, block, size)
    return Command("fleece", line, text, offset, length, what=mode)


def _range(off_t: str, len_t: str, line: int, text: str, block: int,
           size: int | None) -> tuple[int, int]:
    offset = parse_size(off_t, block, line, text, "offset")
    length = parse_size(len_t, block, line, text, "length")
    if offset % SECTOR or length % SECTOR:
        raise ScenarioError(line, text, f"offset {offset} and length {length} must be multiples "
                                        f"of {SECTOR} bytes (the request alignment)")
    if length == 0:
        raise ScenarioError(line, text, "length must be at least one 512-byte sector")
    limit = MAX_SIZE if size is None else size
    if offset + length > limit:
        if size is None:
            raise ScenarioLimitError(line, text, f"[{offset}, {offset + length}) reaches past "
                                                 f"labkit's largest disk ({MAX_SIZE} bytes)")
        raise ScenarioError(line, text, f"[{offset}, {offset + length}) reaches past the end of "
                                        f"the {size}-byte disk")
    return offset, length
