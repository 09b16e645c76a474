"""What a search reports is what it trained: a perfect WER is 0 (not NaN), val_loss is not labelled a
WER, overrides survive an ExperimentConfig, best/config.yaml is the config the checkpoint was trained
with (not a PBT mutation reported after it), and a searcher's max_concurrent option is the cap Tune
gets (not rejected for tpe/bayesopt, not overwritten for bohb/rl)."""
from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
import torch

from asr_tune.config import load_config
from asr_tune.errors import SearchError

TINY = {"data.sample_rate": 8000, "features.n_mels": 16, "model.d_model": 16, "model.num_layers": 1,
        "model.num_heads": 2, "model.ffn_mult": 2, "model.conv_kernel": 3}
SPACE = {"optim.lr": {"type": "loguniform", "low": 1e-4, "high": 1e-1}}


def _fsdd_manifest(path: Path, n: int) -> Path:
    from tests.conftest import FSDD

    manifest = FSDD / "manifest.jsonl"
    if not manifest.is_file():
        pytest.skip(f"FSDD audio not found at {FSDD}")
    rows = [json.loads(x) for x in manifest.read_text().splitlines() if x.strip()][::97][:n]
    for r in rows:
        r["audio_filepath"] = str((FSDD / r["audio_filepath"]).resolve())
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _checkpoint_dir(tmp: Path, cfg) -> Path:
    """A Tune checkpoint folder holding an asr-tune checkpoint trained (so to speak) with ``cfg``."""
    from asr_tune.data.tokenizer import train_tokenizer
    from asr_tune.model.lightning_module import CKPT_KEY, CKPT_VERSION, ASRModule
    from asr_tune.tuning.trial import CKPT_FILE

    tok = train_tokenizer(["zero one"], cfg.tokenizer)
    module = ASRModule(cfg, tok)
    tmp.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": module.state_dict(), CKPT_KEY: {
        "version": CKPT_VERSION, "config": cfg.to_dict(), "tokenizer": tok.state()}}, tmp / CKPT_FILE)
    return tmp


def _one_trial_grid(tmp: Path, trained_cfg, reported_config: dict, metrics: dict):
    from ray import tune

    ckpt = tune.Checkpoint.from_directory(str(_checkpoint_dir(tmp / "ckpt", trained_cfg)))
    res = SimpleNamespace(path=str(tmp / "t1"), error=None, best_checkpoints=[(ckpt, metrics)],
                          metrics={"trial_id": "t1", "config": reported_config, **metrics})
    res.config = reported_config
    return [res]


def test_best_config_is_the_trained_one_and_val_loss_is_not_a_wer(tmp_path: Path) -> None:
    from asr_tune.tuning.results import export_best

    base = load_config(None, {**TINY, "search.space": SPACE, "search.metric": "val_loss"})
    trained = base.with_overrides({"optim.lr": 1e-3})
    # PBT mutated lr to 0.05 at the last perturbation: reported, never trained
    grid = _one_trial_grid(tmp_path, trained, {"optim.lr": 0.05},
                           {"val_loss": 0.42, "val_wer": 37.5, "training_iteration": 6})
    table = pd.DataFrame([{"trial_id": "t1", "best_val_loss": 0.42, "config": json.dumps({"optim.lr": 0.05})}])
    info = export_best(grid, table, base, tmp_path / "exp", evaluate_test=False)
    assert info["overrides"] == {"optim.lr": pytest.approx(1e-3)}
    assert load_config(tmp_path / "exp" / "best" / "config.yaml").optim.lr == pytest.approx(1e-3)
    assert info["metric"] == "val_loss" and info["best_value"] == pytest.approx(0.42)
    assert info["val_wer"] == pytest.approx(37.5)  # a WER, not the loss
    saved = json.loads((tmp_path / "exp" / "best" / "best.json").read_text())
    assert saved["val_wer"] == pytest.approx(37.5) and saved["best_value"] == pytest.approx(0.42)


def test_summary_names_the_metric(tmp_path: Path) -> None:
    from asr_tune.tuning.runner import SearchResult

    table = pd.DataFrame([{"status": "TERMINATED"}])
    res = SearchResult(str(tmp_path), "random", {}, {}, 37.5, None, None, table, 1.0,
                       metric="val_loss", best_value=0.42)
    assert "best val_loss: 0.42 (val WER at that checkpoint: 37.50%)" in res.summary()


def test_search_applies_overrides_to_an_experiment_config(tmp_path: Path) -> None:
    from asr_tune.tuning.runner import search

    cfg = load_config(None, {"search.storage": str(tmp_path / "s"), "data.train": str(tmp_path / "none.jsonl")})
    with pytest.raises(SearchError, match="unknown searcher 'nope'"):
        search(cfg, overrides={"search.searcher": "nope"})
    with pytest.raises(SearchError, match="unknown searcher 'nope'"):
        search(cfg, overrides=["search.searcher=nope"])


@pytest.mark.parametrize("name", ["tpe", "bayesopt", "bohb", "rl"])
def test_max_concurrent_option_is_the_cap_tune_gets(name: str) -> None:
    from ray.tune.search import ConcurrencyLimiter

    from asr_tune.tuning.registry import build_search
    from asr_tune.tuning.runner import concurrency_cap

    cfg = load_config(None, {"search.searcher": name, "search.space": SPACE, "search.num_samples": 8,
                             "search.options": {name: {"max_concurrent": 2}}})
    cap = concurrency_cap(cfg.search, 3)  # the cluster fits 3 trials
    assert cap == 2
    plan = build_search(cfg.search, max_t=4, max_concurrent=cap)
    alg = plan.search_alg
    if isinstance(alg, ConcurrencyLimiter):  # tpe/bayesopt: Tune raises if max_concurrent_trials differs
        assert alg.max_concurrent == cap
    else:  # bohb/rl: Tune wraps them in ConcurrencyLimiter(cap), which sets their own cap
        limiter = ConcurrencyLimiter(alg, max_concurrent=cap)
        limiter.set_search_properties(cfg.search.metric, cfg.search.mode, {})
        assert alg._max_concurrent == 2 if name == "bohb" else alg.max_concurrent == 2
    assert concurrency_cap(load_config(None, {"search.searcher": name, "search.space": SPACE}).search, 3) == 3


def test_perfect_wer_is_zero_not_nan(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A model that decodes every dev utterance right: best_val_wer is 0.0."""
    from asr_tune.model import lightning_module
    from asr_tune.model.decoding import WERStats
    from asr_tune.training.run import train

    dev = _fsdd_manifest(tmp_path / "dev.jsonl", 6)
    monkeypatch.setattr(lightning_module, "wer_stats",
                        lambda refs, hyps: WERStats(0.0, 0, 0, 0, len(refs), len(refs)))
    cfg = load_config(None, {**TINY, "data.train": str(dev), "data.dev": str(dev), "data.test": str(dev),
                             "trainer.max_epochs": 1, "trainer.early_stopping_patience": 0,
                             "trainer.progress_bar": False, "trainer.output_dir": str(tmp_path / "run")})
    assert train(cfg, evaluate_test=False).best_val_wer == 0.0
