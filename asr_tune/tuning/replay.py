"""Tabular searcher benchmark: record a grid of real learning curves once, replay it through Ray Tune.

``record_grid`` runs every point of a small discrete grid (e.g. ``optim.lr x model.num_layers x
model.d_model``) as a real ``asr-tune search`` with the ``grid`` searcher (real trainings, every
epoch's metrics and seconds kept) and writes the curves to JSON. ``run_replay`` then runs any
registered searcher through real Ray Tune -- the registry's own ``search_alg``/``scheduler`` from
``build_search`` -- with a trainable that looks the sampled config up in the grid (continuous
samples snapped to the nearest grid point) and reports its recorded curve epoch by epoch (with a
checkpoint per epoch for the pausing schedulers, so a paused trial resumes where it stopped).
Nothing is trained: compute is counted in trial-epochs and in the recorded seconds
(``recorded_time_this_iter_s``). Population-based searchers (pbt, pb2) are not replayable.

Usage::

    from asr_tune.tuning.replay import load_grid, run_replay
    grid = load_grid("benchmarks/data/synth_grid.json")
    exp_dir = run_replay(grid, "asha", seed=0, budget_epochs=60, storage="/tmp/replay")
    # then asr_tune.report.load_experiment(exp_dir) / asr-tune report EXP_DIR
"""
from __future__ import annotations

import json
import logging
import math
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from asr_tune.tuning.folder import RECORDED_TIME_KEY, STATE_FILE, WALL_TIME_KEY, read_folder

GRID_FORMAT = "asr_tune.replay_grid/1"
POPULATION_BASED = ("pbt", "pb2")
NOT_REPLAYABLE = {name: ("population-based: an exploit switches a running trial to another "
                         "config, for which the table has no curve; and the registry refuses to "
                         "mutate the shape-changing model.* axes of this grid")
                  for name in POPULATION_BASED}


@dataclass
class RecordedGrid:
    """Learning curves of every point of a discrete grid (see ``record_grid``)."""

    axes: dict[str, list[Any]]
    max_epochs: int
    points: list[dict[str, Any]]  # {"config": {key: value}, "curve": [{"val_wer": .., ...}, ...]}
    scales: dict[str, str] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for key, values in self.axes.items():
            self.scales.setdefault(key, default_scale(values))
        self._index = {self._key(p["config"]): i for i, p in enumerate(self.points)}

    def _key(self, config: Mapping[str, Any]) -> tuple:
        return tuple(_canon(config[k]) for k in self.axes)

    def snap(self, overrides: Mapping[str, Any]) -> dict[str, Any]:
        """The grid point nearest to ``overrides`` (per axis; log distance on log axes)."""
        out = {}
        for key, values in self.axes.items():
            if key not in overrides:
                raise KeyError(f"replay: the trial config has no value for grid axis '{key}'")
            out[key] = nearest(values, overrides[key], self.scales[key])
        return out

    def index_of(self, overrides: Mapping[str, Any]) -> int:
        snapped = self.snap(overrides)
        try:
            return self._index[self._key(snapped)]
        except KeyError:
            raise KeyError(f"replay: grid point {snapped} was not recorded") from None

    def curve(self, overrides: Mapping[str, Any]) -> list[dict[str, Any]]:
        return self.points[self.index_of(overrides)]["curve"]

    def optimum(self, metric: str, mode: str = "min") -> float:
        """Best value of ``metric`` over every point and epoch (what a search could reach)."""
        vals = [r[metric] for p in self.points for r in p["curve"] if _finite(r.get(metric))]
        return min(vals) if mode == "min" else max(vals)

    def spread(self, metric: str) -> float:
        """Range of the per-point best ``metric`` (0 = the metric cannot tell points apart)."""
        bests = [min(r[metric] for r in p["curve"] if _finite(r.get(metric)))
                 for p in self.points if any(_finite(r.get(metric)) for r in p["curve"])]
        return max(bests) - min(bests) if bests else 0.0

    def total_epochs(self) -> int:
        return sum(len(p["curve"]) for p in self.points)

    def to_dict(self) -> dict[str, Any]:
        return {"format": GRID_FORMAT, "meta": self.meta, "axes": self.axes, "scales": self.scales,
                "max_epochs": self.max_epochs, "points": self.points}

    def save(self, path: str | Path) -> Path:
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps(self.to_dict(), indent=1) + "\n")
        return p


