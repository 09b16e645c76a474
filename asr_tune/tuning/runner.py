"""``search()`` / ``resume()``: run a Ray Tune search of ASR trials and collect its results.

Usage::

    asr-tune search configs/synth_asha.yaml                       # local Ray, embedded default
    asr-tune search configs/fsdd_digits_asha.yaml --searcher bohb --num-samples 16
    asr-tune search configs/synth_asha.yaml --address ray://head:10001 --storage s3://bucket/exp
    asr-tune resume runs/search/synth_asha                        # after a crash or a kill

    >>> import asr_tune
    >>> res = asr_tune.search("configs/synth_asha.yaml", searcher="tpe")
    >>> res.best_val_wer, res.best_checkpoint, res.table.head()

Everything that can be checked is checked before the first trial starts: the searcher and its
options, the space against the searcher, parameter bounds, resources against the cluster, the storage
path, and the corpus (built if it is the embedded default, validated otherwise).
"""
from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from asr_tune.config import ExperimentConfig, config_from_dict, load_config, parse_override
from asr_tune.errors import SearchError
from asr_tune.textfile import read_utf8
from asr_tune.tuning.folder import STATE_FILE  # the experiment folder's asr-tune state file

log = logging.getLogger(__name__)


@dataclass
class SearchResult:
    experiment_dir: str
    searcher: str
    best_config: dict[str, Any]
    best_overrides: dict[str, Any]
    best_val_wer: float | None  # a WER (for metric val_loss: the best checkpoint's val WER)
    best_checkpoint: str | None
    test: dict | None
    table: Any  # pandas.DataFrame: one row per trial
    wall_s: float
    dashboard_url: str | None = None
    quantized: list[dict] = field(default_factory=list)
    metric: str = "val_wer"  # search.metric; best_value is its best value (best_val_wer: a WER)
    best_value: float | None = None

    def summary(self) -> str:
        t = self.table
        lines = [f"experiment: {self.experiment_dir}", f"searcher: {self.searcher}, trials: {len(t)} "
                 f"({', '.join(f'{k}={v}' for k, v in t['status'].value_counts().items())})",
                 f"best val WER: {self.best_val_wer:.2f}%  overrides: {json.dumps(self.best_overrides)}"
                 if self.metric == "val_wer" else
                 f"best {self.metric}: {self.best_value:.4g} (val WER at that checkpoint: "
                 f"{'n/a' if self.best_val_wer is None else f'{self.best_val_wer:.2f}%'})  "
                 f"overrides: {json.dumps(self.best_overrides)}"]
        if self.test:
            lines.append(f"best model test WER: {self.test['wer']:.2f}% on {self.test['n_utts']} utterances")
        if self.best_checkpoint:
            lines.append(f"best checkpoint: {self.best_checkpoint}")
        if self.dashboard_url:
            lines.append(f"Ray dashboard: {self.dashboard_url}")
        lines.append(f"wall time: {self.wall_s:.0f} s")
        return "\n".join(lines)


def _absolute_data_paths(cfg: ExperimentConfig) -> ExperimentConfig:
    """Trials run in other working directories: pin every data path to an absolute one."""
    upd: dict[str, Any] = {k: str(Path(getattr(cfg.data, k)).resolve()) for k in ("train", "dev", "test")}
    upd["train_mix"] = [m.model_copy(update={"path": str(Path(m.path).resolve())}) for m in cfg.data.train_mix]
    feats = cfg.features
    if feats.cache_dir:
        feats = feats.model_copy(update={"cache_dir": str(Path(feats.cache_dir).resolve())})
    return cfg.model_copy(update={"data": cfg.data.model_copy(update=upd), "features": feats})


