"""Build an output folder beside its destination and swap it in only when the build succeeded.

Every command that writes a folder (``quantize --out``, ``corpus synth|digits --out``, ``train``'s
``trainer.output_dir``) builds into a fresh hidden sibling, ``.<name>.staging-<random>``, and, on
success, exchanges it with the destination in one atomic ``renameat2(RENAME_EXCHANGE)`` (two
renames where the kernel or filesystem lacks it). A failing or interrupted build (an exception,
Ctrl-C, ``SystemExit``) only removes its staging folder: the previous output stays byte-identical.

``owned`` names the entries the build produces; anything else already in the destination (a user's
notes, another tool's files) is moved into the new folder before the old one is deleted.

Usage::

    from asr_tune.staging import staged_dir
    with staged_dir("runs/train/int8", owned=("model.int8.onnx", "meta.json")) as tmp:
        write_everything_into(tmp)
    # here runs/train/int8 is the new folder; had the block raised, the old one would be untouched
"""
from __future__ import annotations

import ctypes
import ctypes.util
import functools
import inspect
import logging
import os
import shutil
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Collection, Iterator, TypeVar

from asr_tune.errors import AsrTuneError

log = logging.getLogger(__name__)
_AT_FDCWD = -100
_RENAME_EXCHANGE = 2
STAGING_MARK = ".staging-"
F = TypeVar("F", bound=Callable[..., Any])


def check_output_dir(dest: str | Path, error: type[AsrTuneError] = AsrTuneError) -> Path:
    """``dest`` must be a folder or not exist, and its parent must be writable (checked up front)."""
    dest = Path(dest)
    if dest.exists() and not dest.is_dir():
        raise error(f"{dest}: output path exists and is not a folder")
    parent = dest.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise error(f"{dest}: cannot create the output folder ({parent} is not a writable folder)")
    if dest.is_dir() and not os.access(dest, os.W_OK | os.X_OK):
        raise error(f"{dest}: output folder is not writable")
    return dest


def check_output_file(path: str | Path, error: type[AsrTuneError] = AsrTuneError) -> Path:
    """``path`` can be written (not a folder; its folder exists and is writable, or can be made)."""
    path = Path(path)
    if path.is_dir():
        raise error(f"{path}: is a folder, expected a file path to write")
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise error(f"{path}: cannot write here ({parent} is not a writable folder)")
    if path.exists() and not os.access(path, os.W_OK):
        raise error(f"{path}: file is not writable")
    return path


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write ``text`` to a temporary sibling, then rename it over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two existing paths (Linux renameat2); False where unsupported."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    return fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0


def swap_in(new: Path, dest: Path, owned: Collection[str] | None = None) -> None:
    """Replace ``dest`` with the finished folder ``new`` (see the module docstring)."""
    if not dest.exists():
        os.rename(new, dest)
        return
    if not _exchange(new, dest):  # fallback: the old folder is parked, never deleted before the swap
        parked = Path(tempfile.mkdtemp(prefix=f".{dest.name}.old-", dir=dest.parent))
        os.rename(dest, parked / dest.name)
        os.rename(new, dest)
        os.rename(parked / dest.name, new)
        parked.rmdir()
    old = new  # after the exchange the previous output lives at the staging path
    if owned is not None:
        for entry in old.iterdir():
            if entry.name not in owned and not (dest / entry.name).exists():
                os.rename(entry, dest / entry.name)
    shutil.rmtree(old, ignore_errors=True)


@contextmanager
def staged_dir(dest: str | Path, owned: Collection[str] | None = None,
               error: type[AsrTuneError] = AsrTuneError,
               keep_partial: Callable[[Path], bool] | None = None) -> Iterator[Path]:
    """Yield an empty sibling folder of ``dest``; swap it in on success, remove it on any failure —
    unless ``keep_partial(staging)`` says it holds finished work (a training run's checkpoints):
    then it is renamed to ``<dest>.incomplete-<time>`` beside ``dest`` and the path logged."""
    dest = check_output_dir(dest, error)
    created = [p for p in (dest.parent, *dest.parent.parents) if not p.exists()]
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}{STAGING_MARK}", dir=dest.parent))
    try:
        yield tmp
    except BaseException:
        if keep_partial is not None and keep_partial(tmp):
            kept = dest.with_name(f"{dest.name}.incomplete-{time.strftime('%Y%m%d-%H%M%S')}")
            os.rename(tmp, kept)
            log.warning("the run did not finish; its checkpoints so far are kept in %s", kept)
            raise
        shutil.rmtree(tmp, ignore_errors=True)
        for p in created:  # innermost first: folders this build made, if still empty
            try:
                p.rmdir()
            except OSError:
                break
        raise
    swap_in(tmp, dest, owned)  # a failure here leaves both folders on disk, never deletes one


def restage(result: Any, stage: Path, dest: Path) -> Any:
    """Map paths a build returned inside ``stage`` (a path, or a dict of them) to where they live now."""
    if isinstance(result, dict):
        return {k: restage(v, stage, dest) for k, v in result.items()}
    if isinstance(result, (str, Path)):
        try:
            rel = Path(result).resolve().relative_to(stage.resolve())
        except ValueError:
            return result
        return type(result)(dest / rel) if isinstance(result, Path) else str(dest / rel)
    return result


def builds_folder(owned: Collection[str] | None = None, error: type[AsrTuneError] = AsrTuneError,
                  arg: str = "out_dir") -> Callable[[F], F]:
    """Decorate a builder so it writes into a staging sibling of its ``arg`` folder, swapped in on
    success (see the module docstring). The returned paths (a path or a dict) are mapped to it.
    """
    def deco(fn: F) -> F:
        sig = inspect.signature(fn)

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            bound = sig.bind(*args, **kwargs)
            dest = Path(bound.arguments[arg])
            with staged_dir(dest, owned, error) as stage:
                bound.arguments[arg] = stage
                result = fn(*bound.args, **bound.kwargs)
            return restage(result, stage, dest)
        return wrapper  # type: ignore[return-value]
    return deco
