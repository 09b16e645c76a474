"""Results of a search: the per-trial table, the exported best model, the int8 stage on the top k.

Experiment folder = Ray Tune's own layout (restorable by plain Ray tools) plus::

    results.csv / results.json   one row per trial: overrides, epochs run, best metric, wall time
    best/checkpoint.ckpt         the best trial's best checkpoint (a normal asr-tune checkpoint)
    best/config.yaml             its full config; best/test_wer.json its test-split WER
    int8/rank<k>/                quantized artefact + report for the k best trials (if asked)
"""
from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

import pandas as pd

from asr_tune.config import ExperimentConfig

log = logging.getLogger(__name__)


def trial_table(grid: Any, metric: str, mode: str, space: dict | None = None) -> pd.DataFrame:
    """One row per trial, sorted best first."""
    from asr_tune.tuning.space import trial_overrides

    rows = []
    for res in grid:
        hist = res.metrics_dataframe if res.metrics_dataframe is not None else pd.DataFrame()
        m = res.metrics or {}
        best = None
        if metric in hist:
            col = hist[metric].dropna()
            best = float(col.min() if mode == "min" else col.max()) if len(col) else None
        epochs = int(hist["training_iteration"].max()) if "training_iteration" in hist else 0
        overrides = trial_overrides(res.config or {}, space)
        rows.append({
            "trial_id": m.get("trial_id") or Path(res.path).name,
            "status": "ERROR" if res.error else "TERMINATED",
            "epochs": epochs,
            f"best_{metric}": best,
            f"last_{metric}": m.get(metric),
            "wall_s": float(m.get("time_total_s", float("nan"))),
            "config": json.dumps(overrides, sort_keys=True),
            "error": str(res.error).splitlines()[0][:300] if res.error else None,
            "path": res.path,
        })
    table = pd.DataFrame(rows)
    if not len(table):
        return pd.DataFrame(columns=["trial_id", "status", "epochs", f"best_{metric}", "wall_s", "config"])
    return table.sort_values(f"best_{metric}", ascending=(mode == "min"), na_position="last"
                             ).reset_index(drop=True)


def write_table(table: pd.DataFrame, out_dir: str | Path) -> None:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "results.csv", index=False)
    (out / "results.json").write_text(table.to_json(orient="records", indent=1))


def _trial_result(grid: Any, trial_id: str) -> Any:
    for res in grid:
        if (res.metrics or {}).get("trial_id") == trial_id or Path(res.path).name == trial_id:
            return res
    raise KeyError(trial_id)


def best_checkpoint_file(res: Any, metric: str, mode: str, dest: Path) -> Path | None:
    """Copy the trial's best Tune checkpoint's Lightning file to ``dest``."""
    from asr_tune.tuning.trial import CKPT_FILE

    ckpt = res.get_best_checkpoint(metric, mode) or res.checkpoint
    if ckpt is None:
        return None
    dest.parent.mkdir(parents=True, exist_ok=True)
    with ckpt.as_directory() as d:
        shutil.copyfile(Path(d) / CKPT_FILE, dest)
    return dest


def export_best(grid: Any, table: pd.DataFrame, cfg: ExperimentConfig, out_dir: str | Path,
                evaluate_test: bool = True) -> dict[str, Any]:
    from asr_tune.scoring import evaluate
    from asr_tune.tuning.trial import trial_config

    metric, mode = cfg.search.metric, cfg.search.mode
    top = table.iloc[0]
    res = _trial_result(grid, top["trial_id"])
    best_cfg = trial_config(cfg.to_dict(), res.config)
    out = Path(out_dir) / "best"
    best_cfg.dump_yaml(out / "config.yaml")
    ckpt = best_checkpoint_file(res, metric, mode, out / "checkpoint.ckpt")
    info: dict[str, Any] = {"config": best_cfg.to_dict(), "overrides": json.loads(top["config"]),
                            "val_wer": float(top[f"best_{metric}"]), "trial_id": top["trial_id"],
                            "checkpoint": str(ckpt) if ckpt else None}
    if ckpt and evaluate_test:
        info["test"] = evaluate(ckpt, cfg.data.test, out_json=out / "test_wer.json").to_dict()
    (out / "best.json").write_text(json.dumps({k: v for k, v in info.items() if k != "config"}, indent=1))
    return info


def quantize_top(grid: Any, table: pd.DataFrame, cfg: ExperimentConfig, out_dir: str | Path, k: int
                 ) -> list[dict]:
    """Run the WER-gated int8 stage on the k best trials; record both WERs in the table."""
    from asr_tune.errors import AsrTuneError
    from asr_tune.quant.pipeline import quantize

    reports = []
    for col in ("float_wer", "int8_wer", "int8_accepted"):
        table[col] = None
    for rank in range(min(k, len(table))):
        res = _trial_result(grid, table.loc[rank, "trial_id"])
        dest = Path(out_dir) / "int8" / f"rank{rank}"
        ckpt = best_checkpoint_file(res, cfg.search.metric, cfg.search.mode, dest / "float.ckpt")
        if ckpt is None:
            continue
        try:
            rep = quantize(ckpt, calib=cfg.data.dev, data=cfg.data.test, cfg=cfg.quant, out_dir=dest)
        except AsrTuneError as err:
            log.warning("int8 stage failed for %s: %s", table.loc[rank, "trial_id"], err)
            continue
        d = rep.to_dict() if hasattr(rep, "to_dict") else dict(rep)
        table.loc[rank, "float_wer"] = d.get("float_wer")
        table.loc[rank, "int8_wer"] = d.get("int8_wer")
        table.loc[rank, "int8_accepted"] = d.get("accepted")
        reports.append(d)
    return reports
