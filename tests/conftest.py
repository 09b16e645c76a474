"""Session fixtures shared across test packages.

``tiny_trained``: a small Conformer-CTC trained once per test session (cached in the session's
pytest tmp dir) on FSDD digits from three speakers, a few hundred optimizer steps on one thread, so
tests see a real, non-trivial WER (neither 0 % nor 100 %): the int8 gate, the best-checkpoint
export. ``dev``/``test`` are unseen utterances of the same speakers.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

TINY_SR = 8000


def tiny_word_corpus(tmp: Path) -> dict[str, str]:
    """12 train + 4 dev noise clips with one-to-three-word transcripts (seconds to train on)."""
    import numpy as np
    import soundfile as sf

    rng = np.random.default_rng(0)
    words = ["one", "two", "three"]
    out = {}
    for split, n in (("train", 12), ("dev", 4)):
        rows = []
        for i in range(n):
            dur = 0.5 + 0.1 * (i % 4)
            path = tmp / f"{split}{i}.flac"
            sf.write(str(path), (0.1 * rng.standard_normal(int(dur * TINY_SR))).astype(np.float32), TINY_SR,
                     subtype="PCM_16")
            rows.append({"audio_filepath": str(path), "duration": dur, "text": " ".join(words[: 1 + i % 3]),
                         "speaker": "s", "id": f"{split}{i}"})
        (tmp / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        out[split] = str(tmp / f"{split}.jsonl")
    return out


FSDD = Path(os.environ.get("ASR_TUNE_FSDD", Path(__file__).resolve().parents[2] / "shared/data/fsdd"))
TINY_STEPS = 200


def _fsdd_split(out: Path) -> dict[str, Path]:
    manifest = FSDD / "manifest.jsonl"
    if not manifest.is_file():
        pytest.skip(f"FSDD audio not found at {FSDD} (set ASR_TUNE_FSDD to its folder)")
    rows = [json.loads(x) for x in manifest.read_text().splitlines() if x.strip()]
    rows = [r for r in rows if r["speaker"] in ("george", "jackson", "theo")]
    for r in rows:
        r["audio_filepath"] = str((FSDD / r["audio_filepath"]).resolve())
    splits = {"train": [r for i, r in enumerate(rows) if i % 10 >= 2],
              "dev": [r for i, r in enumerate(rows) if i % 10 == 0][:48],
              "test": [r for i, r in enumerate(rows) if i % 10 == 1][:48]}
    paths = {}
    for name, part in splits.items():
        paths[name] = out / f"{name}.jsonl"
        paths[name].write_text("".join(json.dumps(r) + "\n" for r in part))
    return paths


@pytest.fixture(scope="session")
def tiny_trained(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """{"ckpt", "train", "dev", "test", "cfg"}: a trained 8 kHz digits model and its manifests."""
    from asr_tune.config import load_config
    from asr_tune.training.run import train

    out = tmp_path_factory.mktemp("tiny_trained")
    paths = _fsdd_split(out)
    cfg = load_config(None, {
        "data.train": str(paths["train"]), "data.dev": str(paths["dev"]), "data.test": str(paths["test"]),
        "data.sample_rate": 8000, "data.batch_seconds": 8.0, "features.n_mels": 40,
        "model.d_model": 64, "model.num_layers": 2, "model.num_heads": 2, "model.ffn_mult": 2,
        "model.conv_kernel": 7, "model.dropout": 0.0, "optim.lr": 4e-3, "optim.warmup_steps": 30,
        "trainer.max_steps": TINY_STEPS, "trainer.max_epochs": 1000, "trainer.early_stopping_patience": 0,
        "trainer.threads": 1, "trainer.progress_bar": False, "trainer.output_dir": str(out / "run")})
    result = train(cfg, evaluate_test=False)
    return {"ckpt": Path(result.best_checkpoint), "val_wer": result.best_val_wer, "cfg": cfg, **paths}