def check_storage(storage: str) -> str:
    """A local dir we can write, or a pyarrow filesystem URI that resolves; returns the URI/path."""
    if "://" in storage:
        try:
            import pyarrow.fs as pafs

            fs, path = pafs.FileSystem.from_uri(storage)
            fs.create_dir(path, recursive=True)
        except Exception as err:
            raise SearchError(f"search.storage={storage!r}: cannot use this filesystem URI ({err})") from None
        return storage
    path = Path(storage).expanduser().resolve()
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".asr_tune_write_test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as err:
        raise SearchError(f"search.storage={storage!r}: not writable ({err.strerror})") from None
    return str(path)


def _check_data(cfg: ExperimentConfig) -> int:
    """Validate every split and build the base config's feature cache once, before any trial
    (trials with other feature settings build theirs under a lock); returns the report budget."""
    from asr_tune.data.datamodule import validated_rows
    from asr_tune.training.run import ensure_corpus, prepare, report_budget

    ensure_corpus(cfg)
    for split in ("train", "dev", "test"):
        validated_rows(getattr(cfg.data, split), cfg.data, split)
    return report_budget(cfg, prepare(cfg))


def _init_ray(address: str | None, min_cpus: float = 1.0) -> str | None:
    """Connect to ``address``, or start a fresh local Ray (never attach to another one by accident).

    A local Ray gets at least the logical CPUs one trial's gang needs (a 2-worker DDP trial plus its
    driver on a 2-core laptop), so a search that runs on a cluster also runs, slower, locally.
    """
    import math

    import ray

    if ray.is_initialized():
        ctx = None
    else:
        kwargs: dict[str, Any] = {"address": address} if address else {
            "address": "local", "include_dashboard": True,
            "num_cpus": max(os.cpu_count() or 1, math.ceil(min_cpus))}
        try:
            ctx = ray.init(log_to_driver=True, configure_logging=False, **kwargs)
        except (ConnectionError, RuntimeError) as err:
            raise SearchError(f"cannot connect to Ray at {address!r}: {err}") from None
    url = getattr(ctx, "dashboard_url", None) if ctx is not None else None
    return f"http://{url}" if url and not url.startswith("http") else url


def _trainable(cfg: ExperimentConfig):
    from ray import tune

    from asr_tune.tuning.placement import placement_group_factory
    from asr_tune.tuning.trial import run_trial

    return tune.with_resources(tune.with_parameters(run_trial, base=cfg.to_dict()),
                               placement_group_factory(cfg.resources))


def search(config: str | Path | ExperimentConfig, searcher: str | None = None, address: str | None = None,
           num_samples: int | None = None, storage: str | None = None, name: str | None = None,
           overrides: list[str] | dict[str, Any] | None = None) -> SearchResult:
    """Run a search; arguments given here override ``search.*`` fields of the config."""
    from ray import tune

    from asr_tune.tuning.placement import ClusterShape, check_feasible, max_concurrent, trial_bundles
    from asr_tune.tuning.registry import FILL_BRACKETS, build_search

    if isinstance(config, ExperimentConfig):
        cfg = config
        if overrides:
            items = overrides.items() if isinstance(overrides, dict) else map(parse_override, overrides)
            cfg = cfg.with_overrides(dict(items), source="search overrides")
    else:
        cfg = load_config(config, overrides)
    upd = {k: v for k, v in dict(searcher=searcher, num_samples=num_samples, storage=storage,
                                 name=name).items() if v is not None}
    cfg = cfg.with_overrides({f"search.{k}": v for k, v in upd.items()}, source="search arguments")
    cfg = _absolute_data_paths(cfg)
    s = cfg.search
    plan = preflight(cfg)  # searcher, options, space: fail early (``submit`` runs the same)
    storage_path = check_storage(s.storage)
    exp_name = s.name or f"{s.searcher}_{time.strftime('%Y%m%d-%H%M%S')}"
    budget = _check_data(cfg)
    dashboard = _init_ray(address, sum(b.get("CPU", 0) for b in trial_bundles(cfg.resources)))
    cluster = ClusterShape.from_ray()
    check_feasible(cfg.resources, cluster)
    concurrency = concurrency_cap(s, max_concurrent(cfg.resources, cluster))
    # single-worker trials wait for their placement group, so no cap is needed for HyperBand to
    # see whole brackets; multi-worker trials keep it (their worker gangs are placed outside Tune)
    uncapped = s.searcher in FILL_BRACKETS and cfg.resources.strategy == "single"
    plan = build_search(s, max_t=budget, max_concurrent=0 if uncapped else concurrency)
    exp_dir = _experiment_dir(storage_path, exp_name)
    _write_state(exp_dir, cfg, exp_name)
    log.info("search %s: %s, %d samples, %d concurrent trial(s) on %g CPU / %g GPU", exp_name, s.searcher,
             plan.num_samples, concurrency, cluster.total_cpu, cluster.total_gpu)
    if dashboard:
        print(f"Ray dashboard: {dashboard}", flush=True)
    start = time.perf_counter()
    tuner = tune.Tuner(
        _trainable(cfg), param_space=plan.param_space,
        tune_config=tune.TuneConfig(
            metric=s.metric, mode=s.mode, search_alg=plan.search_alg, scheduler=plan.scheduler,
            num_samples=plan.num_samples, max_concurrent_trials=None if uncapped else concurrency,
            time_budget_s=s.time_budget_s or None,
            reuse_actors=True),  # saves the torch/Lightning import per trial (see benchmarks)
        run_config=_run_config(cfg, storage_path, exp_name))
    grid = tuner.fit()
    return finish(exp_dir, cfg, grid, time.perf_counter() - start, dashboard)


