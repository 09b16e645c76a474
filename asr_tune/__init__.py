"""asr-tune: hyperparameter and architecture search for Conformer-CTC ASR on Ray Tune.

The public Python API is imported lazily so that ``import asr_tune`` starts nothing and pulls in
neither Ray nor Lightning until a function that needs them is called.
"""
from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "load_config": "asr_tune.config",
    "ExperimentConfig": "asr_tune.config",
    "train": "asr_tune.training.run",
    "evaluate": "asr_tune.scoring",
    "search": "asr_tune.tuning.runner",
    "resume": "asr_tune.tuning.runner",
    "quantize": "asr_tune.quant.pipeline",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'asr_tune' has no attribute {name!r}")


__all__ = sorted(_LAZY)