def load_grid(path: str | Path) -> RecordedGrid:
    d = json.loads(Path(path).read_text())
    if d.get("format") != GRID_FORMAT:
        raise ValueError(f"{path}: not a recorded grid ({GRID_FORMAT}), format={d.get('format')!r}")
    return RecordedGrid(axes=d["axes"], max_epochs=int(d["max_epochs"]), points=d["points"],
                        scales=d.get("scales") or {}, meta=d.get("meta") or {})


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v)


def _canon(v: Any) -> Any:
    return round(float(v), 12) if isinstance(v, (int, float)) and not isinstance(v, bool) else v


def default_scale(values: list[Any]) -> str:
    nums = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
    if len(nums) != len(values) or not nums:
        return "categorical"
    return "log" if min(nums) > 0 and max(nums) / min(nums) >= 8 else "linear"


def nearest(values: list[Any], value: Any, scale: str) -> Any:
    if scale == "categorical" or isinstance(value, str):
        for v in values:
            if v == value:
                return v
        raise KeyError(f"replay: {value!r} is not one of {values}")
    f = (lambda x: math.log(float(x))) if scale == "log" else float
    return min(values, key=lambda v: abs(f(v) - f(value)))


# ----------------------------------------------------------------------------- search space


def replay_space(grid: RecordedGrid, searcher: str) -> dict[str, Any]:
    """A search space over the grid that ``searcher`` accepts (as ``ParamSpec`` dicts).

    ``choice`` over the recorded values wherever the searcher takes it; otherwise (bayesopt: GP
    over continuous ranges) ``loguniform``/``uniform`` ranges whose snapping basins give every grid
    value an equal share (half a step beyond the end values).
    """
    from asr_tune.tuning.registry import searcher_info

    if searcher in NOT_REPLAYABLE:
        raise ValueError(f"searcher '{searcher}' cannot be replayed: {NOT_REPLAYABLE[searcher]}")
    types = searcher_info(searcher).param_types
    space: dict[str, Any] = {}
    for key, values in grid.axes.items():
        scale = grid.scales[key]
        if "choice" in types or scale == "categorical":
            space[key] = {"type": "choice", "values": list(values)}
        elif scale == "log" and "loguniform" in types:
            lo, hi = _half_step(values, log=True)
            space[key] = {"type": "loguniform", "low": lo, "high": hi}
        else:
            lo, hi = _half_step(values, log=False)
            space[key] = {"type": "uniform", "low": lo, "high": hi}
    return space


def _half_step(values: list[Any], log: bool) -> tuple[float, float]:
    v = sorted(float(x) for x in values)
    if len(v) == 1:
        return (v[0] / 1.5, v[0] * 1.5) if log else (v[0] - 0.5, v[0] + 0.5)
    if log:
        return v[0] / math.sqrt(v[1] / v[0]), v[-1] * math.sqrt(v[-1] / v[-2])
    return v[0] - (v[1] - v[0]) / 2, v[-1] + (v[-1] - v[-2]) / 2


# ----------------------------------------------------------------------------- the trainable


PAUSING = ("hyperband", "bohb")
"""Schedulers that pause and resume trials: replayed trials checkpoint every epoch for them."""


def curve_reporter(curve_of: Callable[[dict[str, Any]], list[dict[str, Any]]],
                   keys: tuple[str, ...], checkpoint: bool = True) -> Callable[[dict[str, Any]], None]:
    """A Tune function trainable reporting ``curve_of(overrides)`` one epoch per ``tune.report``,
    with (``checkpoint=True``) a checkpoint holding the epoch, so that a paused or restored trial
    continues from it."""

    def trainable(config: dict[str, Any]) -> None:
        from ray import tune

        from asr_tune.tuning.space import trial_overrides

        curve = curve_of(trial_overrides(config))
        start = 0
        ckpt = tune.get_checkpoint()
        if ckpt is not None:
            with ckpt.as_directory() as d:
                start = int(json.loads((Path(d) / "replay.json").read_text())["epoch"])
        for epoch in range(start + 1, len(curve) + 1):
            row = curve[epoch - 1]
            metrics = {k: float(row[k]) for k in keys if _finite(row.get(k))}
            metrics.update(epoch=epoch, **{RECORDED_TIME_KEY: float(row.get("time_this_iter_s", 0.0)),
                                           WALL_TIME_KEY: time.time()})
            if not checkpoint:
                tune.report(metrics)
                continue
            with tempfile.TemporaryDirectory(prefix="asr_tune_replay_") as d:
                (Path(d) / "replay.json").write_text(json.dumps({"epoch": epoch}))
                tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(d))

    return trainable