def preflight(cfg: ExperimentConfig) -> Any:
    """The searcher, its options and the space checked against each other without Ray running:
    unknown searcher, a space the searcher cannot take (``bayesopt`` with a choice, PBT mutating
    ``model.*``). ``search`` and ``submit`` (before contacting the head) both call it."""
    from asr_tune.training.run import report_budget
    from asr_tune.tuning.registry import build_search

    return build_search(cfg.search, max_t=report_budget(cfg))


def concurrency_cap(s: Any, cluster_cap: int) -> int:
    """Unfinished trials at a time: the searcher's own ``max_concurrent`` option when set, else what
    fits the cluster. The one value goes to both ``build_search`` and ``TuneConfig``, so Tune neither
    rejects tpe/bayesopt's ``ConcurrencyLimiter`` nor overwrites bohb/rl's cap with another."""
    from asr_tune.tuning.registry import parse_options

    return getattr(parse_options(s.searcher, s.options.get(s.searcher) or {}), "max_concurrent", 0) \
        or cluster_cap


def _run_config(cfg: ExperimentConfig, storage_path: str, name: str):
    from ray import tune

    from asr_tune.tuning.progress import CompactProgress

    return tune.RunConfig(
        name=name, storage_path=storage_path,
        failure_config=tune.FailureConfig(max_failures=cfg.search.max_failures),
        # kept by score, so best/ is the best report's checkpoint; Tune also always keeps the
        # latest (resume, pause). PBT/PB2 restore donors' latest checkpoints: keep them all.
        checkpoint_config=tune.CheckpointConfig(
            num_to_keep=None if cfg.search.searcher in ("pbt", "pb2") else 2,
            checkpoint_score_attribute=cfg.search.metric, checkpoint_score_order=cfg.search.mode),
        verbose=0, callbacks=[CompactProgress(cfg.search.metric, cfg.search.mode)])  # one line a report


def _experiment_dir(storage_path: str, name: str) -> str:
    return f"{storage_path.rstrip('/')}/{name}"


def _write_state(exp_dir: str, cfg: ExperimentConfig, name: str) -> None:
    """Store the base config next to Ray's own experiment state, so ``resume`` can rebuild it."""
    state = json.dumps({"name": name, "config": cfg.to_dict()}, indent=1)
    if "://" in exp_dir:
        import pyarrow.fs as pafs

        fs, path = pafs.FileSystem.from_uri(exp_dir)
        fs.create_dir(path, recursive=True)
        with fs.open_output_stream(f"{path}/{STATE_FILE}") as fh:
            fh.write(state.encode())
        return
    Path(exp_dir).mkdir(parents=True, exist_ok=True)
    (Path(exp_dir) / STATE_FILE).write_text(state)


