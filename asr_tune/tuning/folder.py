"""The one reader of a Tune experiment folder on disk (Ray-free: files only).

Built on what Ray Tune writes, never on folder names: the newest ``experiment_state-*.json``
(trials in creation order with their id, ``experiment_tag`` and folder), each trial folder's
``result.json`` (one JSON line per report; ``progress.csv`` when it is absent) and ``params.json``
(the sampled config), ``error.txt``; plus the asr-tune files next to them (``asr_tune_search.json``
base config, ``results.csv`` statuses). Used by the report (``asr_tune.report.experiments``) and the
searcher replay (``asr_tune.tuning.replay``); ``asr_tune.tuning.results`` reads the same reports
through Ray's ``ResultGrid`` (remote storage too) and scores them with :func:`best_of` /
:func:`epochs_of`.

Usage::

    from asr_tune.tuning.folder import read_folder
    folder = read_folder("runs/search/ci_search_tiny")
    folder.state["config"]["search"]["searcher"], [t.trial_id for t in folder.trials]
"""
from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from asr_tune.space_spec import ParamSpec, trial_overrides

log = logging.getLogger(__name__)

STATE_FILE = "asr_tune_search.json"
"""asr-tune's own state next to Ray's: the search's name and base config (``asr-tune resume``)."""
RECORDED_TIME_KEY = "recorded_time_this_iter_s"
"""Metric a replayed trial reports: the recorded seconds of the epoch it replays (compute)."""
WALL_TIME_KEY = "report_time"
"""Optional precise wall-clock time (``time.time()``) of a report; orders events exactly."""


@dataclass
class TrialFolder:
    """One trial as Ray wrote it: id, creation index, folder, decoded overrides, reports, status."""

    trial_id: str
    index: int
    path: str
    config: dict[str, Any]
    history: pd.DataFrame
    status: str = "TERMINATED"
    error: str | None = None


@dataclass
class ExperimentFolder:
    path: Path
    state: dict[str, Any]  # asr_tune_search.json ({} when absent)
    trials: list[TrialFolder] = field(default_factory=list)

    @property
    def config(self) -> dict[str, Any]:
        cfg = self.state.get("config")
        return cfg if isinstance(cfg, dict) else {}

    @property
    def max_epochs(self) -> int:
        """Reports in one full-length trial: ``max_steps / report_every_steps`` with step-based
        report rounds, else ``trainer.max_epochs`` of the base config, else the most any trial ran."""
        t = self.config.get("trainer") or {}
        if t.get("report_every_steps") and t.get("max_steps"):
            return math.ceil(int(t["max_steps"]) / int(t["report_every_steps"]))
        return int(t.get("max_epochs") or max([epochs_of(t.history) for t in self.trials], default=0))


def read_json(path: Path) -> Any:
    """The parsed JSON file, or None when it is missing or not JSON."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def read_folder(path: str | Path) -> ExperimentFolder:
    """Every trial of the experiment folder ``path`` (``ValueError`` if it is not a directory)."""
    root = Path(path).expanduser().resolve()
    if not root.is_dir():
        raise ValueError(f"{root}: not a directory")
    state = read_json(root / STATE_FILE)
    state = state if isinstance(state, dict) else {}
    cfg = state.get("config") if isinstance(state.get("config"), dict) else {}
    space = (cfg.get("search") or {}).get("space") or {}
    statuses = _statuses(root)
    tune_state = ray_trial_states(root)
    dirs = [d for d in sorted(root.iterdir()) if is_trial_dir(d)]
    trials = [read_trial(d, space, statuses, tune_state.get(d.name, {})) for d in dirs]
    trials.sort(key=lambda t: (t.index, t.trial_id))
    return ExperimentFolder(path=root, state=state, trials=trials)


def is_trial_dir(d: Path) -> bool:
    return d.is_dir() and ((d / "result.json").is_file() or (d / "progress.csv").is_file())


def ray_trial_states(root: Path) -> dict[str, dict[str, Any]]:
    """Per trial folder name: Ray's saved trial state from the newest ``experiment_state-*.json``
    (``trial_id``, ``experiment_tag``, ``status``, ...), plus ``order`` (creation order)."""
    files = sorted(root.glob("experiment_state-*.json"))
    data = read_json(files[-1]) if files else None
    entries = data.get("trial_data") if isinstance(data, dict) else None
    out: dict[str, dict[str, Any]] = {}
    for order, entry in enumerate(entries if isinstance(entries, list) else []):
        try:
            st = json.loads(entry[0]) if isinstance(entry[0], str) else entry[0]
        except (ValueError, TypeError, IndexError, KeyError):
            continue
        if isinstance(st, dict) and st.get("relative_logdir"):
            out[str(st["relative_logdir"])] = {**st, "order": order}
    return out


def _statuses(root: Path) -> dict[str, dict[str, Any]]:
    """Status/error per trial id from the search's ``results.csv`` (if written)."""
    try:
        table = pd.read_csv(root / "results.csv")
    except (OSError, ValueError, pd.errors.EmptyDataError):
        return {}
    out = {}
    for row in table.to_dict("records"):
        if "trial_id" in row:
            out[str(row["trial_id"])] = row
    return out


