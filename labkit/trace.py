"""Traces and schedules: what happened, and the choices that made it happen.

A *trace* is the list of :class:`~labkit.kernel.Event` s of one run; a
*schedule* is the list of task names the scheduler picked, one per decision.
Replaying the same scenario with the same schedule gives the same trace, byte
for byte, so a schedule is all a trainee needs to share a race.

Two forms of a schedule:

* the compact string, task names with run-lengths: ``"vm-read#1*2 nbd-write#1*5 vm-read#1"``;
* JSON (:func:`dumps` / :func:`loads`), together with the trace, versioned by
  :data:`SCHEMA_VERSION`.  Loading validates every field and rejects a
  malformed file, one written by a newer labkit, or one of schema version 1
  (before events had their typed ``op`` field) with :class:`TraceFormatError`.

Inputs are bounded before anything is allocated: a schedule has at most
:data:`MAX_SCHEDULE` choices, a trace file at most :data:`MAX_TRACE_CHARS`
characters and :data:`MAX_JSON_DEPTH` levels of nesting
(:class:`~labkit.errors.LimitError` / :class:`TraceFormatError`).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import ArgumentError, LimitError, TraceFormatError
from .kernel import Event

# 2: events carry ``op`` (the typed I/O op of a point, the type of a tracked
# request), ``detail`` is display text only.
SCHEMA_VERSION = 2
FORMAT_NAME = "labkit-trace"
MAX_SCHEDULE = 10_000_000  # choices in one schedule (a run of 10 M decisions is hours)
MAX_TRACE_CHARS = 512 << 20  # characters of a trace file's JSON
MAX_JSON_DEPTH = 64  # a trace file nests 3 levels; far deeper is not a trace

_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.:-]*#\d+$")
_ITEM = re.compile(r"^(?P<name>[A-Za-z][A-Za-z0-9_.:-]*#\d+)(?:\*(?P<count>\d+))?$")


def format_schedule(names: Iterable[str]) -> str:
    """The compact string of a schedule: consecutive repeats folded as ``name*N``."""
    if isinstance(names, str) or not isinstance(names, Iterable):
        raise ArgumentError(f"format_schedule needs a list of task names, got "
                            f"{type(names).__name__}")
    out: list[str] = []
    last, count = None, 0
    for name in names:
        if not isinstance(name, str) or not _NAME.match(name):
            raise ArgumentError(f"format_schedule: {name!r} is not a task name like "
                                f"'vm-read#1'")
        if name == last:
            count += 1
            continue
        if last is not None:
            out.append(last if count == 1 else f"{last}*{count}")
        last, count = name, 1
    if last is not None:
        out.append(last if count == 1 else f"{last}*{count}")
    return " ".join(out)


def parse_schedule(text: str) -> list[str]:
    """Parse :func:`format_schedule`'s string (commas or spaces separate items)."""
    if not isinstance(text, str):
        raise TraceFormatError(f"a schedule string is text, got {type(text).__name__}")
    if len(text) > MAX_TRACE_CHARS:
        raise LimitError(f"schedule of {len(text)} characters is longer than the "
                         f"{MAX_TRACE_CHARS} allowed")
    names: list[str] = []
    for position, item in enumerate(t for t in re.split(r"[\s,]+", text.strip()) if t):
        m = _ITEM.match(item)
        if not m:
            raise TraceFormatError(
                f"schedule item {position + 1} {item!r} is not a task name with an optional "
                f"run-length; expected e.g. 'vm-read#1' or 'nbd-write#1*3'")
        digits = (m["count"] or "1").lstrip("0") or "0"  # the value, not its digits: 0001 is 1
        count = int(digits) if len(digits) <= 9 else MAX_SCHEDULE + 1
        if count < 1:
            raise TraceFormatError(f"schedule item {position + 1} {item!r}: run-length must be ≥ 1")
        if len(names) + count > MAX_SCHEDULE:
            raise LimitError(f"schedule item {position + 1} {item[:40]!r}: the schedule would "
                             f"have more than {MAX_SCHEDULE:,} choices, the most labkit replays")
        names.extend([m["name"]] * count)
    return names


def check_names(names: Sequence[object], what: str = "schedule") -> list[str]:
    """A list of task names (a JSON schedule's items), each one name — ``"vm-read#1*3"``
    is not read as a run-length here (only the compact string has run-lengths)."""
    if len(names) > MAX_SCHEDULE:
        raise LimitError(f"a {what} has at most {MAX_SCHEDULE:,} choices, got {len(names):,}")
    for position, name in enumerate(names):
        if not isinstance(name, str) or not _NAME.match(name):
            raise TraceFormatError(f"{what} item {position + 1} {name!r} is not a task name "
                                   f"like 'vm-read#1' (a list holds one name per choice; "
                                   f"run-lengths such as '*3' belong to the compact string)")
    return list(names)  # type: ignore[arg-type]


def digest(trace: Sequence[Event]) -> str:
    """A SHA-256 of the trace's canonical JSON: equal digests, equal traces."""
    h = hashlib.sha256()
    for e in trace:
        h.update(json.dumps(e.as_dict(), sort_keys=True, separators=(",", ":")).encode())
        h.update(b"\n")
    return h.hexdigest()


@dataclass(frozen=True)
class Recording:
    """A loaded trace file: the schedule, the trace, and free-form metadata."""

    schedule: list[str]
    trace: list[Event]
    meta: dict[str, Any]


