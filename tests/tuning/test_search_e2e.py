"""Real searches of real (tiny) ASR trials through Ray Tune: end to end, DDP on gloo, kill + resume,
bad input before any trial, and PBT's mutated lr surviving a checkpoint restore."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import psutil
import pytest

from asr_tune.config import load_config
from asr_tune.errors import SearchError

TINY = Path(__file__).resolve().parents[2] / "configs" / "ci_search_tiny.yaml"
pytestmark = pytest.mark.slow


def tiny_overrides(corpus: Path, storage: Path, **extra: object) -> dict:
    return {"data.train": str(corpus / "train.jsonl"), "data.dev": str(corpus / "dev.jsonl"),
            "data.test": str(corpus / "test.jsonl"), "search.storage": str(storage),
            "trainer.output_dir": str(storage / "out"), **extra}


@pytest.fixture(scope="module")
def ray_local():
    import ray

    ray.init(num_cpus=3, include_dashboard=False, configure_logging=False)
    yield
    ray.shutdown()


def test_search_end_to_end_writes_results_and_best(corpus: Path, tmp_path: Path, ray_local: None) -> None:
    from asr_tune.tuning.runner import search

    cfg = load_config(TINY, tiny_overrides(corpus, tmp_path))
    res = search(cfg, searcher="random", num_samples=3, name="e2e")
    assert len(res.table) == 3 and set(res.table["status"]) == {"TERMINATED"}
    assert (res.table["epochs"] == cfg.trainer.max_epochs).all()
    exp = Path(res.experiment_dir)
    table = pd.read_csv(exp / "results.csv")
    assert len(table) == 3 and table["best_val_wer"].notna().all()
    assert res.best_val_wer == pytest.approx(table["best_val_wer"].min())
    assert Path(res.best_checkpoint).is_file()
    assert json.loads((exp / "best" / "test_wer.json").read_text())["n_utts"] == res.test["n_utts"]
    best_cfg = load_config(exp / "best" / "config.yaml")
    for key, value in res.best_overrides.items():
        section, field = key.split(".")
        assert getattr(getattr(best_cfg, section), field) == pytest.approx(value)


def test_ddp_trial_two_gloo_workers_reports_both_ranks(corpus: Path, tmp_path: Path, ray_local: None) -> None:
    from asr_tune.tuning.runner import search

    cfg = load_config(TINY, tiny_overrides(
        corpus, tmp_path, **{"resources.strategy": "ddp", "resources.workers_per_trial": 2,
                             "trainer.max_epochs": 1, "search.space": {},
                             "data.batch_seconds": 4.0}))  # several dev batches to share out
    res = search(cfg, searcher="random", num_samples=1, name="ddp")
    assert list(res.table["status"]) == ["TERMINATED"]
    trial_dir = Path(res.table.loc[0, "path"])
    rows = [json.loads(x) for x in (trial_dir / "result.json").read_text().splitlines()]
    n_dev = sum(1 for _ in open(corpus / "dev.jsonl"))
    # val WER is computed over both ranks' utterances: the total covers the whole dev split, while
    # rank 0 alone decoded only about half of it
    assert rows[-1]["val_utts"] >= n_dev
    assert rows[-1]["val_utts_local"] < rows[-1]["val_utts"]
    assert Path(res.best_checkpoint).is_file()


def test_bad_input_fails_before_any_trial(corpus: Path, tmp_path: Path, ray_local: None) -> None:
    from asr_tune.tuning.runner import search

    base = tiny_overrides(corpus, tmp_path)
    with pytest.raises(SearchError, match="unknown searcher 'nope'.*asha"):
        search(load_config(TINY, base), searcher="nope")
    with pytest.raises(SearchError, match=r"gpus_per_worker=4.*GPU"):
        search(load_config(TINY, {**base, "resources.gpus_per_worker": 4}))
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    if os.access(ro, os.W_OK):  # running as root: permissions do not stop us, use a file instead
        ro = tmp_path / "file"
        ro.write_text("x")
    with pytest.raises(SearchError, match="search.storage"):
        search(load_config(TINY, {**base, "search.storage": str(ro / "sub")}))
    assert not list(tmp_path.glob("**/experiment_state-*.json"))


def _finished_trials(exp: Path, epochs: int) -> dict[str, int]:
    done = {}
    for res in exp.glob("*/result.json"):
        lines = res.read_text().splitlines()
        if len(lines) >= epochs:
            done[res.parent.name] = len(lines)
    return done


def test_driver_sigkill_then_resume_loses_and_reruns_nothing(corpus: Path, tmp_path: Path) -> None:
    cfg = load_config(TINY, tiny_overrides(corpus, tmp_path, **{"search.num_samples": 6,
                                                                 "trainer.max_epochs": 3,
                                                                 "resources.max_concurrent_trials": 1}))
    cfg_path = tmp_path / "kill.yaml"
    cfg.dump_yaml(cfg_path)
    exp = tmp_path / "ci_search_tiny"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    log = open(tmp_path / "driver.log", "w")
    driver = subprocess.Popen([sys.executable, "-m", "asr_tune", "search", str(cfg_path)], stdout=log,
                              stderr=subprocess.STDOUT, env=env, cwd=tmp_path)
    ray_procs: list[psutil.Process] = []
    try:
        deadline = time.time() + 400
        while time.time() < deadline and not _finished_trials(exp, cfg.trainer.max_epochs):
            assert driver.poll() is None, (tmp_path / "driver.log").read_text()[-3000:]
            time.sleep(0.25)
        before = _finished_trials(exp, cfg.trainer.max_epochs)
        assert before, "no trial finished in time"
        ray_procs = psutil.Process(driver.pid).children(recursive=True)
        os.kill(driver.pid, signal.SIGKILL)
        driver.wait(30)
    finally:
        for p in ray_procs:  # the killed driver's local Ray (gcs, raylet, workers) would linger
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass
        log.close()
    assert not (exp / "results.csv").exists()  # the search really was cut short

    out = subprocess.run([sys.executable, "-m", "asr_tune", "resume", str(exp)], capture_output=True,
                         text=True, env=env, cwd=tmp_path, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    table = pd.read_csv(exp / "results.csv")
    assert len(table) == 6 and set(table["status"]) == {"TERMINATED"}
    after = _finished_trials(exp, cfg.trainer.max_epochs)
    for trial, n_lines in before.items():  # finished before the kill: not re-run, results kept
        assert after[trial] == n_lines
    assert len(after) == 6


def test_restored_checkpoint_runs_with_the_mutated_lr(corpus: Path, tmp_path: Path) -> None:
    """PBT exploit path: donor weights + optimiser state, the recipient's (mutated) lr in effect."""
    import torch
    from lightning.pytorch.callbacks import Callback

    from asr_tune.training.run import make_trainer, prepare

    base = load_config(TINY, tiny_overrides(corpus, tmp_path, **{
        "trainer.max_epochs": 1, "optim.schedule": "constant", "optim.warmup_steps": 1}))
    donor = prepare(base)
    trainer = make_trainer(base, [], tmp_path / "donor", enable_checkpointing=False)
    trainer.fit(donor.module, datamodule=donor.datamodule)
    ckpt = tmp_path / "donor.ckpt"
    trainer.save_checkpoint(ckpt)
    donor_weights = {k: v.clone() for k, v in donor.module.state_dict().items()}

    seen: dict[str, float] = {}

    class Spy(Callback):
        def on_train_start(self, trainer, module) -> None:
            group = trainer.optimizers[0].param_groups[0]
            seen["lr"], seen["initial_lr"] = group["lr"], group["initial_lr"]
            seen["restored"] = all(torch.equal(module.state_dict()[k], v) for k, v in donor_weights.items())
            state = trainer.optimizers[0].state
            seen["moments"] = bool(state) and all("exp_avg" in s for s in state.values())

    mutated = base.with_overrides({"optim.lr": base.optim.lr * 0.25, "trainer.max_epochs": 2})
    recipient = prepare(mutated)
    trainer2 = make_trainer(mutated, [Spy()], tmp_path / "recipient", enable_checkpointing=False)
    trainer2.fit(recipient.module, datamodule=recipient.datamodule, ckpt_path=str(ckpt))
    assert seen["restored"] and seen["moments"]
    assert seen["initial_lr"] == pytest.approx(mutated.optim.lr)
    assert seen["lr"] == pytest.approx(mutated.optim.lr)  # constant schedule after warmup
    assert trainer2.optimizers[0].param_groups[0]["lr"] == pytest.approx(mutated.optim.lr)
