"""The scenario language: one command per line, shared by the simulator, QEMU and the CLI.

::

    start                      pwrite OFF LEN BYTE        vwrite OFF LEN BYTE
    vread OFF LEN [BYTE|orig]  checkpoint                 failover
    stop                       dump [TITLE]               expect LAYER OFF LEN WHAT
    par { ... }                # the commands inside start together as concurrent tasks

``#`` starts a comment.  OFF and LEN accept ``4096``, ``4K``, ``1M``,
``0x1000``, ``3s`` (512-byte sectors) and ``5b`` (blocks of the configured
block size).  BYTE is ``0xNN`` or a decimal 0–255.  WHAT is ``unalloc``,
``alloc``, ``orig``, ``zero`` or a byte.  Inside ``par { ... }`` commands are
separated by newlines or ``;``; a ``par`` block may span lines.

:func:`parse` checks everything before anything runs — syntax, alignment to
512 bytes, the disk's bounds when the size is known — and reports the line
number, the offending text and what was expected.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import ScenarioError
from .layers import LAYER_NAMES, SECTOR

IO_COMMANDS = ("pwrite", "vwrite", "vread")
CONTROL_COMMANDS = ("start", "checkpoint", "failover", "stop")
ALL_COMMANDS = (*IO_COMMANDS, *CONTROL_COMMANDS, "dump", "expect")
EXPECT_WHATS = ("unalloc", "alloc", "orig", "zero")

_SIZE = re.compile(r"^(?:0x(?P<hex>[0-9a-fA-F]+)|(?P<num>\d+)(?P<unit>[KkMmGgsb]?))$")
_UNITS = {"": 1, "k": 1024, "m": 1 << 20, "g": 1 << 30, "s": SECTOR}


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
    """``4096``, ``4K``, ``1M``, ``0x1000``, ``3s``, ``5b`` → bytes."""
    m = _SIZE.match(token)
    if not m:
        raise ScenarioError(line, text, f"{what} {token!r} is not a size; expected a number "
                                        f"like 4096, 4K, 1M, 0x1000, 3s (sectors) or 5b (blocks)")
    if m["hex"] is not None:
        return int(m["hex"], 16)
    unit = m["unit"]
    mult = block if unit == "b" else _UNITS[unit.lower()]
    return int(m["num"]) * mult


def parse_byte(token: str, line: int, text: str) -> int:
    try:
        value = int(token, 16) if token.lower().startswith("0x") else int(token, 10)
    except ValueError:
        value = -1
    if not 0 <= value <= 255:
        raise ScenarioError(line, text, f"{token!r} is not a byte; expected 0x00-0xff or 0-255")
    return value


def _split_commands(text: str) -> list[tuple[int, str]]:
    """(line number, command text) with comments removed; ``par`` braces kept as tokens."""
    out: list[tuple[int, str]] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = _strip_comment(raw)
        for part in re.split(r"([{};])", line):
            part = part.strip()
            if part and part != ";":
                out.append((number, part))
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
    tokens = _split_commands(text)
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
                inner.append(_command(l2, p2, block, size))
                j += 1
            if j >= len(tokens):
                raise ScenarioError(line, "par {", "'par {' is never closed with '}'")
            if not inner:
                raise ScenarioError(line, "par { }", "a par block needs at least one command")
            for cmd in inner:
                if cmd.op in ("dump", "expect"):
                    raise ScenarioError(cmd.line, cmd.text, f"'{cmd.op}' cannot run inside par; "
                                        f"put it after the block")
            steps.append(Par(tuple(inner), line))
            i = j + 1
            continue
        steps.append(_command(line, part, block, size))
        i += 1
    return Scenario(tuple(steps), text)


def _command(line: int, text: str, block: int, size: int | None) -> Command:
    words = text.split()
    op, args = words[0], words[1:]
    if op not in ALL_COMMANDS:
        raise ScenarioError(line, text, f"unknown command {op!r}; expected one of "
                                        f"{', '.join(ALL_COMMANDS)}, or 'par {{'")
    if op in CONTROL_COMMANDS:
        if args:
            raise ScenarioError(line, text, f"'{op}' takes no arguments")
        return Command(op, line, text)
    if op == "dump":
        return Command(op, line, text, title=" ".join(args) or f"line {line}")
    if op == "expect":
        if len(args) != 4:
            raise ScenarioError(line, text, "expected 'expect LAYER OFF LEN WHAT' with LAYER one "
                                f"of {', '.join(LAYER_NAMES)} and WHAT one of "
                                f"{', '.join(EXPECT_WHATS)} or a byte")
        layer = args[0]
        if layer not in LAYER_NAMES:
            raise ScenarioError(line, text, f"unknown layer {layer!r}; expected one of "
                                            f"{', '.join(LAYER_NAMES)}")
        offset, length = _range(args[1], args[2], line, text, block, size)
        what = args[3]
        byte = None
        if what not in EXPECT_WHATS:
            byte = parse_byte(what, line, text)
            what = "byte"
        return Command(op, line, text, offset, length, byte, what, layer)
    # I/O commands
    if op == "vread":
        if len(args) not in (2, 3):
            raise ScenarioError(line, text, "expected 'vread OFF LEN [BYTE|orig]'")
    elif len(args) != 3:
        raise ScenarioError(line, text, f"expected '{op} OFF LEN BYTE'")
    offset, length = _range(args[0], args[1], line, text, block, size)
    byte, what = None, None
    if len(args) == 3:
        if op == "vread" and args[2] == "orig":
            what = "orig"
        else:
            byte = parse_byte(args[2], line, text)
            what = "byte" if op == "vread" else None
    return Command(op, line, text, offset, length, byte, what)


def _range(off_t: str, len_t: str, line: int, text: str, block: int,
           size: int | None) -> tuple[int, int]:
    offset = parse_size(off_t, block, line, text, "offset")
    length = parse_size(len_t, block, line, text, "length")
    if offset % SECTOR or length % SECTOR:
        raise ScenarioError(line, text, f"offset {offset} and length {length} must be multiples "
                                        f"of {SECTOR} bytes (the request alignment)")
    if length == 0:
        raise ScenarioError(line, text, "length must be at least one 512-byte sector")
    if size is not None and offset + length > size:
        raise ScenarioError(line, text, f"[{offset}, {offset + length}) reaches past the end of "
                                        f"the {size}-byte disk")
    return offset, length