def read_history(trial_dir: Path) -> pd.DataFrame:
    """A trial's reported results, one row per report (``result.json``, else ``progress.csv``)."""
    rows: list[dict[str, Any]] = []
    try:
        text = (trial_dir / "result.json").read_text()
    except OSError:
        text = ""
    bad: list[int] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        try:
            item = json.loads(line)
        except ValueError:
            bad.append(lineno)  # a line cut short by a crash, or a damaged file: said below
            continue
        if isinstance(item, dict):
            item.pop("config", None)
            rows.append(item)
    try:
        csv = pd.read_csv(trial_dir / "progress.csv")
    except (OSError, ValueError, pd.errors.EmptyDataError):
        csv = pd.DataFrame()
    if bad:
        use_csv = len(csv) > len(rows)
        log.warning("%s:%d: truncated or corrupt (%d unreadable line(s)); this trial's history is %s",
                    trial_dir / "result.json", bad[0], len(bad),
                    f"read from progress.csv ({len(csv)} reports)" if use_csv
                    else f"incomplete ({len(rows)} readable report(s))")
        if use_csv:
            return csv
    return pd.DataFrame(rows) if rows else csv


def trial_index(trial_id: str, tune_state: dict[str, Any]) -> int:
    """The trial's creation counter: the leading number of Ray's ``experiment_tag``
    (``"3_optim.lr=0.001"``), else the counter that ends a basic-variant trial id
    (``"abcde_00003"``), else 0."""
    tag = str(tune_state.get("experiment_tag") or "")
    head = tag.split("_", 1)[0]
    if head.isdigit():
        return int(head)
    tail = trial_id.rsplit("_", 1)[-1]
    return int(tail) if tail.isdigit() else 0


def read_trial(d: Path, space: dict[str, Any], statuses: dict[str, dict[str, Any]] | None = None,
               tune_state: dict[str, Any] | None = None) -> TrialFolder:
    """One trial folder: reports sorted by iteration, overrides decoded with ``space``, status."""
    tune_state = tune_state or {}
    hist = read_history(d)
    if "trial_id" in hist and len(hist):
        trial_id = str(hist["trial_id"].iloc[0])
    else:
        trial_id = str(tune_state.get("trial_id") or d.name)
    if "training_iteration" not in hist:
        hist["training_iteration"] = range(1, len(hist) + 1)
    hist = hist.sort_values("training_iteration", kind="stable").reset_index(drop=True)
    row = (statuses or {}).get(trial_id, {})
    error = row.get("error") if isinstance(row.get("error"), str) else None
    status = str(row.get("status") or "")
    if not status:
        status = "ERROR" if (d / "error.txt").exists() or (d / "error.pkl").exists() else "TERMINATED"
    if status == "ERROR" and error is None:
        error = _last_line(d / "error.txt")
    return TrialFolder(trial_id=trial_id, index=trial_index(trial_id, tune_state), path=str(d),
                       config=trial_params(d, space), history=hist, status=status, error=error)


def _last_line(path: Path) -> str | None:
    try:
        lines = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return None
    return lines[-1][:300] if lines else None


def trial_params(d: Path, space: dict[str, Any]) -> dict[str, Any]:
    """The trial's dotted overrides (``params.json`` decoded like the search's results table)."""
    params = read_json(d / "params.json")
    if not isinstance(params, dict):
        return {}
    try:
        specs = {k: ParamSpec.model_validate(v) for k, v in space.items()} if space else None
        return trial_overrides(params, specs)
    except Exception as err:  # a space this version cannot parse: keep the raw values
        log.debug("%s: cannot decode params with the search space (%s)", d, err)
        return {k: v for k, v in params.items() if not str(k).startswith("_")}


def best_of(history: pd.DataFrame, metric: str, mode: str = "min") -> float | None:
    """The best reported value of ``metric`` (None if never reported)."""
    if metric not in history:
        return None
    col = pd.to_numeric(history[metric], errors="coerce").dropna()
    if not len(col):
        return None
    return float(col.min() if mode == "min" else col.max())


def epochs_of(history: pd.DataFrame) -> int:
    """Iterations (epochs or report intervals) a trial ran: the largest ``training_iteration``."""
    if not len(history) or "training_iteration" not in history:
        return 0
    return int(pd.to_numeric(history["training_iteration"], errors="coerce").max())


def check_resumable(exp_dir: Path) -> None:
    """Before Ray starts: Tune's ``tuner.pkl`` must be a complete pickle (walked opcode by opcode
    with ``pickletools``, nothing executed) and every ``experiment_state-*.json`` must parse; a
    truncated or corrupt file is one ``SearchError`` naming it."""
    import pickletools

    from asr_tune.errors import SearchError

    tuner = exp_dir / "tuner.pkl"
    if tuner.is_file():
        try:
            ops = list(pickletools.genops(tuner.read_bytes()))
        except Exception as err:  # ValueError / EOF-style messages from a cut-short stream
            raise SearchError(f"{tuner}: truncated or corrupt ({err}); this experiment cannot be resumed") from None
        if not ops or ops[-1][0].name != "STOP":
            raise SearchError(f"{tuner}: truncated (no pickle STOP opcode); this experiment cannot be resumed")
    for state in sorted(exp_dir.glob("experiment_state-*.json")):
        try:
            json.loads(state.read_text(errors="strict"))
        except (ValueError, UnicodeDecodeError) as err:
            raise SearchError(f"{state}: corrupt experiment state ({err}); this experiment cannot be "
                              "resumed") from None
