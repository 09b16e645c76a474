"""Read checkpoint files without running code from them.

Checkpoints travel between machines and users (shared storage, S3, a colleague's run), and a pickle
can call any Python function while it is being read. Every checkpoint asr-tune reads (evaluate,
quantize, a restored trial, Lightning's own restore) therefore goes through ``torch.load`` with
``weights_only=True``: tensors, containers and primitives only, plus the few extra types in
``ALLOWED_GLOBALS``. A file that names any other Python object is refused, never executed.

Usage::

    from asr_tune.model.safe_load import load_checkpoint_file, allowed_globals
    ckpt = load_checkpoint_file("runs/train/checkpoints/best.ckpt")   # dict, or ConfigError
    with allowed_globals():
        trainer.fit(module, ckpt_path=path, weights_only=True)         # Lightning's restore
"""
from __future__ import annotations

import pickle
import re
from contextlib import contextmanager
from pathlib import Path, PosixPath, PurePosixPath
from typing import Any, Iterator

import torch

from asr_tune.errors import ConfigError

# What asr-tune, Lightning and torch optimisers/schedulers store beyond tensors, dicts, lists,
# tuples, strings and numbers (those the weights-only unpickler always accepts).
ALLOWED_GLOBALS: tuple[Any, ...] = (PosixPath, PurePosixPath)


@contextmanager
def allowed_globals() -> Iterator[None]:
    """Within this block, ``torch.load(weights_only=True)`` also accepts ``ALLOWED_GLOBALS``."""
    with torch.serialization.safe_globals(list(ALLOWED_GLOBALS)):
        yield


def refusal(path: str | Path, err: BaseException) -> ConfigError:
    """The one-line error for a checkpoint that names a Python object outside the allow-list."""
    found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(err))
    what = f"'{found.group(1)}'" if found else "a Python object"
    return ConfigError(f"{path}: refused: the checkpoint references {what}, which asr-tune never "
                       "stores (a pickle can run code when loaded); not loaded")


def load_checkpoint_file(path: str | Path, map_location: str = "cpu") -> dict[str, Any]:
    """``torch.load`` a checkpoint with ``weights_only=True``; a dict or a one-line ``ConfigError``."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: checkpoint not found")
    try:
        with allowed_globals():
            ckpt = torch.load(str(path), map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        if "Unsupported global" in str(err):
            raise refusal(path, err) from None
        raise ConfigError(f"{path}: not a readable checkpoint ({str(err).splitlines()[0][:200]})") from None
    except Exception as err:  # truncated zip, not a torch file, ...
        raise ConfigError(f"{path}: not a readable checkpoint ({str(err).splitlines()[0][:200] if str(err) else type(err).__name__})") from None
    if not isinstance(ckpt, dict):
        raise ConfigError(f"{path}: not an asr-tune checkpoint (top level is {type(ckpt).__name__}, not a dict)")
    return ckpt
