"""The error contract: every refusal in labkit/ is a labkit exception class from errors.py.

An AST walk over labkit's source: a ``raise`` of a bare built-in exception, or
an exception class defined outside ``labkit/errors.py``, fails this test.
"""

from __future__ import annotations

import ast
import builtins
from pathlib import Path

import pytest

import labkit
from labkit import errors

LABKIT = Path(labkit.__file__).parent

BUILTIN_EXCEPTIONS = {name for name, obj in vars(builtins).items()
                      if isinstance(obj, type) and issubclass(obj, BaseException)}

# Built-ins that are a protocol, not a refusal: the process exit of a command line,
# an abstract method, the sequence protocol's end (only in __getitem__ & co.) and an
# internal invariant (assert's own exception).
ALLOWED = {"SystemExit", "NotImplementedError", "AssertionError"}
SEQUENCE_PROTOCOL = {"__getitem__", "__setitem__", "__delitem__", "_index"}
# the attribute protocol: an immutable object refuses assignment as Python's own do
ATTRIBUTE_PROTOCOL = {"__setattr__", "__delattr__"}


def _raised_name(node: ast.Raise) -> str | None:
    exc = node.exc
    target = exc.func if isinstance(exc, ast.Call) else exc
    return target.id if isinstance(target, ast.Name) else None


def _offences(path: Path, root: Path = LABKIT) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    where = path.relative_to(root.parent)
    out: list[str] = []

    def visit(node: ast.AST, function: str) -> None:
        for child in ast.iter_child_nodes(node):
            name = function
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                name = child.name
            if isinstance(child, ast.Raise) and child.exc is not None:
                raised = _raised_name(child)
                if (raised in BUILTIN_EXCEPTIONS and raised not in ALLOWED
                        and not (raised == "IndexError" and function in SEQUENCE_PROTOCOL)
                        and not (raised == "AttributeError" and function in ATTRIBUTE_PROTOCOL)):
                    out.append(f"{where}:{child.lineno}: raise {raised} (use a class of "
                               f"labkit/errors.py)")
            if isinstance(child, ast.ClassDef) and path.name != "errors.py":
                for base in child.bases:
                    base_name = base.id if isinstance(base, ast.Name) else (
                        base.attr if isinstance(base, ast.Attribute) else "")
                    if base_name in BUILTIN_EXCEPTIONS or (
                            isinstance(getattr(errors, base_name, None), type)
                            and issubclass(getattr(errors, base_name), BaseException)):
                        out.append(f"{where}:{child.lineno}: exception class {child.name} "
                                   f"defined outside labkit/errors.py")
            visit(child, name)

    visit(tree, "")
    return out


def test_no_bare_builtin_raise_and_no_error_class_outside_errors_py():
    offences = [o for path in sorted(LABKIT.rglob("*.py")) for o in _offences(path)]
    assert offences == []


@pytest.mark.parametrize("source, expected", [
    ("def f():\n    raise ValueError('x')\n", ["raise ValueError"]),
    ("def f():\n    raise RuntimeError\n", ["raise RuntimeError"]),
    ("def f():\n    raise IndexError('slices take no step')\n", ["raise IndexError"]),
    ("class Oops(ValueError):\n    pass\n", ["exception class Oops"]),
    ("from labkit.errors import StateError\nclass Oops(StateError):\n    pass\n",
     ["exception class Oops"]),
    # protocol raises pass
    ("class S:\n    def __getitem__(self, i):\n        raise IndexError(i)\n"
     "    def f(self):\n        raise NotImplementedError\n", []),
    ("from labkit.errors import StateError\ndef f():\n    raise StateError('no')\n", []),
])
def test_the_walk_finds_each_kind_of_offence(tmp_path, source, expected):
    pkg = tmp_path / "labkit"
    pkg.mkdir()
    path = pkg / "mod.py"
    path.write_text(source)
    offences = _offences(path, pkg)
    assert len(offences) == len(expected)
    assert all(want in got for want, got in zip(expected, offences, strict=True))


def test_every_labkit_error_class_lives_in_errors_py():
    seen: set[type] = set()
    todo: list[type] = [errors.LabkitError]
    while todo:
        cls = todo.pop()
        for sub in cls.__subclasses__():
            if sub not in seen:
                seen.add(sub)
                todo.append(sub)
    outside = sorted(f"{c.__module__}.{c.__qualname__}" for c in seen
                     if c.__module__.startswith("labkit") and c.__module__ != "labkit.errors")
    assert outside == []


def test_build_lab_keeps_the_engines_error_class(monkeypatch):
    from labkit import lab as lab_mod
    from labkit.config import LabConfig

    def broken(*args, **kwargs):
        raise errors.GraphError("an engine bug, not a configuration mistake")

    monkeypatch.setattr(lab_mod, "Lab", broken)
    with pytest.raises(errors.GraphError, match="engine bug") as exc:
        lab_mod.build_lab(LabConfig.parse({}))
    assert type(exc.value) is errors.GraphError