def grid_trainable(grid: RecordedGrid, checkpoint: bool = True) -> Callable[[dict[str, Any]], None]:
    keys = tuple(sorted({k for p in grid.points for r in p["curve"] for k in r
                         if k in ("val_wer", "val_loss", "train_loss")}))
    return curve_reporter(grid.curve, keys, checkpoint)


# ----------------------------------------------------------------------------- one replayed search


def budget_stopper(budget: int) -> Any:
    """A ``tune.Stopper`` that ends the whole experiment after ``budget`` reported trial-epochs."""
    from ray.tune.stopper import Stopper

    class BudgetStopper(Stopper):
        def __init__(self) -> None:
            self.budget, self.seen = int(budget), set()

        def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
            # distinct (trial, iteration): a finished function trial re-sends its last result
            self.seen.add((trial_id, result.get("training_iteration")))
            return False

        def stop_all(self) -> bool:
            return len(self.seen) >= self.budget

    return BudgetStopper()


def build_plan(search_cfg: Any, max_t: int, max_concurrent: int) -> tuple[Any, dict[str, Any]]:
    """The registry's plan with at most ``max_concurrent`` unfinished trials (0 = no cap), plus
    extra ``TuneConfig`` kwargs (none when the registry builds the cap into the search algorithm)."""
    import inspect

    from asr_tune.tuning.registry import build_search

    if "max_concurrent" in inspect.signature(build_search).parameters:
        return build_search(search_cfg, max_t=max_t, max_concurrent=max_concurrent), {}
    from ray.tune.search import ConcurrencyLimiter

    plan = build_search(search_cfg, max_t=max_t)
    limited = isinstance(plan.search_alg, ConcurrencyLimiter)
    return plan, {"max_concurrent_trials": None if limited or not max_concurrent else max_concurrent}


def run_replay(grid: RecordedGrid, searcher: str, seed: int, budget_epochs: int, storage: str | Path,
               name: str | None = None, metric: str = "val_wer", num_samples: int | None = None,
               max_concurrent: int = 0, parallel: int = 2, options: dict[str, Any] | None = None,
               base_config: Any = None, trainable_factory: Callable[[Any], Any] | None = None,
               resources: dict[str, float] | None = None) -> Path:
    """Run ``searcher`` (registry plan, seed ``seed``) on the grid's space until ``budget_epochs``
    trial-epochs were reported; returns the experiment folder (readable by ``load_experiment``).

    ``parallel`` trials run at once (each gets ``cluster CPUs / parallel``); ``max_concurrent`` caps
    unfinished trials as in ``build_search`` (0 = the registry default). ``trainable_factory(cfg)``
    replaces the grid lookup: live trainings (``run_trial``) or, in tests, a live curve function.
    """
    import ray
    from ray import tune

    from asr_tune.config import ExperimentConfig

    if not ray.is_initialized():
        ray.init(num_cpus=max(2, parallel), include_dashboard=False, log_to_driver=False,
                 configure_logging=False)
    n = num_samples or max(4, budget_epochs)  # trials never run out before the budget does
    cfg = (base_config or ExperimentConfig()).with_overrides({
        "trainer.max_epochs": grid.max_epochs, "search.searcher": searcher, "search.seed": seed,
        "search.metric": metric, "search.mode": "min", "search.num_samples": n,
        "search.space": replay_space(grid, searcher), "search.options": options or {},
        "search.evaluate_best_on_test": False}, source="replay")
    plan, tc_extra = build_plan(cfg.search, grid.max_epochs, max_concurrent)
    name = name or f"replay_{searcher}_seed{seed}"
    storage_path = str(Path(storage).expanduser().resolve())
    exp_dir = Path(storage_path) / name
    exp_dir.mkdir(parents=True, exist_ok=True)
    (exp_dir / STATE_FILE).write_text(json.dumps({
        "name": name, "config": cfg.to_dict(),
        "replay": {"grid": grid.meta.get("path"), "budget_epochs": budget_epochs, "seed": seed,
                   "parallel": parallel, "live": trainable_factory is not None,
                   "notes": plan.notes}}, indent=1))
    fn = trainable_factory(cfg) if trainable_factory else grid_trainable(grid, searcher in PAUSING)
    cpus = float(ray.cluster_resources().get("CPU", parallel))
    tuner = tune.Tuner(
        tune.with_resources(fn, resources or {"cpu": cpus / max(1, parallel)}),
        param_space=plan.param_space,
        tune_config=tune.TuneConfig(**plan.tune_config_kwargs(), **tc_extra,
                                    reuse_actors=True),
        run_config=tune.RunConfig(name=name, storage_path=storage_path, verbose=0,
                                  stop=budget_stopper(budget_epochs) if budget_epochs else None))
    # pending trials that the budget stop never started have no results; a resumed (paused) trial
    # makes Tune look for a result.json that is not synced yet: both only warn, data are complete
    quiet = [logging.getLogger(n) for n in ("ray.tune.analysis.experiment_analysis",
                                            "ray.tune.logger.logger")]
    levels = [q.level for q in quiet]
    for q in quiet:
        q.setLevel(logging.ERROR)
    try:
        tuner.fit()
    finally:
        for q, lv in zip(quiet, levels):
            q.setLevel(lv)
    return exp_dir


