"""Leave-one-speaker-out: fold plan, speaker-disjoint fold corpora, per-fold/mean WER, resume."""
from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import pytest

from asr_tune.config import load_config
from asr_tune.data.manifest import read_manifest
from asr_tune.errors import DataError
from asr_tune.training import loso
from asr_tune.training.loso import CorpusSizes, plan_folds, run_loso

FSDD = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "fsdd"
KNOWN = ["george", "jackson", "lucas", "nicolas", "yweweler"]
SIZES = CorpusSizes(n_train=24, n_dev=6, n_test=8, seed=0)
TINY = {  # a model that trains one epoch in seconds; its WER is not the point here
    "data.synth_if_missing": False, "data.sample_rate": 8000, "data.source_sample_rate": 8000,
    "data.batch_seconds": 30.0, "model.d_model": 32, "model.num_layers": 1, "model.num_heads": 2,
    "model.ffn_mult": 2, "model.conv_kernel": 7, "optim.warmup_steps": 5, "trainer.max_epochs": 1,
    "trainer.early_stopping_patience": 0, "trainer.threads": 1, "trainer.progress_bar": False,
}


def test_plan_folds_dev_is_the_next_speaker_and_bad_input_is_one_line():
    folds = plan_folds(KNOWN)
    assert [f.speaker for f in folds] == KNOWN
    assert [f.dev_speakers for f in folds] == [["jackson"], ["lucas"], ["nicolas"], ["yweweler"], ["george"]]
    for f in folds:
        assert sorted([f.speaker, *f.dev_speakers, *f.train_speakers]) == KNOWN
    two = plan_folds(KNOWN, ["nicolas"], dev_speakers_per_fold=2)[0]
    assert (two.dev_speakers, two.train_speakers) == (["yweweler", "george"], ["jackson", "lucas"])
    with pytest.raises(DataError, match="unknown speaker\\(s\\) alice; known speakers: george, jackson"):
        plan_folds(KNOWN, ["alice"])
    with pytest.raises(DataError, match="named twice"):
        plan_folds(KNOWN, ["lucas", "lucas"])
    with pytest.raises(DataError, match="must be 1..3"):
        plan_folds(KNOWN, dev_speakers_per_fold=4)


def _speakers(manifest: Path) -> set[str]:
    return {r.speaker for r in read_manifest(manifest)}


@pytest.mark.shared_data
@pytest.mark.skipif(not (FSDD / "manifest.jsonl").is_file(),
                    reason=f"FSDD not found at {FSDD} (shared data folder absent)")
def test_loso_folds_summary_and_resume(tmp_path, monkeypatch):
    cfg = load_config(None, TINY)
    out = tmp_path / "loso"
    result = run_loso(cfg, FSDD, out, speakers=["george", "yweweler"], sizes=SIZES)

    # each fold's corpus is speaker-disjoint: test = the fold's speaker, dev = the next one
    for spk, dev in (("george", "jackson"), ("yweweler", "george")):
        corpus = out / spk / "corpus"
        assert _speakers(corpus / "test.jsonl") == {spk}
        assert _speakers(corpus / "dev.jsonl") == {dev}
        assert not _speakers(corpus / "train.jsonl") & {spk, dev}
        assert len(read_manifest(corpus / "train.jsonl")) == SIZES.n_train
        fold = json.loads((out / spk / "fold.json").read_text())
        scored = json.loads((out / spk / "run" / "test_wer.json").read_text())  # train()'s own test WER
        assert scored["data"] == str(corpus / "test.jsonl")
        assert fold["test_wer"] == scored["wer"] and fold["n_utts"] == SIZES.n_test
        assert fold["dev_speakers"] == [dev]
    summary = json.loads((out / "loso.json").read_text())
    assert [f["speaker"] for f in summary["folds"]] == ["george", "yweweler"]
    wers = [f["test_wer"] for f in summary["folds"]]
    assert summary["mean_wer"] == pytest.approx(sum(wers) / 2, abs=1e-3)
    assert result.mean_wer == summary["mean_wer"]
    assert "george" in result.table() and "mean ± std" in result.table()

    # resumed with the same config: no fold trains again
    def must_not_train(cfg, evaluate_test=True):
        raise AssertionError("a finished fold was retrained")

    monkeypatch.setattr("asr_tune.training.run.train", must_not_train)
    again = run_loso(cfg, FSDD, out, speakers=["george", "yweweler"], sizes=SIZES)
    assert all(f.reused for f in again.folds)
    assert [f.test_wer for f in again.folds] == wers

    # another config (or corpus size) changes the fold hash: every fold runs again
    calls = []

    def fake_train(fold_cfg, evaluate_test=True):
        calls.append(fold_cfg)
        wer = 10.0 if "george" in fold_cfg.data.test.split("/")[-3] else 30.0
        test = {"wer": wer, "substitutions": int(wer), "deletions": 0, "insertions": 0,
                "n_words": 100, "n_utts": SIZES.n_test}
        return SimpleNamespace(test=test, best_val_wer=wer / 2, epochs=1, best_checkpoint="x.ckpt")

    monkeypatch.setattr("asr_tune.training.run.train", fake_train)
    changed = run_loso(cfg.with_overrides({"optim.lr": 0.0123}), FSDD, out, speakers=["george", "yweweler"],
                       sizes=SIZES)
    assert len(calls) == 2 and not any(f.reused for f in changed.folds)
    assert calls[0].optim.lr == 0.0123 and calls[0].trainer.output_dir == str(out / "george" / "run")
    assert [calls[0].data.train, calls[0].data.dev, calls[0].data.test] == [
        str(out / "george" / "corpus" / f"{split}.jsonl") for split in ("train", "dev", "test")]
    assert (changed.mean_wer, changed.std_wer, changed.pooled_wer) == (20.0, pytest.approx(math.sqrt(200), abs=1e-3), 20.0)
    bigger = run_loso(cfg.with_overrides({"optim.lr": 0.0123}), FSDD, out, speakers=["george"],
                      sizes=CorpusSizes(n_train=25, n_dev=6, n_test=8))
    assert len(calls) == 3 and not bigger.folds[0].reused


@pytest.mark.shared_data
@pytest.mark.skipif(not (FSDD / "manifest.jsonl").is_file(),
                    reason=f"FSDD not found at {FSDD} (shared data folder absent)")
def test_loso_cli_bad_speaker_is_one_line_and_writes_nothing(tmp_path, capsys):
    from asr_tune.cli import main

    config = tmp_path / "c.yaml"
    config.write_text("trainer: {max_epochs: 1}\n")
    rc = main(["loso", str(config), "--src", str(FSDD), "--out", str(tmp_path / "out"),
               "--speakers", "george", "alice"])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error: --speakers: unknown speaker(s) alice") and err.count("\n") == 1
    assert not (tmp_path / "out").exists()
    assert loso.SUMMARY_FILE == "loso.json"
