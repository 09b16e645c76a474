"""Fixtures for the int8 stage: real FSDD audio, a tiny Conformer-CTC checkpoint built on the fly
(see ``quant_helpers`` for why its weights are random), and the quantize runs several tests share.
"""
from __future__ import annotations

from pathlib import Path

import pytest
from quant_helpers import build_module, fsdd_rows, run_quantize, save_checkpoint, write_manifest


@pytest.fixture(scope="session")
def corpus(tmp_path_factory) -> dict:
    """calib (8 utterances) and eval (16 utterances) manifests from different FSDD speakers/files."""
    rows = fsdd_rows()
    by_speaker: dict[str, list[dict]] = {}
    for r in rows:
        by_speaker.setdefault(r["speaker"], []).append(r)
    picked = [r for spk in sorted(by_speaker) for r in by_speaker[spk][::37][:6]]
    d = tmp_path_factory.mktemp("corpus")
    return {"calib": write_manifest(d / "calib.jsonl", picked[:8]),
            "eval": write_manifest(d / "eval.jsonl", picked[8:24]),
            "rows": picked, "dir": d}


@pytest.fixture(scope="session")
def ckpt(tmp_path_factory) -> Path:
    return save_checkpoint(build_module(), tmp_path_factory.mktemp("ckpt") / "tiny.ckpt")


@pytest.fixture(scope="session")
def dyn_run(ckpt, corpus, tmp_path_factory):
    """Dynamic int8 with the full sensitivity scan."""
    out = tmp_path_factory.mktemp("dyn") / "int8"
    return run_quantize(ckpt, corpus, out, sensitivity=True), out


@pytest.fixture(scope="session")
def static_run(ckpt, corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("static") / "int8"
    return run_quantize(ckpt, corpus, out, mode="static", sensitivity=False), out
