"""The lab's two editions, and ``labkit reset NOTEBOOK``.

Every notebook has one source, a MyST-markdown file ``notebooks/src/NAME.md``
(jupytext format) that a trainer edits.  Two editions are built from it
(``tools/build_notebooks.py``):

* the **trainee edition**, ``notebooks/NAME.ipynb``: executed without
  ``LABKIT_SOLUTIONS`` — exercises unanswered — and stored with its outputs,
  as a trainee first sees it (``make notebooks``);
* the **solved edition**, ``solutions/NAME.ipynb`` (not kept in git): executed
  with ``LABKIT_SOLUTIONS=1``, every exercise answered by the engine
  (``make solutions``, which also writes ``docs/answer-key.md``).

:func:`reset` gives a trainee a pristine copy of a notebook back, keeping
theirs in ``backups/`` beside it.  The pristine copy is the stored trainee
edition as the repository holds it (``git show HEAD:...`` when the
notebooks are a git checkout: a clone, Binder, an nbgitpuller pull), else it
is rebuilt, unexecuted, from ``src/NAME.md`` beside the notebook (a
downloaded archive).  Needs ``jupytext`` only for that second way.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ConfigError, EditionError

KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}
SOURCE_DIR = "src"
BACKUP_DIR = "backups"


def notebook_from_source(source: str | Path) -> Any:
    """The unexecuted notebook built from a jupytext source (``src/NAME.md``).

    Cell ids are ``NN-ii`` (notebook number, cell index), so that a rebuild
    changes nothing but what changed; the kernelspec is ``python3``; the
    jupytext pairing metadata is dropped (the ``.ipynb`` is built, not synced).
    """
    import jupytext
    import nbformat

    path = Path(source)
    nb = jupytext.read(path)
    nb.metadata.pop("jupytext", None)
    nb.metadata["kernelspec"] = dict(KERNELSPEC)
    nb.metadata["language_info"] = {"name": "python"}
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"{path.stem[:2]}-{i:02d}"
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
        cell.source = cell.source.strip("\n")
    nbformat.validate(nb)
    return nb


def find_notebook(notebook: str | Path, where: Path | None = None) -> Path:
    """The trainee's notebook that ``notebook`` names: a path, a file name, a stem or
    its number ("04"), looked up in ``where`` (default: the current directory) and its
    ``notebooks/`` folder."""
    if not isinstance(notebook, (str, Path)) or not str(notebook).strip():
        raise ConfigError(f"name a notebook, e.g. '04' or '04-conflicting-reads.ipynb'; "
                          f"got {notebook!r}")
    given = Path(notebook)
    if given.suffix == ".ipynb" and (given.is_absolute() or given.parent != Path()):
        return given
    base = where or Path.cwd()
    wanted = given.name.removesuffix(".ipynb")
    folders = [base, base / "notebooks"]
    known: list[str] = []
    for folder in folders:
        stems = _known_stems(folder)
        known.extend(stems)
        matches = [s for s in stems if s == wanted or re.match(re.escape(wanted) + r"\b", s)]
        if len(matches) == 1:
            return folder / f"{matches[0]}.ipynb"
        if len(matches) > 1:
            raise ConfigError(f"{notebook!r} names more than one notebook: "
                              f"{', '.join(matches)}")
    raise ConfigError(f"no notebook {notebook!r} in {base} or {base / 'notebooks'}; known: "
                      f"{', '.join(sorted(set(known))) or 'none'}")


def _known_stems(folder: Path) -> list[str]:
    stems = {p.stem for p in folder.glob("*.ipynb")}
    stems |= {p.stem for p in (folder / SOURCE_DIR).glob("*.md")}
    return sorted(stems)


def pristine(path: Path) -> tuple[bytes, str]:
    """The pristine trainee copy of the notebook at ``path`` and where it came from."""
    stored = _from_git(path)
    if stored is not None:
        return stored, "git HEAD"
    source = path.parent / SOURCE_DIR / f"{path.stem}.md"
    if source.is_file():
        import nbformat

        text = nbformat.writes(notebook_from_source(source)) + "\n"
        return text.encode(), str(Path(SOURCE_DIR) / source.name)
    raise EditionError(f"no pristine copy of {path.name}: it is not tracked by git and "
                       f"there is no {SOURCE_DIR}/{path.stem}.md beside it")


def _from_git(path: Path) -> bytes | None:
    git = shutil.which("git")
    if git is None or not path.parent.is_dir():
        return None
    try:
        done = subprocess.run([git, "-C", str(path.parent), "show", f"HEAD:./{path.name}"],
                              capture_output=True, timeout=30, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 and done.stdout else None


def backup_path(path: Path) -> Path:
    """Where the next backup of ``path`` goes: ``backups/NAME.N.ipynb``, N counting up."""
    folder = path.parent / BACKUP_DIR
    taken = [int(m[1]) for p in folder.glob(f"{path.stem}.*.ipynb")
             if (m := re.fullmatch(re.escape(path.stem) + r"\.(\d+)", p.stem))]
    return folder / f"{path.stem}.{max(taken, default=0) + 1}.ipynb"


@dataclass(frozen=True)
class ResetResult:
    """What :func:`reset` did: the notebook it restored, where the trainee's copy went
    (``None`` when there was nothing to keep), and where the pristine copy came from."""

    notebook: Path
    backup: Path | None
    origin: str

    def text(self) -> str:
        """What ``labkit reset`` prints."""
        done = f"reset {self.notebook} to the shipped version (from {self.origin})"
        if self.backup is None:
            return done + "; there was nothing of yours to keep, so no backup"
        return done + f"; your copy is kept as {self.backup}"


def open_in_jupyter(path: Path) -> list[str]:
    """The running Jupyter servers (this user's, on this machine) that have ``path`` open
    with a kernel: their URLs.  Asks each server's own REST API (``/api/sessions``, with
    the token from its runtime file); a server that does not answer within 2 s is
    skipped.  Empty when jupyter_server is not installed."""
    try:
        from jupyter_server.serverapp import list_running_servers
    except ImportError:
        return []
    import json
    import urllib.request

    target = path.resolve()
    found = []
    for server in list_running_servers():
        root = Path(server.get("root_dir") or server.get("notebook_dir") or "/")
        url = server.get("url", "")
        token = server.get("token", "")
        request = urllib.request.Request(f"{url}api/sessions",
                                         headers={"Authorization": f"token {token}"})
        try:
            with urllib.request.urlopen(request, timeout=2) as answer:  # a local server
                sessions = json.load(answer)
        except (OSError, ValueError):
            continue
        for session in sessions:
            opened = session.get("path") or session.get("notebook", {}).get("path", "")
            if opened and (root / opened).resolve() == target:
                found.append(url)
    return found


def reset(notebook: str, force: bool = False) -> ResetResult:
    """Restore a pristine trainee copy of ``notebook``; the trainee's is kept as a backup.

    ``notebook`` is a path or a name (``"04"``, ``"04-conflicting-reads"``, with or
    without ``.ipynb``; looked up in the current directory and its ``notebooks/``).
    The trainee's copy goes to ``backups/NAME.N.ipynb`` beside the notebook (earlier
    backups are never overwritten); an untouched notebook (the same bytes as the
    pristine copy) gets no backup.

    A notebook **open in JupyterLab** is refused unless ``force``: JupyterLab keeps
    its own copy, and when the file changes under it, its "File Changed" dialog's
    focused default is *Overwrite* — one Enter or the next save puts the old notebook
    back.  The error says what to do (close the tab first).  Raises
    :class:`~labkit.errors.ConfigError` for a name that matches no notebook and
    :class:`EditionError` when no pristine copy can be found or the notebook is
    open; the trainee's file is untouched then.
    """
    path = find_notebook(notebook)
    content, origin = pristine(path)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        return ResetResult(path, None, origin)
    if path.read_bytes() == content:
        return ResetResult(path, None, origin)
    servers = [] if force else open_in_jupyter(path)
    if servers:
        raise EditionError(
            f"{path.name} is open in JupyterLab ({servers[0]}): close its tab first (File > "
            f"Close Tab, and shut its kernel down), then run `labkit reset {path.stem}` "
            f"again. Resetting it while it is open does not hold: JupyterLab's 'File "
            f"Changed' dialog offers Overwrite, which puts your old notebook back. "
            f"(--force resets anyway; then answer that dialog with Revert.)")
    backup = backup_path(path)
    backup.parent.mkdir(exist_ok=True)
    shutil.copy2(path, backup)
    tmp = path.with_name(f".{path.name}.reset")
    tmp.write_bytes(content)
    tmp.replace(path)  # atomic: the notebook is never half-written
    return ResetResult(path, backup, origin)


__all__ = ["BACKUP_DIR", "KERNELSPEC", "SOURCE_DIR", "EditionError", "ResetResult",
           "backup_path", "find_notebook", "notebook_from_source", "open_in_jupyter",
           "pristine", "reset"]
