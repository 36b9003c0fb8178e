"""Trace and schedule serialisation: round trips, validation, clear rejections."""

from __future__ import annotations

import json

import pytest

from labkit import trace as tr
from labkit.errors import TraceFormatError
from labkit.kernel import Event


def sample() -> tuple[list[Event], list[str]]:
    events = [Event(0, "a#1", "spawn"), Event(1, "a#1", "run"),
              Event(2, "a#1", "req-start", "hidden", 0, 4096, "read")]
    return events, ["a#1", "a#1", "b#2"]


def test_round_trip():
    events, schedule = sample()
    text = tr.dumps(events, schedule, {"design": "2.8"})
    rec = tr.loads(text)
    assert rec.trace == events and rec.schedule == schedule and rec.meta == {"design": "2.8"}
    assert tr.dumps(rec.trace, rec.schedule, rec.meta) == text
    assert tr.digest(rec.trace) == tr.digest(events)


def test_schedule_string_round_trip():
    names = ["vm-read#1", "vm-read#1", "nbd-write#1", "nbd-write#1", "nbd-write#1", "vm-read#1"]
    text = tr.format_schedule(names)
    assert text == "vm-read#1*2 nbd-write#1*3 vm-read#1"
    assert tr.parse_schedule(text) == names
    assert tr.parse_schedule("a#1, b#2*2") == ["a#1", "b#2", "b#2"]
    assert tr.format_schedule([]) == "" and tr.parse_schedule("  ") == []


@pytest.mark.parametrize("bad, message", [
    ("vm-read", "not a task name"),
    ("vm-read#1*x", "not a task name"),
    ("vm-read#1*0", "run-length must be"),
])
def test_bad_schedule_strings(bad, message):
    with pytest.raises(TraceFormatError, match=message):
        tr.parse_schedule(bad)


def mutate(**changes):
    events, schedule = sample()
    doc = json.loads(tr.dumps(events, schedule))
    for key, value in changes.items():
        if key.startswith("event0_"):
            doc["events"][0][key[7:]] = value
        else:
            doc[key] = value
    return json.dumps(doc)


@pytest.mark.parametrize("text, message", [
    ("{not json", "not valid JSON"),
    ("[]", "not a labkit trace"),
    (mutate(format="other"), "not a labkit trace"),
    (mutate(version=99), "schema version 99, newer"),
    (mutate(version="1"), "no integer"),
    (mutate(version=0), "versions start at 1"),
    (mutate(schedule=["not a task"]), "schedule"),
    (mutate(events={}), "must be a list"),
    (mutate(meta=[]), "meta"),
    (mutate(event0_seq=5), "expected 0"),
    (mutate(event0_offset="0"), "'offset' must be int"),
    (mutate(event0_extra=1), "exactly the fields"),
])
def test_malformed_files_are_rejected(text, message):
    with pytest.raises(TraceFormatError, match=message):
        tr.loads(text)
