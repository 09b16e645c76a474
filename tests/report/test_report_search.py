"""``asr-tune report`` on a real experiment folder made here by a tiny ``search`` (CI config).

The search (3 trials x 2 epochs of real training on the CI synthetic corpus, built under tmp) runs
once per module; the report must list exactly its trials, with the same epochs, best WERs and
configs as the search's own table, write non-empty PNGs, and name the same best config. The
report is also produced in a fresh interpreter that never imports Ray.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from asr_tune.cli import main
from asr_tune.report.experiments import load_experiment
from asr_tune.report.summary import make_report

REPO = Path(__file__).resolve().parents[2]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def ci_search(tmp_path_factory: pytest.TempPathFactory, ray_local: Any) -> Any:
    from asr_tune.tuning.runner import search

    work = tmp_path_factory.mktemp("ci_search")
    old = os.getcwd()
    os.chdir(work)  # the CI config's corpus paths are relative: build it under tmp
    try:
        return search(REPO / "configs" / "ci_search_tiny.yaml", storage=str(work / "runs"),
                      name="ci_report")
    finally:
        os.chdir(old)


def test_table_matches_search(ci_search: Any) -> None:
    exp = load_experiment(ci_search.experiment_dir)
    mine = exp.table().set_index("trial_id")
    theirs = ci_search.table.set_index("trial_id")
    assert sorted(mine.index) == sorted(theirs.index) and len(mine) == 3
    for tid, row in theirs.iterrows():
        assert mine.loc[tid, "epochs"] == row["epochs"] == 2
        assert mine.loc[tid, "best_val_wer"] == pytest.approx(row["best_val_wer"])
        assert json.loads(mine.loc[tid, "config"]) == pytest.approx(json.loads(row["config"]))
        assert mine.loc[tid, "status"] == row["status"]
    assert exp.searcher == "random" and exp.max_epochs == 2
    assert exp.events()["cum_epochs"].iloc[-1] == 6


def test_report_files_and_best_config(ci_search: Any, tmp_path: Path) -> None:
    rep = make_report([ci_search.experiment_dir], tmp_path / "report")
    assert rep["summary"][0]["trials"] == 3 and rep["summary"][0]["trial_epochs"] == 6
    assert len(rep["trials"]) == 3
    assert rep["best"][0]["config"] == pytest.approx(ci_search.best_overrides)
    assert rep["best"][0]["value"] == pytest.approx(ci_search.best_val_wer)
    assert rep["best"][0]["test"]["wer"] == pytest.approx(ci_search.test["wer"])
    assert set(rep["figures"]) == {"best_vs_compute", "trials", "curves"}  # no int8 stage here
    for path in rep["figures"].values():
        data = Path(path).read_bytes()
        assert data[:8] == PNG_MAGIC and len(data) > 5_000, path
    for key in ("summary_csv", "trials_csv", "summary_json", "trials_json", "report_json"):
        assert Path(rep["files"][key]).stat().st_size > 0


def test_cli_report_without_ray(ci_search: Any, tmp_path: Path) -> None:
    out = tmp_path / "cli"
    code = ("import sys; from asr_tune.report.summary import make_report, print_report; "
            f"print_report(make_report([{ci_search.experiment_dir!r}], {str(out)!r})); "
            "assert 'ray' not in sys.modules, 'the report imported ray'")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "best config" in proc.stdout
    assert (out / "best_vs_compute.png").read_bytes()[:8] == PNG_MAGIC
    assert main(["report", ci_search.experiment_dir, "--out", str(tmp_path / "inproc")]) == 0
