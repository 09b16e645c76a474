"""Score a model on a corpus, float or int8: the choice made above training and quant.

``training`` evaluates float checkpoints and knows nothing of int8; ``quant`` builds and loads int8
artefacts and knows nothing of training. :func:`evaluate` looks at what the path holds (an accepted
int8 artefact folder or a float Lightning checkpoint), loads it with the layer that owns it, and
scores both the same way (:func:`asr_tune.training.run.evaluate_module`). Used by ``asr-tune
evaluate`` and by the search's test-split evaluation of the exported best checkpoint.

Usage::

    asr-tune evaluate runs/synth_tiny/checkpoints/best.ckpt --data data/synth/test.jsonl
    asr-tune evaluate INT8_ARTEFACT_DIR --data data/synth/test.jsonl --out wer.json

    from asr_tune.scoring import evaluate
    print(evaluate("runs/synth_tiny/checkpoints/best.ckpt", "data/synth/test.jsonl").wer)
"""
from __future__ import annotations

from pathlib import Path

from asr_tune.data.datamodule import DECODE_BATCH_SECONDS
from asr_tune.model.decoding import WERStats


def evaluate(checkpoint: str | Path, data: str | Path, out_json: str | Path | None = None,
             batch_seconds: float = DECODE_BATCH_SECONDS, skip_bad_utterances: bool = False) -> WERStats:
    """WER of a float checkpoint or an accepted int8 artefact on a manifest or LibriSpeech folder."""
    from asr_tune.model.lightning_module import load_asr_checkpoint
    from asr_tune.quant.artifact import is_quantized_artifact, load_quantized
    from asr_tune.training.run import evaluate_module

    module = load_quantized(checkpoint) if is_quantized_artifact(checkpoint) else load_asr_checkpoint(checkpoint)
    return evaluate_module(module, checkpoint, data, out_json, batch_seconds, skip_bad_utterances)
