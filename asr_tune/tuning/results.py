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
import math
import shutil
from pathlib import Path
from typing import Any

import pandas as pd

from asr_tune.config import ExperimentConfig

log = logging.getLogger(__name__)


def trial_table(grid: Any, metric: str, mode: str, space: dict | None = None) -> pd.DataFrame:
    """One row per trial, sorted best first."""
    from asr_tune.tuning.folder import best_of, epochs_of
    from asr_tune.tuning.placement import placement_columns, trial_failures
    from asr_tune.tuning.space import trial_overrides

    rows, failures = [], trial_failures(grid)
    for res in grid:
        hist = res.metrics_dataframe if res.metrics_dataframe is not None else pd.DataFrame()
        m = res.metrics or {}
        best, epochs = best_of(hist, metric, mode), epochs_of(hist)  # as the report reads them
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
            **placement_columns(hist, m, failures.get(m.get("trial_id") or Path(res.path).name)),
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


def _score(metrics: dict, metric: str) -> float | None:
    try:
        value = float(metrics.get(metric))
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def best_kept_checkpoint(res: Any, metric: str, mode: str) -> tuple[Any, dict] | None:
    """The kept Tune checkpoint with the best reported ``metric``, and that report's metrics."""
    scored = [(c, m) for c, m in (res.best_checkpoints or []) if _score(m, metric) is not None]
    if not scored:
        return None
    pick = min if mode == "min" else max
    return pick(scored, key=lambda cm: _score(cm[1], metric))


def best_checkpoint_file(res: Any, metric: str, mode: str, dest: Path) -> tuple[Path, dict] | None:
    """Copy the Lightning file of the trial's best kept checkpoint to ``dest``; None if none is kept."""
    from asr_tune.tuning.trial import CKPT_FILE

    found = best_kept_checkpoint(res, metric, mode)
    if found is None:
        log.warning("%s: no checkpoint with a finite %s is kept; nothing exported", res.path, metric)
        return None
    ckpt, metrics = found
    dest.parent.mkdir(parents=True, exist_ok=True)
    with ckpt.as_directory() as d:
        shutil.copyfile(Path(d) / CKPT_FILE, dest)
    return dest, metrics


def _embedded_config(ckpt: Path) -> ExperimentConfig:
    """The config a checkpoint was trained with (a PBT trial's last config may be a mutation that
    was never trained)."""
    from asr_tune.config import config_from_dict
    from asr_tune.model.lightning_module import CKPT_KEY
    from asr_tune.model.safe_load import load_checkpoint_file

    meta = load_checkpoint_file(ckpt)[CKPT_KEY]
    return config_from_dict(meta["config"], f"{ckpt} (embedded config)")


def _dotted(cfg: dict, key: str) -> Any:
    for part in key.split("."):
        cfg = cfg[part]
    return cfg


def export_best(grid: Any, table: pd.DataFrame, cfg: ExperimentConfig, out_dir: str | Path,
                evaluate_test: bool = True) -> dict[str, Any]:
    """``best/``: the best trial's best-scoring checkpoint, the config it was trained with, test WER.

    ``best_value`` is the best value of ``search.metric`` (named in ``metric``) that the table
    reports; ``val_wer`` is always a WER (for metric ``val_loss``: the exported checkpoint's). If
    the best report's checkpoint is not the one exported (not kept), a warning says so and
    ``best.json`` records the exported checkpoint's own value.
    """
    from asr_tune.scoring import evaluate
    from asr_tune.tuning.trial import trial_config

    metric, mode = cfg.search.metric, cfg.search.mode
    top = table.iloc[0]
    res = _trial_result(grid, top["trial_id"])
    out = Path(out_dir) / "best"
    found = best_checkpoint_file(res, metric, mode, out / "checkpoint.ckpt")
    ckpt, ck_metrics = found if found else (None, {})
    overrides = json.loads(top["config"])
    if ckpt is not None:
        best_cfg = _embedded_config(ckpt)
        trained = best_cfg.to_dict()
        overrides = {k: _dotted(trained, k) for k in overrides}
    else:
        best_cfg = trial_config(cfg.to_dict(), res.config)
    best_cfg.dump_yaml(out / "config.yaml")
    best_value = float(top[f"best_{metric}"])
    # val_wer is a WER whatever the metric: for metric val_loss, the exported checkpoint's val WER
    val_wer = best_value if metric == "val_wer" else _score(ck_metrics, "val_wer")
    info: dict[str, Any] = {"config": best_cfg.to_dict(), "overrides": overrides, "metric": metric,
                            "best_value": best_value, "val_wer": val_wer, "trial_id": top["trial_id"],
                            "checkpoint": str(ckpt) if ckpt else None}
    if ckpt is not None:
        ck_value = _score(ck_metrics, metric)
        info.update({f"checkpoint_{metric}": ck_value,
                     "checkpoint_iteration": ck_metrics.get("training_iteration")})
        if "val_wer" in ck_metrics:
            info["checkpoint_val_wer"] = float(ck_metrics["val_wer"])
        if ck_value != best_value:
            log.warning("%s: the best report (%s=%s) has no kept checkpoint; best/ holds the best kept "
                        "one (%s=%s)", top["trial_id"], metric, best_value, metric, ck_value)
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
        found = best_checkpoint_file(res, cfg.search.metric, cfg.search.mode, dest / "float.ckpt")
        if found is None:
            continue
        ckpt = found[0]
        try:
            # scan, fallback and gate on dev; the test split is scored once, by the chosen model
            rep = quantize(ckpt, calib=cfg.data.dev, data=cfg.data.test, cfg=cfg.quant, out_dir=dest,
                           select=cfg.data.dev)
        except AsrTuneError as err:
            log.warning("int8 stage failed for %s: %s", table.loc[rank, "trial_id"], err)
            continue
        d = rep.to_dict() if hasattr(rep, "to_dict") else dict(rep)
        test = (d.get("extra") or {}).get("held_out") or d  # the test split's WERs
        table.loc[rank, "float_wer"] = test.get("float_wer")
        table.loc[rank, "int8_wer"] = test.get("int8_wer")
        table.loc[rank, "int8_accepted"] = d.get("accepted")
        reports.append(d)
    return reports
