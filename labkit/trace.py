"""Traces and schedules: what happened, and the choices that made it happen.

A *trace* is the list of :class:`~labkit.kernel.Event` s of one run; a
*schedule* is the list of task names the scheduler picked, one per decision.
Replaying the same scenario with the same schedule gives the same trace, byte
for byte, so a schedule is all a trainee needs to share a race.

Two forms of a schedule:

* the compact string, task names with run-lengths: ``"vm-read#1*2 nbd-write#1*5 vm-read#1"``;
* JSON (:func:`dumps` / :func:`loads`), together with the trace, versioned by
  :data:`SCHEMA_VERSION`.  Loading validates every field and rejects a
  malformed file or one written by a newer labkit with :class:`TraceFormatError`.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

from .errors import TraceFormatError
from .kernel import Event

SCHEMA_VERSION = 1
FORMAT_NAME = "labkit-trace"

_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.:-]*#\d+$")
_ITEM = re.compile(r"^(?P<name>[A-Za-z][A-Za-z0-9_.:-]*#\d+)(?:\*(?P<count>\d+))?$")


def format_schedule(names: Iterable[str]) -> str:
    """The compact string of a schedule: consecutive repeats folded as ``name*N``."""
    out: list[str] = []
    last, count = None, 0
    for name in names:
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
    names: list[str] = []
    for position, item in enumerate(t for t in re.split(r"[\s,]+", text.strip()) if t):
        m = _ITEM.match(item)
        if not m:
            raise TraceFormatError(
                f"schedule item {position + 1} {item!r} is not a task name with an optional "
                f"run-length; expected e.g. 'vm-read#1' or 'nbd-write#1*3'")
        count = int(m["count"] or 1)
        if count < 1:
            raise TraceFormatError(f"schedule item {position + 1} {item!r}: run-length must be ≥ 1")
        names.extend([m["name"]] * count)
    return names


def digest(trace: Sequence[Event]) -> str:
    """A SHA-256 of the trace's canonical JSON: equal digests, equal traces."""
    h = hashlib.sha256()
    for e in trace:
        h.update(json.dumps(asdict(e), sort_keys=True, separators=(",", ":")).encode())
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
        "events": [asdict(e) for e in trace],
    }
    return json.dumps(doc, indent=1, sort_keys=True)


_FIELD_TYPES = {f.name: (int if f.type in ("int", int) else str) for f in fields(Event)}


def loads(text: str) -> Recording:
    """Parse and validate a trace file written by :func:`dumps`."""
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise TraceFormatError(f"trace file is not valid JSON: {exc}") from None
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