def resume(experiment_dir: str | Path, address: str | None = None) -> SearchResult:
    """Continue an interrupted search: finished trials are kept, unfinished ones resumed."""
    from ray import tune

    from asr_tune.tuning.placement import trial_bundles

    exp_dir = str(experiment_dir)
    if "://" not in exp_dir:  # pyarrow (Tune's storage) takes absolute local paths only
        exp_dir = str(Path(exp_dir).expanduser().resolve())
    state_path = Path(exp_dir) / STATE_FILE
    if "://" not in exp_dir and not state_path.is_file():
        raise SearchError(f"{exp_dir}: not an asr-tune experiment (no {STATE_FILE})")
    if "://" in exp_dir:
        import pyarrow.fs as pafs

        fs, path = pafs.FileSystem.from_uri(exp_dir)
        with fs.open_input_stream(f"{path}/{STATE_FILE}") as fh:
            state = json.loads(fh.read().decode())
    else:
        from asr_tune.tuning.folder import check_resumable

        try:
            state = json.loads(read_utf8(state_path, SearchError))
        except ValueError as err:
            raise SearchError(f"{state_path}: corrupt state file ({err}); cannot resume") from None
        check_resumable(Path(exp_dir))  # tuner.pkl / Tune state truncated: say so before Ray starts
    if not isinstance(state, dict) or not isinstance(state.get("config"), dict):
        raise SearchError(f"{exp_dir}/{STATE_FILE}: corrupt state file (no 'config' mapping); cannot resume")
    cfg = config_from_dict(state["config"], f"{exp_dir}/{STATE_FILE}")
    if not tune.Tuner.can_restore(exp_dir):
        raise SearchError(f"{exp_dir}: Ray Tune has no restorable experiment state here")
    dashboard = _init_ray(address, sum(b.get("CPU", 0) for b in trial_bundles(cfg.resources)))
    start = time.perf_counter()
    tuner = tune.Tuner.restore(exp_dir, trainable=_trainable(cfg), resume_unfinished=True,
                               resume_errored=True, restart_errored=False)
    grid = tuner.fit()
    return finish(exp_dir, cfg, grid, time.perf_counter() - start, dashboard)


def finish(exp_dir: str, cfg: ExperimentConfig, grid: Any, wall_s: float, dashboard: str | None
           ) -> SearchResult:
    """Write the trial table, export the best checkpoint, evaluate it on test, quantize top-k."""
    from asr_tune.tuning.results import export_best, quantize_top, trial_table, write_table

    s = cfg.search
    table = trial_table(grid, s.metric, s.mode, s.space)
    local_dir = exp_dir if "://" not in exp_dir else os.path.join(cfg.trainer.output_dir, Path(exp_dir).name)
    write_table(table, local_dir)
    if table["best_" + s.metric].notna().sum() == 0:
        errors = table.loc[table["status"] == "ERROR", "error"].dropna().tolist()
        raise SearchError(f"{exp_dir}: no trial reported {s.metric}"
                          + (f"; first error: {errors[0]}" if errors else ""))
    best = export_best(grid, table, cfg, local_dir, evaluate_test=s.evaluate_best_on_test)
    result = SearchResult(exp_dir, s.searcher, best["config"], best["overrides"], best["val_wer"],
                          best["checkpoint"], best.get("test"), table, wall_s, dashboard,
                          metric=s.metric, best_value=best["best_value"])
    if s.quantize_top_k:
        result.quantized = quantize_top(grid, table, cfg, local_dir, s.quantize_top_k)
        write_table(table, local_dir)
    (Path(local_dir) / "summary.txt").write_text(result.summary() + "\n")
    return result
