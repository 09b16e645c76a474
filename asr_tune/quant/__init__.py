"""Post-training int8 quantization (ONNX Runtime), gated on WER.

``quantize`` (pipeline), ``load_quantized`` / ``is_quantized_artifact`` (artefact) are imported
lazily: importing this package loads neither torch nor onnxruntime.
"""
from __future__ import annotations

from typing import Any

_LAZY = {
    "quantize": "asr_tune.quant.pipeline",
    "QuantReport": "asr_tune.quant.report",
    "wer_gate": "asr_tune.quant.report",
    "load_quantized": "asr_tune.quant.artifact",
    "is_quantized_artifact": "asr_tune.quant.artifact",
    "QuantizedASR": "asr_tune.quant.artifact",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'asr_tune.quant' has no attribute {name!r}")


__all__ = sorted(_LAZY)
