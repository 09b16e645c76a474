"""Fixtures for the int8 stage: real FSDD audio, the session's tiny trained Conformer-CTC
(``tiny_trained`` in tests/conftest.py: a real, non-trivial WER, so a broken int8 model shows up as a
worse WER), and the quantize runs several tests share.
"""
from __future__ import annotations

from pathlib import Path

import pytest
from quant_helpers import run_quantize, write_manifest


@pytest.fixture(scope="session")
def corpus(tiny_trained, tmp_path_factory) -> dict:
    """Manifests of the session's tiny trained model's speakers: calib (8 train utterances), eval
    (24 test utterances: the gate's split) and dev (16 dev utterances: a search's selection split)."""
    import json

    def rows(name: str) -> list[dict]:
        return [json.loads(x) for x in Path(tiny_trained[name]).read_text().splitlines() if x.strip()]

    calib, test, dev = rows("train")[::40][:8], rows("test")[:24], rows("dev")[:16]
    d = tmp_path_factory.mktemp("corpus")
    return {"calib": write_manifest(d / "calib.jsonl", calib), "eval": write_manifest(d / "eval.jsonl", test),
            "dev": write_manifest(d / "dev.jsonl", dev), "rows": calib + test, "dir": d}


@pytest.fixture(scope="session")
def ckpt(tiny_trained) -> Path:
    """A real trained model (non-trivial WER), so the WER gate has something to protect."""
    return tiny_trained["ckpt"]


@pytest.fixture(scope="session")
def dyn_run(ckpt, corpus, tmp_path_factory):
    """Dynamic int8 with the full sensitivity scan."""
    out = tmp_path_factory.mktemp("dyn") / "int8"
    return run_quantize(ckpt, corpus, out, sensitivity=True), out


@pytest.fixture(scope="session")
def static_run(ckpt, corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("static") / "int8"
    # static int8 of a trained model moves a word or so of the 24 (4.2 WER points each)
    return run_quantize(ckpt, corpus, out, mode="static", sensitivity=False, max_wer_delta=9.0), out
