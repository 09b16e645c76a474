"""Shared fixture of the tuning tests: a tiny synthetic corpus."""
from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """60 synthetic utterances (train/dev/test manifests), built once per test module."""
    from asr_tune.data.synth import build_synth_corpus

    out = tmp_path_factory.mktemp("corpus")
    build_synth_corpus(out, n_utterances=60, seed=0, progress=False)
    return out