def dumps(trace: Sequence[Event], schedule: Sequence[str], meta: dict[str, Any] | None = None,
          ) -> str:
    """Serialise a trace and its schedule to JSON (stable key order, no timings)."""
    doc = {
        "format": FORMAT_NAME,
        "version": SCHEMA_VERSION,
        "meta": meta or {},
        "schedule": list(schedule),
        "events": [e.as_dict() for e in trace],
    }
    return json.dumps(doc, indent=1, sort_keys=True)


_FIELD_TYPES = {name: (int if name in ("seq", "offset", "length") else str)
                for name in Event.FIELDS}
_BLOCK = 1 << 20  # characters scanned at a time by _check_depth (bounded memory)
_BYTE = {c: ord(c) for c in '"[]{}'}


def _check_depth(text: str, what: str) -> None:
    """Refuse JSON nested deeper than :data:`MAX_JSON_DEPTH` before parsing it (Python's
    parser recurses once per level: 200,000 ``[`` would be a RecursionError).

    Linear in time and bounded in memory: escapes are dropped first (``\\\\`` then
    ``\\"``, left to right as JSON reads them), so that every remaining quote opens
    or closes a string; then, a block at a time with numpy, a bracket counts only
    where an even number of quotes precedes it.  (A regex scan of strings went back
    to each quote of an unterminated string: quadratic.)
    """
    if text.count("[") + text.count("{") <= MAX_JSON_DEPTH:
        return
    plain = text.replace("\\\\", "").replace('\\"', "").encode("utf-8", "replace")
    depth, inside = 0, 0
    for pos in range(0, len(plain), _BLOCK):
        a = np.frombuffer(plain, dtype=np.uint8, count=min(_BLOCK, len(plain) - pos),
                          offset=pos)
        parity = (np.cumsum(a == _BYTE['"'], dtype=np.uint8) + inside) & 1
        step = ((a == _BYTE["["]) | (a == _BYTE["{"])).astype(np.int8)
        step -= ((a == _BYTE["]"]) | (a == _BYTE["}"])).astype(np.int8)
        step[parity == 1] = 0
        levels = np.cumsum(step, dtype=np.int64) + depth
        if int(levels.max()) > MAX_JSON_DEPTH:
            raise TraceFormatError(f"{what} nests arrays or objects more than "
                                   f"{MAX_JSON_DEPTH} levels deep; a labkit trace file has 3")
        depth, inside = int(levels[-1]), int(parity[-1])


def load_json(text: str, what: str = "trace file") -> Any:
    """``json.loads`` with labkit's bounds and errors (:class:`TraceFormatError`)."""
    if len(text) > MAX_TRACE_CHARS:
        raise LimitError(f"{what} of {len(text):,} characters is larger than the "
                         f"{MAX_TRACE_CHARS:,} allowed")
    _check_depth(text, what)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise TraceFormatError(f"{what} is not valid JSON: {exc}") from None
    except ValueError as exc:  # an integer literal past Python's 4,300-digit limit
        raise TraceFormatError(f"{what} holds a number labkit cannot read: {exc}") from None
    except RecursionError:  # cannot happen after _check_depth; never a traceback
        raise TraceFormatError(f"{what} nests too deeply") from None


def loads(text: str) -> Recording:
    """Parse and validate a trace file written by :func:`dumps`."""
    if not isinstance(text, str):
        raise TraceFormatError(f"a trace file is JSON text, got {type(text).__name__}")
    doc = load_json(text)
    if not isinstance(doc, dict) or doc.get("format") != FORMAT_NAME:
        raise TraceFormatError(f"not a labkit trace: expected an object with "
                               f"\"format\": \"{FORMAT_NAME}\"")
    version = doc.get("version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise TraceFormatError("trace file has no integer \"version\"")
    if version > SCHEMA_VERSION:
        raise TraceFormatError(f"trace file has schema version {version}, newer than this "
                               f"labkit understands ({SCHEMA_VERSION}); upgrade labkit")
    if version < 1:
        raise TraceFormatError(f"trace file has schema version {version}; versions start at 1")
    if version < SCHEMA_VERSION:
        raise TraceFormatError(
            f"trace file has schema version {version}, written by an older labkit; this one "
            f"reads version {SCHEMA_VERSION} (events with a typed \"op\" field): record it "
            f"again, e.g. with labkit explore --json or Counterexample.to_json()")
    schedule = doc.get("schedule")
    if not isinstance(schedule, list) or not all(isinstance(n, str) and _NAME.match(n)
                                                  for n in schedule):
        raise TraceFormatError("\"schedule\" must be a list of task names like 'vm-read#1'")
    events_raw = doc.get("events")
    if not isinstance(events_raw, list):
        raise TraceFormatError("\"events\" must be a list of event objects")
    meta = doc.get("meta", {})
    if not isinstance(meta, dict):
        raise TraceFormatError("\"meta\" must be an object")
    events: list[Event] = []
    for i, raw in enumerate(events_raw):
        if not isinstance(raw, dict) or set(raw) != set(_FIELD_TYPES):
            raise TraceFormatError(f"event {i} must be an object with exactly the fields "
                                   f"{sorted(_FIELD_TYPES)}")
        for key, typ in _FIELD_TYPES.items():
            value = raw[key]
            if not isinstance(value, typ) or isinstance(value, bool):
                raise TraceFormatError(f"event {i}: field {key!r} must be {typ.__name__}, "
                                       f"got {value!r}")
        if raw["seq"] != i:
            raise TraceFormatError(f"event {i}: \"seq\" is {raw['seq']}, expected {i} "
                                   f"(events must be numbered in order from 0)")
        events.append(Event(**raw))
    return Recording(list(schedule), events, meta)
