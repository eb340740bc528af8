"""May this command write this folder? One rule for every command that writes a folder.

Train runs, exports, eval outputs, mixtures and the prepare cache all go through :func:`claim_output_dir`:

* a missing or empty folder is created and marked ours (a small ``.instructkit`` JSON file naming the kind);
* a folder marked with the same kind is ours: the command may write into it again (eval resumes from
  its cache, an export is replaced);
* anything else that is not empty - the user's own files, a run folder given to ``export`` - is refused
  with a one-line error unless ``overwrite=True`` (``--overwrite``);
* a folder that cannot be written (read-only, ``/proc/...``, a file in the way) is an error *before*
  any model is loaded, naming the path and the cause.

:func:`write_error` turns an ``OSError`` raised while writing (disk full, permission lost) into that same
kind of one-line error.
"""

from __future__ import annotations

import errno
import json
import os
import tempfile
from pathlib import Path
from typing import Callable, Iterable

from instructkit.errors import InstructkitError

MARKER = ".instructkit"


def marker_kind(folder: Path) -> str | None:
    """The kind recorded in ``folder``'s marker, or None when the folder is not marked."""
    try:
        return str(json.loads((Path(folder) / MARKER).read_text()).get("kind"))
    except (OSError, ValueError, AttributeError):
        return None


def _cause(err: OSError) -> str:
    if err.errno == errno.ENOSPC:
        return "no space left on device"
    if err.errno == errno.EDQUOT:
        return "disk quota exceeded"
    return err.strerror or str(err)


def write_errors() -> tuple[type[BaseException], ...]:
    """Exception types a failed write raises: OSError, and safetensors' own error (it reports a full disk
    as ``SafetensorError: ... No space left on device (os error 28)``, not as an OSError)."""
    try:
        from safetensors import SafetensorError
        return (OSError, SafetensorError)
    except ImportError:  # pragma: no cover - safetensors is a dependency
        return (OSError,)


def write_error(path: str | Path, err: BaseException, what: str = "cannot write") -> InstructkitError:
    """One line naming the path and the cause of a failed write (the CLI prints it, no traceback)."""
    cause = _cause(err) if isinstance(err, OSError) else str(err).strip().splitlines()[-1]
    return InstructkitError(f"{path}: {what}: {cause}")


def check_writable(folder: str | Path) -> None:
    """Raise a located error unless a file can be created in ``folder`` (or in the nearest existing parent
    that ``folder`` would be created in)."""
    folder = Path(folder).expanduser()
    probe = folder
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise InstructkitError(f"{folder}: cannot write here: {probe} is a file, not a folder")
    try:
        fd, name = tempfile.mkstemp(dir=probe, prefix=".instructkit-probe-")
        os.close(fd)
        os.unlink(name)
    except OSError as e:
        raise write_error(folder, e, "output folder is not writable") from None


def marker_data(folder: str | Path) -> dict:
    """The whole marker of ``folder`` (``{}`` when unmarked or unreadable)."""
    try:
        data = json.loads((Path(folder) / MARKER).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def write_marker(folder: str | Path, kind: str, **extra: object) -> None:
    (Path(folder) / MARKER).write_text(json.dumps({"kind": kind, **extra}) + "\n")


def readable_modes(folder: str | Path) -> None:
    """Give ``folder`` and everything under it the modes ``open()`` / ``mkdir()`` would (0666 / 0777 less
    the umask).

    transformers' ``save_pretrained`` writes ``model.safetensors`` through a private temp file (mode 0600)
    and ``tempfile.mkdtemp`` folders are 0700, so a model another user or a serving account must read
    would be unreadable to them."""
    mask = os.umask(0)
    os.umask(mask)
    folder = Path(folder)
    for p in [folder, *folder.rglob("*")]:
        if not p.is_symlink():
            p.chmod((0o777 if p.is_dir() else 0o666) & ~mask)


def _entries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name != MARKER)


def claim_output_dir(folder: str | Path, kind: str, *, overwrite: bool = False, flag: str = "--overwrite",
                     also_ours: Callable[[Iterable[str]], bool] | None = None) -> Path:
    """Check that ``folder`` may be written by a ``kind`` command, create it and mark it; return it.

    ``also_ours(names)`` may accept an unmarked folder by its contents (e.g. a prepare cache written
    before markers existed). With ``overwrite`` a foreign folder is accepted (the caller replaces or
    adds to it) and marked.
    """
    folder = Path(folder).expanduser()
    check_writable(folder)
    if folder.is_dir():
        names = _entries(folder)
        mine = marker_kind(folder)
        foreign = names and mine != kind and not (mine is None and also_ours is not None and also_ours(names))
        if foreign and not overwrite:
            what = f"holds an instructkit {mine} output" if mine else "is not empty and was not written by instructkit"
            shown = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
            raise InstructkitError(f"{folder}: {what} ({shown}); refusing to write the {kind} output there. "
                                   f"Choose another folder or pass {flag} to write into it anyway")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / MARKER).write_text(json.dumps({"kind": kind}) + "\n")
    except OSError as e:
        raise write_error(folder, e) from None
    return folder
