"""best/ holds the best report's checkpoint: Tune keeps checkpoints by score (plus the latest), and
the export picks the best kept one, so best/checkpoint.ckpt evaluates to the reported best val WER.

The trainable reports four real checkpoints (a trained tiny model, and three noisy copies) whose
val_wer is their real WER on a dev manifest; the best is the second report, so keeping "the latest
two" would lose it. The same experiment is then resumed by a relative path from another directory.
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.slow  # a real Tune run + the session's tiny trained model (~1-2 min)
BEST_REPORT = 1  # 0-based: the trained weights; the other reports are the same weights with noise


def run_trial(config: dict, ckpt: str, dev: str) -> None:
    """Named like the real trial function, so ``resume`` (which passes the real one) can restore it."""
    from ray import tune

    from asr_tune.model.lightning_module import CKPT_KEY, CKPT_VERSION, load_asr_checkpoint
    from asr_tune.training.run import evaluate
    from asr_tune.tuning.trial import CKPT_FILE

    for it in range(4):
        module = load_asr_checkpoint(ckpt)
        if it != BEST_REPORT:
            torch.manual_seed(it)
            with torch.no_grad():
                for p in module.parameters():
                    p.add_(torch.randn_like(p) * 0.5 * p.std().clamp_min(1e-3))
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / CKPT_FILE
            torch.save({"state_dict": module.state_dict(), CKPT_KEY: {
                "version": CKPT_VERSION, "config": module.cfg.to_dict(), "tokenizer": module.tok.state()}},
                path)
            wer = evaluate(path, dev).wer
            tune.report({"val_wer": wer, "epoch": it + 1}, checkpoint=tune.Checkpoint.from_directory(tmp))


def test_best_dir_holds_the_best_reports_checkpoint(tmp_path: Path, tiny_trained: dict,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    import ray
    import ray.cloudpickle
    from ray import tune

    from asr_tune.training.run import evaluate
    from asr_tune.tuning.runner import _run_config, _write_state, finish, resume

    dev = tiny_trained["dev"]
    cfg = tiny_trained["cfg"].with_overrides({
        "search.storage": str(tmp_path / "search"), "search.space": {}, "data.test": str(dev),
        "trainer.output_dir": str(tmp_path / "out")})
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import tests/
    ray.init(num_cpus=1, include_dashboard=False, configure_logging=False, log_to_driver=False)
    try:
        tuner = tune.Tuner(tune.with_parameters(run_trial, ckpt=str(tiny_trained["ckpt"]), dev=str(dev)),
                           tune_config=tune.TuneConfig(metric="val_wer", mode="min", num_samples=1),
                           run_config=_run_config(cfg, str(tmp_path / "search"), "best_export"))
        grid = tuner.fit()
        history = grid[0].metrics_dataframe["val_wer"].tolist()
        assert len(history) == 4 and history.index(min(history)) == BEST_REPORT
        assert min(history) < min(history[2:])  # premise: the best is not among the last two
        exp = tmp_path / "search" / "best_export"
        res = finish(str(exp), cfg, grid, 0.0, None)
        _write_state(str(exp), cfg, "best_export")
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        monkeypatch.chdir(elsewhere)  # resume by a relative path from another working directory
        resumed = resume(os.path.join("..", "search", "best_export"))
        assert resumed.best_val_wer == pytest.approx(res.best_val_wer)
        assert resumed.experiment_dir == str(exp.resolve())
    finally:
        ray.shutdown()
    assert res.best_val_wer == pytest.approx(min(history))
    assert evaluate(res.best_checkpoint, dev).wer == pytest.approx(res.best_val_wer)
    best = json.loads((Path(res.experiment_dir) / "best" / "best.json").read_text())
    assert best["checkpoint_iteration"] == BEST_REPORT + 1
    assert res.test["wer"] == pytest.approx(res.best_val_wer)  # test split == dev split here
