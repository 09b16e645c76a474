"""Run ``notebooks/quickstart.ipynb`` then ``notebooks/analysis.ipynb`` top to bottom on tiny settings.

Both execute with nbclient in a ``python3`` kernel of this interpreter (jupyter_client starts a
kernelspec whose command is ``python`` with ``sys.executable``), in one temporary working dir
(``ASR_TUNE_NB_WORKDIR``) with ``ASR_TUNE_NB_TINY=1``: the quickstart builds a 60-utterance corpus
and runs a 2-trial random search; the analysis finds that experiment, runs a second 2-trial search
with another searcher so that it has two to compare, and writes its tables and figures. About
3 minutes on 2 CPU cores. Executed copies of the notebooks are kept in the working dir.

Usage::

    .venv/bin/python -m pytest tests/test_notebooks.py -q
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = REPO / "notebooks"
KERNEL = "python3"
CELL_TIMEOUT_S = 600

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def _ensure_kernel() -> None:
    """The ``python3`` kernelspec must resolve; install ipykernel's into this prefix if it does not."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        KernelSpecManager().get_kernel_spec(KERNEL)
    except NoSuchKernel:
        subprocess.run([sys.executable, "-m", "ipykernel", "install", "--sys-prefix"], check=True,
                       capture_output=True)
        KernelSpecManager().get_kernel_spec(KERNEL)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    _ensure_kernel()
    wd = tmp_path_factory.mktemp("notebooks")
    saved = {k: os.environ.get(k) for k in ("ASR_TUNE_NB_TINY", "ASR_TUNE_NB_WORKDIR", "RAY_ADDRESS")}
    os.environ["ASR_TUNE_NB_TINY"] = "1"
    os.environ["ASR_TUNE_NB_WORKDIR"] = str(wd)
    os.environ.pop("RAY_ADDRESS", None)  # the notebooks start their own local Ray
    try:
        yield wd
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def run_notebook(name: str, workdir: Path) -> object:
    """Execute every cell (the kernel inherits this process's environment); raise on a cell error."""
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    client = nbclient.NotebookClient(nb, kernel_name=KERNEL, timeout=CELL_TIMEOUT_S,
                                     resources={"metadata": {"path": str(NOTEBOOKS)}})
    try:
        client.execute()
    finally:
        nbformat.write(nb, workdir / f"executed_{name}")
    return nb


def _text_outputs(nb: object) -> str:
    parts = []
    for cell in nb.cells:  # type: ignore[attr-defined]
        for out in cell.get("outputs", []):
            parts.append(out.get("text", "") or str(out.get("data", {}).get("text/plain", "")))
    return "\n".join(parts)


def test_quickstart_runs_tiny(workdir: Path) -> None:
    nb = run_notebook("quickstart.ipynb", workdir)
    summary = json.loads((workdir / "quickstart_result.json").read_text())
    assert summary["searcher"] == "random" and summary["trials"] == 2
    exp = Path(summary["experiment_dir"])
    assert exp.parent == workdir / "search"
    assert (exp / "results.csv").is_file() and (exp / "best" / "config.yaml").is_file()
    assert Path(summary["best_checkpoint"]).is_file()
    assert (workdir / "quickstart_curves.png").stat().st_size > 1000
    assert (workdir / "data" / "synth" / "test.jsonl").is_file()
    text = _text_outputs(nb)
    assert "best val WER" in text and "->" in text  # summary and decoded test utterances printed


def test_analysis_runs_tiny(workdir: Path) -> None:
    run_notebook("analysis.ipynb", workdir)
    out = workdir / "analysis"
    import pandas as pd

    comparison = pd.read_csv(out / "searchers.csv")
    assert len(comparison) >= 2 and comparison["searcher"].nunique() >= 2
    assert comparison["best_val_wer"].notna().all()
    trials = pd.read_csv(out / "trials.csv")
    assert len(trials) == comparison["trials"].sum()
    assert (out / "searchers.png").stat().st_size > 1000
