"""Refusals, searches: ``submit`` runs ``search``'s pre-flight before contacting anything;
``resume`` over a truncated ``tuner.pkl`` or a corrupt state file is one line before Ray starts;
``report`` over a truncated ``result.json`` says so (and reads ``progress.csv`` when it has more).
"""
from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
from refusal_helpers import refuse, snapshot

from asr_tune.cli import main

SPACES = {
    "choice_for_bayesopt": ("bayesopt", "model.num_layers: {type: choice, values: [1, 2]}", "model.num_layers"),
    "pbt_mutating_model": ("pbt", "model.d_model: {type: choice, values: [32, 64]}", "model.d_model"),
    "unknown_searcher": ("no_such_searcher", "optim.lr: {type: loguniform, low: 0.0001, high: 0.01}",
                         "no_such_searcher"),
}


@pytest.mark.parametrize("case", sorted(SPACES))
def test_submit_runs_the_search_preflight_before_contacting_anything(tmp_path: Path, capsys, monkeypatch,
                                                                     case: str) -> None:
    import asr_tune.service.jobs as jobs

    searcher, space, named = SPACES[case]
    cfg = tmp_path / "exp.yaml"
    cfg.write_text(f"search:\n  searcher: {searcher}\n  space:\n    {space}\n")

    def never(*args, **kwargs):
        raise AssertionError("submit contacted the head before its pre-flight")

    monkeypatch.setattr(jobs, "connect", never)
    refuse(["submit", cfg, "--address", "http://127.0.0.1:9"], capsys, named)


def _experiment(tmp_path: Path) -> Path:
    exp = tmp_path / "exp"
    exp.mkdir()
    (exp / "asr_tune_search.json").write_text(json.dumps({"name": "exp", "config": {}}))
    (exp / "tuner.pkl").write_bytes(pickle.dumps({"tuner": list(range(200))}))
    (exp / "experiment_state-2026-01-01_00-00-00.json").write_text(json.dumps({"trial_data": []}))
    return exp


@pytest.mark.parametrize("damage", ["tuner_pkl_truncated", "state_file_corrupt", "tune_state_corrupt"])
def test_resume_over_damaged_state_is_one_line_before_ray_starts(tmp_path: Path, capsys, monkeypatch,
                                                                 damage: str) -> None:
    import asr_tune.tuning.runner as runner

    exp = _experiment(tmp_path)
    target = {"tuner_pkl_truncated": exp / "tuner.pkl", "state_file_corrupt": exp / "asr_tune_search.json",
              "tune_state_corrupt": exp / "experiment_state-2026-01-01_00-00-00.json"}[damage]
    target.write_bytes(target.read_bytes()[: len(target.read_bytes()) // 2])
    before = snapshot(exp)

    def never(*args, **kwargs):
        raise AssertionError("Ray was started before the state was checked")

    monkeypatch.setattr(runner, "_init_ray", never)
    refuse(["resume", exp], capsys, str(target))
    assert snapshot(exp) == before


def test_report_over_a_truncated_result_json_says_so(tmp_path: Path, capsys, caplog) -> None:
    exp = tmp_path / "exp"
    trial = exp / "run_trial_abcde_00000_0_optim_lr=0.001_2026-01-01_00-00-00"
    trial.mkdir(parents=True)
    (exp / "asr_tune_search.json").write_text(json.dumps({"name": "exp", "config": {
        "trainer": {"max_epochs": 3}, "search": {"searcher": "random", "space": {
            "optim.lr": {"type": "loguniform", "low": 1e-4, "high": 1e-1}}}}}))
    (trial / "params.json").write_text(json.dumps({"optim.lr": 1e-3}))
    rows = [{"val_wer": w, "epoch": e, "training_iteration": e, "trial_id": "abcde_00000",
             "time_total_s": 2.0 * e, "timestamp": 1000 + 2 * e} for e, w in ((1, 100.0), (2, 60.0), (3, 40.0))]
    text = "".join(json.dumps(r) + "\n" for r in rows)
    (trial / "result.json").write_text(text[: len(json.dumps(rows[0])) + 20])  # cut inside line 2
    keys = list(rows[0])
    (trial / "progress.csv").write_text(",".join(keys) + "\n" + "".join(
        ",".join(str(r[k]) for k in keys) + "\n" for r in rows))
    assert main(["report", str(exp), "--out", str(tmp_path / "report")]) == 0
    said = caplog.text + capsys.readouterr().err
    assert f"{trial / 'result.json'}:2: truncated or corrupt" in said
    assert "read from progress.csv (3 reports)" in said
    summary = (tmp_path / "report" / "summary.csv").read_text()
    assert "40" in summary  # the best WER comes from the full history, not "1 epoch at 100 %"
