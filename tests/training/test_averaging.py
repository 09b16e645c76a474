"""Checkpoint averaging: the mean of the k best checkpoints' weights, chosen over the single best
only when its dev WER is lower."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from asr_tune.config import load_config
from tests.conftest import TINY_SR, tiny_word_corpus


def test_average_is_the_mean_of_the_weights_and_keeps_the_metadata(tmp_path: Path) -> None:
    from asr_tune.training.averaging import average_checkpoints

    paths = []
    for i, w in enumerate((1.0, 2.0, 6.0)):
        p = tmp_path / f"c{i}.ckpt"
        torch.save({"state_dict": {"w": torch.full((2, 2), w), "n": torch.tensor(7 + i)},
                    "asr_tune": {"version": 1, "i": i}, "optimizer_states": [{}]}, p)
        paths.append(p)
    out = torch.load(average_checkpoints(paths, tmp_path / "avg.ckpt"), weights_only=True)
    assert torch.allclose(out["state_dict"]["w"], torch.full((2, 2), 3.0))
    assert int(out["state_dict"]["n"]) == 7  # integer buffers are not averaged
    assert out["asr_tune"] == {"version": 1, "i": 0} and "optimizer_states" not in out


def test_train_keeps_the_average_only_when_dev_is_better(tmp_path: Path) -> None:
    from asr_tune.training.run import evaluate, train

    c = tiny_word_corpus(tmp_path)
    cfg = load_config(None, {
        "data.train": c["train"], "data.dev": c["dev"], "data.test": c["dev"], "data.sample_rate": TINY_SR,
        "data.synth_if_missing": False, "data.batch_size": 2, "features.n_mels": 16, "tokenizer.kind": "word",
        "model.d_model": 16, "model.num_layers": 1, "model.num_heads": 2, "model.ffn_mult": 1,
        "model.conv_kernel": 3, "optim.lr": 0.01, "trainer.max_epochs": 100, "trainer.max_steps": 12,
        "trainer.report_every_steps": 2, "trainer.average_top_k": 3, "trainer.early_stopping_patience": 0,
        "trainer.threads": 1, "trainer.progress_bar": False, "trainer.output_dir": str(tmp_path / "run")})
    res = train(cfg, evaluate_test=False)
    avg = res.averaged
    assert avg is not None and avg["k"] == 3
    assert (tmp_path / "run" / "checkpoints" / "averaged.ckpt").is_file()
    assert avg["kept"] == (avg["dev_wer"] < avg["best_single_dev_wer"])
    chosen = min(avg["dev_wer"], avg["best_single_dev_wer"])
    assert res.best_val_wer == pytest.approx(chosen)
    assert evaluate(res.best_checkpoint, c["dev"]).wer == pytest.approx(chosen)


@pytest.mark.parametrize("avg_wer,kept", [(8.0, True), (12.0, False), (10.0, False)])
def test_average_replaces_the_best_only_when_strictly_better(tmp_path: Path, monkeypatch, avg_wer, kept) -> None:
    import asr_tune.training.run as run
    from asr_tune.training.averaging import AVERAGED

    monkeypatch.setattr(run, "average_checkpoints", lambda paths, out: out)
    monkeypatch.setattr(run, "evaluate", lambda ckpt, data: type("S", (), {
        "wer": avg_wer if str(ckpt).endswith(AVERAGED) else 10.0})())
    res = run.TrainResult(str(tmp_path / "best.ckpt"), 10.0, None, 1, 0.0, 1, "val_wer", 10.0)
    cfg = load_config(None, {"data.dev": "dev.jsonl"})
    run._keep_average_if_better(res, cfg, [tmp_path / "a.ckpt", tmp_path / "b.ckpt"], tmp_path)
    assert res.averaged["kept"] is kept
    assert res.best_checkpoint.endswith(AVERAGED) is kept
    assert res.best_val_wer == (avg_wer if kept else 10.0)
