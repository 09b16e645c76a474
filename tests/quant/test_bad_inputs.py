"""Bad checkpoints, calibration sets and audio give one-line errors; the checkpoint is never touched."""
from __future__ import annotations

import json

import pytest
import torch

from asr_tune.errors import DataError, QuantizationError
from asr_tune.quant import artifact as art
from quant_helpers import build_module, run_quantize, save_checkpoint, write_manifest


def _rows(path):
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_other_checkpoint_version(corpus, tmp_path):
    bad = save_checkpoint(build_module(), tmp_path / "v99.ckpt", version=99)
    before = art.sha256_file(bad)
    with pytest.raises(QuantizationError, match="version 99"):
        run_quantize(bad, corpus, tmp_path / "o")
    assert art.sha256_file(bad) == before


def test_other_architecture(corpus, tmp_path):
    module = build_module()
    ck = save_checkpoint(module, tmp_path / "arch.ckpt")
    obj = torch.load(ck, weights_only=False)
    obj["asr_tune"]["config"]["model"]["num_layers"] = 3  # weights of a 2-layer model
    torch.save(obj, ck)
    with pytest.raises(QuantizationError, match="do not match"):
        run_quantize(ck, corpus, tmp_path / "o")
    torch.save({"state_dict": torch.nn.Linear(3, 3).state_dict()}, tmp_path / "plain.ckpt")
    with pytest.raises(QuantizationError, match="not an asr-tune checkpoint"):
        run_quantize(tmp_path / "plain.ckpt", corpus, tmp_path / "o")
    with pytest.raises(QuantizationError, match="not found"):
        run_quantize(tmp_path / "missing.ckpt", corpus, tmp_path / "o")


def test_too_small_and_empty_calibration(ckpt, corpus, tmp_path):
    before = art.sha256_file(ckpt)
    small = write_manifest(tmp_path / "small.jsonl", _rows(corpus["calib"])[:3])
    with pytest.raises(QuantizationError, match="at least 4"):
        run_quantize(ckpt, {**corpus, "calib": small}, tmp_path / "o")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(QuantizationError, match="empty"):
        run_quantize(ckpt, {**corpus, "calib": empty}, tmp_path / "o")
    assert art.sha256_file(ckpt) == before
    assert not (tmp_path / "o").exists()  # nothing written before the inputs are validated


def test_bad_audio_in_manifest(ckpt, corpus, tmp_path):
    junk = tmp_path / "junk.flac"
    junk.write_bytes(b"this is not audio" * 10)
    rows = _rows(corpus["eval"])
    rows[2] = {**rows[2], "audio_filepath": str(junk)}
    bad = write_manifest(tmp_path / "bad.jsonl", rows)
    with pytest.raises(DataError, match="junk.flac"):
        run_quantize(ckpt, {**corpus, "eval": bad}, tmp_path / "o")
    with pytest.raises(DataError, match="junk.flac"):
        run_quantize(ckpt, {**corpus, "calib": bad}, tmp_path / "o")


def test_unknown_keep_float_group(ckpt, corpus, tmp_path):
    with pytest.raises(QuantizationError, match="matches no group"):
        run_quantize(ckpt, corpus, tmp_path / "o", keep_float=["layers.9.attn"])


def test_load_quantized_rejects_non_artifacts(tmp_path, ckpt):
    with pytest.raises(QuantizationError, match="not an asr-tune int8 artefact"):
        art.load_quantized(tmp_path)
    assert not art.is_quantized_artifact(ckpt)
