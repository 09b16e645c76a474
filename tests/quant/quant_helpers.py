"""Helpers shared by the int8 tests (imported as ``quant_helpers``: tests/quant is on sys.path).

The pipeline tests quantize the session's tiny *trained* model (``tiny_trained``, tests/conftest.py),
so the WER gate compares real, non-trivial WERs. ``build_module`` still makes a random-weight
checkpoint (BatchNorm statistics randomised, blank bias raised so the float WER is exactly 100 %)
for the bad-input tests, which need a valid checkpoint but no meaningful WER.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

FSDD = Path(os.environ.get("ASR_TUNE_FSDD", Path(__file__).resolve().parents[3] / "shared/data/fsdd"))
BLANK_BIAS = 8.0


def fsdd_rows() -> list[dict]:
    manifest = FSDD / "manifest.jsonl"
    if not manifest.is_file():
        pytest.skip(f"FSDD audio not found at {FSDD} (set ASR_TUNE_FSDD to its folder)")
    rows = [json.loads(line) for line in manifest.read_text().splitlines() if line.strip()]
    for r in rows:
        r["audio_filepath"] = str((FSDD / r["audio_filepath"]).resolve())
    return rows


def write_manifest(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def build_module(seed: int = 0, **model):
    from asr_tune.config import load_config
    from asr_tune.model.lightning_module import ASRModule
    from asr_tune.data.tokenizer import train_tokenizer

    over = {"data.sample_rate": 8000, "features.n_mels": 40, "model.d_model": 64, "model.num_layers": 2,
            "model.num_heads": 2, "model.ffn_mult": 2, "model.conv_kernel": 7, "model.dropout": 0.0}
    over.update({f"model.{k}": v for k, v in model.items()})
    cfg = load_config(None, over)
    torch.manual_seed(seed)
    tok = train_tokenizer(["zero one two three four five six seven eight nine"], cfg.tokenizer)
    module = ASRModule(cfg, tok).eval()
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, torch.nn.BatchNorm1d):
                m.running_mean.normal_(0, 0.3)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.normal_(1.0, 0.2)
                m.bias.normal_(0, 0.2)
        module.model.ctc_head.bias[0] += BLANK_BIAS
    return module


def save_checkpoint(module, path: Path, version: int | None = None) -> Path:
    from asr_tune.model.lightning_module import CKPT_KEY, CKPT_VERSION

    torch.save({"state_dict": module.state_dict(),
                CKPT_KEY: {"version": CKPT_VERSION if version is None else version,
                           "config": module.cfg.to_dict(), "tokenizer": module.tok.state()}}, path)
    return path


def run_quantize(ckpt: Path, corpus: dict, out: Path, **kw):
    from asr_tune.config import QuantConfig
    from asr_tune.quant.pipeline import quantize

    cfg_fields = {"mode": "dynamic", "latency_repeats": 3, "calib_utterances": 8}
    cfg_fields.update({k: kw.pop(k) for k in list(kw) if k in QuantConfig.model_fields})
    return quantize(ckpt, calib=corpus["calib"], data=corpus["eval"], cfg=QuantConfig(**cfg_fields),
                    out_dir=out, **kw)