# ----------------------------------------------------------------------------- recording


CURVE_KEYS = ("val_wer", "val_loss", "train_loss", "time_this_iter_s", "n_params")


def record_grid(config: str | Path, axes: dict[str, list[Any]], overrides: Mapping[str, Any],
                storage: str | Path, name: str, meta: dict[str, Any] | None = None) -> RecordedGrid:
    """Train every grid point for real (``asr-tune search`` with the ``grid`` searcher, early
    stopping off) and return the recorded curves; ``ValueError`` if a point has no full curve.

    Resumable: when ``storage/name`` already holds that search (a killed recording), it is resumed
    (``asr-tune resume``): finished points are kept, unfinished ones continue from their checkpoint.
    """
    from asr_tune.tuning.runner import resume, search

    ov = {**dict(overrides), "search.searcher": "grid", "trainer.early_stopping_patience": 0,
          "search.evaluate_best_on_test": False, "search.quantize_top_k": 0,
          "search.space": {k: {"type": "grid", "values": list(v)} for k, v in axes.items()}}
    start = time.time()
    exp_dir = Path(storage).expanduser().resolve() / name
    if (exp_dir / STATE_FILE).is_file() and any(exp_dir.glob("experiment_state*.json")):
        logging.getLogger(__name__).warning("record_grid: resuming the recording in %s", exp_dir)
        res = resume(exp_dir)
    else:
        res = search(config, searcher="grid", storage=str(storage), name=name, overrides=ov)
    exp = read_folder(res.experiment_dir)
    points, bad = [], []
    for t in exp.trials:
        curve = [{k: _num(r.get(k)) for k in ("epoch",) + CURVE_KEYS if k in r}
                 for r in t.history.to_dict("records")]
        if t.status == "ERROR" or len(curve) < exp.max_epochs:
            bad.append(f"{t.config}: {t.status}, {len(curve)} epochs ({t.error})")
        points.append({"config": {k: t.config[k] for k in axes}, "trial_id": t.trial_id,
                       "curve": curve})
    if bad:
        raise ValueError("record_grid: incomplete grid points: " + "; ".join(bad))
    info = {**(meta or {}), "experiment_dir": str(exp.path), "record_wall_s": time.time() - start,
            "base_config": exp.config}
    return RecordedGrid(axes={k: list(v) for k, v in axes.items()}, max_epochs=exp.max_epochs,
                        points=sorted(points, key=lambda p: [_canon(p["config"][k]) for k in axes]),
                        meta=info)


def _num(v: Any) -> Any:
    if hasattr(v, "item") and callable(v.item) and getattr(v, "ndim", 1) == 0:
        v = v.item()
    return v if not isinstance(v, float) or math.isfinite(v) else None
