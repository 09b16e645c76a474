"""Calibration and evaluation data for the int8 stage: validated rows -> cached log-mel batches.

Features are computed once, in torch float, with the checkpoint's own ``LogMel``; the float model,
the fp32 ONNX graph and every int8 candidate then see exactly the same inputs.
"""
from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch

from asr_tune.data.audio import load_audio
from asr_tune.data.datamodule import DECODE_BATCH_SECONDS, BatchPlan, DurationBatchSampler, validated_rows
from asr_tune.data.manifest import Utterance
from asr_tune.errors import QuantizationError
from asr_tune.quant.runtime import FeatBatch

MIN_CALIB_UTTERANCES = 4


def _is_empty_manifest(path: Path) -> bool:
    return path.is_file() and not any(line.strip() for line in path.read_text().splitlines())


def load_rows(source: str | Path, module, purpose: str) -> list[Utterance]:
    """Rows of a manifest/LibriSpeech folder, headers checked (``DataError`` names a bad file)."""
    if _is_empty_manifest(Path(source)):
        raise QuantizationError(f"{source}: the {purpose} set is empty")
    # any source rate: each file is resampled to the model's data.sample_rate
    dcfg = module.cfg.data.model_copy(update={"max_duration": 1e9, "skip_bad_utterances": False,
                                              "source_sample_rate": 0})
    return validated_rows(str(source), dcfg, purpose)


def calibration_rows(source: str | Path, module, limit: int, seed: int = 0) -> list[Utterance]:
    rows = load_rows(source, module, "calibration")
    if len(rows) < MIN_CALIB_UTTERANCES:
        raise QuantizationError(f"{source}: calibration set has {len(rows)} utterance(s); at least "
                                f"{MIN_CALIB_UTTERANCES} are needed to calibrate activation ranges")
    if len(rows) > limit:
        rows = random.Random(seed).sample(rows, max(limit, MIN_CALIB_UTTERANCES))
    return rows


@torch.inference_mode()
def feature_batches(module, rows: list[Utterance], batch_seconds: float = DECODE_BATCH_SECONDS,
                    per_utterance: bool = False) -> list[FeatBatch]:
    """Padded log-mel batches (bucketed by duration), or one utterance per batch."""
    sr = module.cfg.data.sample_rate
    wavs = [load_audio(r.audio_filepath, sr) for r in rows]  # DataError names a bad file
    if per_utterance:
        groups = [[i] for i in range(len(rows))]
    else:
        plan = BatchPlan(batch_seconds, 0, True, False, 0)
        groups = list(DurationBatchSampler([len(w) / sr for w in wavs], plan))
    out = []
    for idx in groups:
        lens = torch.tensor([len(wavs[i]) for i in idx])
        wav = torch.zeros(len(idx), int(lens.max()))
        for j, i in enumerate(idx):
            wav[j, : len(wavs[i])] = wavs[i]
        feats, flen = module.features(wav, lens)
        out.append(FeatBatch(feats.float().numpy(), flen.long().numpy(), [rows[i].text for i in idx],
                             float(lens.sum()) / sr))
    return out


def latency_batch(module, rows: list[Utterance], max_utts: int = 8) -> FeatBatch:
    """One fixed padded batch (the first ``max_utts`` rows) used for every latency measurement."""
    return feature_batches(module, rows[:max_utts], batch_seconds=1e9)[0]


class CalibReader:
    """``onnxruntime.quantization.CalibrationDataReader`` over cached per-utterance features."""

    def __init__(self, batches: list[FeatBatch]) -> None:
        self.batches = batches
        self._it = iter(batches)

    def get_next(self) -> dict[str, np.ndarray] | None:
        b = next(self._it, None)
        return None if b is None else {"feats": b.feats, "lengths": b.lengths}

    def rewind(self) -> None:
        self._it = iter(self.batches)

    def __iter__(self):
        return self

    def __next__(self):
        item = self.get_next()
        if item is None:
            raise StopIteration
        return item

    def set_range(self, start_index: int, end_index: int) -> None:
        self._it = iter(self.batches[start_index:end_index])
