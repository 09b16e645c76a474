"""``load_experiment`` / ``make_report`` / ``asr-tune report`` on hand-written experiment folders
(no Ray): truncated result.json, progress.csv fallback, errored trials, int8 reports, bad input."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from asr_tune.cli import main
from asr_tune.report.experiments import load_experiment
from asr_tune.report.summary import make_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _trial(root: Path, idx: int, wers: list[float], lr: float, t0: float, csv: bool = False,
           error: bool = False, cut_last_line: bool = False) -> Path:
    d = root / f"run_trial_abcde_{idx:05d}_{idx}_optim_lr={lr}_2026-01-01_00-00-00"
    d.mkdir(parents=True)
    (d / "params.json").write_text(json.dumps({"optim.lr": lr}))
    rows = [{"val_wer": w, "epoch": e, "training_iteration": e, "trial_id": f"abcde_{idx:05d}",
             "time_this_iter_s": 2.0, "time_total_s": 2.0 * e, "time_since_restore": 2.0 * e,
             "iterations_since_restore": e, "timestamp": int(t0 + 2 * e)}
            for e, w in enumerate(wers, start=1)]
    if csv:
        keys = list(rows[0])
        (d / "progress.csv").write_text(",".join(keys) + "\n" + "".join(
            ",".join(str(r[k]) for k in keys) + "\n" for r in rows))
    else:
        text = "".join(json.dumps(r) + "\n" for r in rows)
        (d / "result.json").write_text(text + ('{"val_wer": 1' if cut_last_line else ""))
    if error:
        (d / "error.txt").write_text("Traceback...\nRuntimeError: boom\n")
    return d


@pytest.fixture()
def fake_exp(tmp_path: Path) -> Path:
    root = tmp_path / "exp"
    root.mkdir()
    cfg = {"trainer": {"max_epochs": 3}, "search": {"searcher": "asha", "metric": "val_wer",
           "mode": "min", "space": {"optim.lr": {"type": "loguniform", "low": 1e-4, "high": 1e-1}}}}
    (root / "asr_tune_search.json").write_text(json.dumps({"name": "fake_asha", "config": cfg}))
    _trial(root, 0, [90.0, 70.0, 60.0], 1e-3, 1000.0, cut_last_line=True)
    _trial(root, 1, [95.0], 1e-2, 1001.0, csv=True)
    _trial(root, 2, [80.0, 75.0], 3e-3, 1003.0, error=True)
    rank = root / "int8" / "rank0"
    rank.mkdir(parents=True)
    (rank / "report.json").write_text(json.dumps({
        "accepted": True, "mode": "dynamic", "float_wer": 60.0, "int8_wer": 60.5,
        "size": {"float_onnx_bytes": 4_000_000, "int8_onnx_bytes": 1_100_000},
        "latency": {"float_onnx": {"median_s": 0.02}, "int8_onnx": {"median_s": 0.012}}}))
    return root


def test_load_experiment_reads_folder(fake_exp: Path) -> None:
    exp = load_experiment(fake_exp)
    assert (exp.name, exp.searcher, exp.max_epochs) == ("fake_asha", "asha", 3)
    table = exp.table()
    assert list(table["trial_id"]) == ["abcde_00000", "abcde_00002", "abcde_00001"]
    assert list(table["epochs"]) == [3, 2, 1]  # the cut last line is skipped
    assert list(table["status"]) == ["TERMINATED", "ERROR", "TERMINATED"]
    assert "boom" in table.loc[1, "error"]
    assert list(table["stopped_early"]) == [False, False, True]  # errors do not count
    assert exp.best_value == 60.0 and exp.best_config == {"optim.lr": 1e-3}
    ev = exp.events()
    assert list(ev["cum_epochs"]) == list(range(1, 7))
    assert list(ev["best_so_far"]) == [90.0, 90.0, 70.0, 70.0, 60.0, 60.0]
    assert list(ev["trials_started"]) == [1, 2, 2, 3, 3, 3]  # interleaved by report time
    assert ev["cum_compute_s"].iloc[-1] == pytest.approx(12.0)
    assert exp.int8[0]["int8_wer"] == 60.5 and exp.int8[0]["int8_latency_ms"] == pytest.approx(12.0)


def test_make_report_and_cli(fake_exp: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    rep = make_report([fake_exp, fake_exp], tmp_path / "out")
    labels = [s["experiment"] for s in rep["summary"]]
    assert len(set(labels)) == 2  # the same folder twice gets unique labels
    assert rep["summary"][0]["stopped_early"] == 1 and rep["summary"][0]["errors"] == 1
    assert set(rep["figures"]) == {"best_vs_compute", "trials", "curves", "int8"}
    for path in rep["figures"].values():
        assert Path(path).read_bytes()[:8] == PNG_MAGIC
    assert main(["report", str(fake_exp)]) == 0
    assert (fake_exp / "report" / "summary.csv").is_file()
    assert "best config" in capsys.readouterr().out


def test_report_rejects_non_experiment(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["report", str(tmp_path)]) == 2
    assert "no trial folders" in capsys.readouterr().err
    assert main(["report", str(tmp_path / "missing")]) == 2
