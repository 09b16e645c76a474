"""Ray Tune / Ray Train overhead: the same small training run bare, as a one-trial search, as DDP.

Five measurements, taken in one process, one after the other, on the embedded synthetic corpus:

a. **bare** -- ``prepare`` + ``make_trainer`` + ``Trainer.fit`` in this process (what
   ``asr_tune.training.run.train`` does, checkpoints included), a tiny Conformer for a fixed number of
   epochs, no early stopping;
b. **tune** -- the same config as a one-trial search through ``asr_tune.tuning.runner.search``
   (searcher ``random``, empty space, ``num_samples=1``, no test evaluation). Ray is started first
   with ``ray.init`` so that its start-up is timed on its own and not charged to the trial;
c. **ddp** -- the same config as a one-trial search whose trial is a Ray Train ``TorchTrainer``
   with 2 gloo workers (``resources.strategy=ddp``, ``workers_per_trial=2``, ``cpus_per_worker=1``);
d. **no-op trials** -- Tune scheduler throughput: a function trainable that reports once,
   ``--noop-trials`` of them, with and without actor reuse;
e. **reused** -- ``--reused-trials`` identical trials of one search, one at a time, actors reused
   (as ``search()`` runs them): the spacing between consecutive trials' last reports (each report
   carries ``time.time()``) minus a second, warm bare run (feature cache built, imports done) is
   the overhead of the second and later trials.

Every process trains with ``trainer.threads`` torch threads (``--threads``, default 1): on a
shared 2-core machine two intra-op threads per process are much slower than one, and DDP's two
workers then use the two cores. Throughput (samples/s) is the steady-state rate: train utterances
per epoch divided by the shortest wall time of epochs 2..N (epoch 1 carries the start-up; the
minimum because on a shared machine other processes only ever add time), epoch = train +
validation + checkpoint. Overheads:

* Ray start-up         = ``ray.init`` (once per driver, shared by all trials of a search);
* per-trial overhead   = one-trial ``search()`` wall - bare wall (search pre-checks, actor start,
  imports in the new worker process, reporting/persisting checkpoints, result table + best export);
* its share            = per-trial overhead / ``search()`` wall; the projection to a 1-minute
  trial assumes the overhead in seconds is fixed (``--target-trial-s``).

Usage::

    python benchmarks/bench_overhead.py --help
    python benchmarks/bench_overhead.py --quick --out results/overhead          # 2-4.5 min on 2 cores
    python benchmarks/bench_overhead.py --out results/overhead                  # full: ~1-min runs, ~7 min
    python benchmarks/bench_overhead.py --quick --skip-ddp --noop-trials 8      # pieces only
    python benchmarks/bench_overhead.py --skip-ddp --skip-noop --skip-tune --epochs 8 --reused-trials 3
                                                     # later trials of a search, >= 60-s trials

Writes ``OUT/overhead.json`` (numbers + machine info), ``OUT/overhead.png`` and ``OUT/logs/``
(Ray/Lightning output of the runs); prints a table of the ratios.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

try:  # imported from the repo root or run as a script (benchmarks/ is then on sys.path)
    from benchmarks.common import (bench_parser, corpus_config, ensure_corpus, machine_info,
                                   print_footer, print_table, quiet, save_figure, silence,
                                   write_json)
except ImportError:
    from common import (bench_parser, corpus_config, ensure_corpus,  # type: ignore[no-redef]
                        machine_info, print_footer, print_table, quiet, save_figure, silence,
                        write_json)

QUICK = {"utterances": 150, "epochs": 3, "noop_trials": 8}
FULL = {"utterances": 600, "epochs": 6, "noop_trials": 32}

# A tiny Conformer-CTC: the point is the framework around it, not the model.
TINY = {
    "features.n_mels": 40, "model.d_model": 48, "model.num_layers": 2, "model.num_heads": 2,
    "model.ffn_mult": 2, "model.conv_kernel": 7, "optim.lr": 0.002, "optim.warmup_steps": 20,
    "data.batch_seconds": 30.0, "trainer.early_stopping_patience": 0, "trainer.progress_bar": False,
    "trainer.accelerator": "cpu", "trainer.precision": "32-true", "search.evaluate_best_on_test": False,
    "search.max_failures": 0,
}


# ---------------------------------------------------------------------------------------------
@dataclass
class RunTiming:
    name: str
    wall_s: float
    epochs: int
    epoch_s: list[float]
    n_train: int
    extra: dict[str, float] = field(default_factory=dict)

    @property
    def steady_epoch_s(self) -> float:
        tail = self.epoch_s[1:] or self.epoch_s
        return min(tail) if tail else float("nan")

    @property
    def samples_per_s(self) -> float:
        return self.n_train / self.steady_epoch_s if self.steady_epoch_s > 0 else float("nan")

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "steady_epoch_s": self.steady_epoch_s, "samples_per_s": self.samples_per_s}


def make_epoch_timer() -> Any:
    """A Lightning callback recording the wall time of every training epoch (incl. validation)."""
    from lightning.pytorch.callbacks import Callback

    class EpochTimer(Callback):
        def __init__(self) -> None:
            self.starts: list[float] = []
            self.times: list[float] = []

        def on_train_epoch_start(self, trainer: Any, module: Any) -> None:
            self.starts.append(time.perf_counter())

        def on_train_epoch_end(self, trainer: Any, module: Any) -> None:
            self.times.append(time.perf_counter() - self.starts[-1])

    return EpochTimer()


def base_config(corpus: Path, epochs: int, threads: int, out: Path) -> Any:
    return corpus_config(corpus, TINY, epochs, threads, {
        "trainer.output_dir": str(out / "work" / "bare"), "search.storage": str(out / "work" / "ray")})


def n_train(cfg: Any) -> int:
    from asr_tune.data.manifest import load_corpus

    return sum(1 for u in load_corpus(cfg.data.train) if u.duration <= cfg.data.max_duration)


# ---- (a) bare --------------------------------------------------------------------------------
def run_bare(cfg: Any) -> RunTiming:
    import lightning as L

    from asr_tune.training.run import make_trainer, prepare, standard_callbacks

    start = time.perf_counter()
    L.seed_everything(cfg.trainer.seed, workers=True, verbose=False)
    prep = prepare(cfg)
    out = Path(cfg.trainer.output_dir)
    timer = make_epoch_timer()
    trainer = make_trainer(cfg, standard_callbacks(cfg, out / "checkpoints") + [timer], out,
                           enable_progress_bar=False)
    trainer.fit(prep.module, datamodule=prep.datamodule)
    wall = time.perf_counter() - start
    return RunTiming("bare", wall, trainer.current_epoch, list(timer.times), len(prep.datamodule.rows["train"]))


# ---- (b, c) one-trial searches ----------------------------------------------------------------
def _trial_iterations(trial_path: str) -> list[dict[str, Any]]:
    f = Path(trial_path) / "result.json"
    if not f.is_file():
        return []
    return [json.loads(line) for line in f.read_text().splitlines() if line.strip()]


def run_search(cfg: Any, name: str, n_train_rows: int, overrides: dict[str, Any]) -> RunTiming:
    from asr_tune.tuning.runner import search

    cfg = cfg.with_overrides({**overrides, "search.name": f"{name}_{int(time.time())}"})
    start, start_abs = time.perf_counter(), time.time()
    res = search(cfg, searcher="random", num_samples=1)
    wall, end_abs = time.perf_counter() - start, time.time()
    row = res.table.iloc[0]
    if row["status"] != "TERMINATED":
        raise RuntimeError(f"{name} trial failed: {row.get('error')}")
    iters = _trial_iterations(row["path"])
    epoch_s = [float(it["time_this_iter_s"]) for it in iters]
    trial_total = float(iters[-1]["time_total_s"]) if iters else float(row["wall_s"])
    extra = {"tuner_fit_s": float(res.wall_s), "trial_time_total_s": trial_total}
    if iters:  # Tune timestamps are whole seconds: +-1 s
        extra["before_first_epoch_s"] = iters[0]["timestamp"] - iters[0]["time_this_iter_s"] - start_abs
        extra["after_last_epoch_s"] = end_abs - iters[-1]["timestamp"]
    return RunTiming(name, wall, int(row["epochs"]), epoch_s, n_train_rows, extra)


# ---- (e) later trials of a search with reused actors -------------------------------------------
def run_reused(cfg: Any, n_trials: int, bare_wall_s: float) -> dict[str, Any]:
    """``n_trials`` identical trials, one at a time, actors reused (what ``search()`` does): the
    spacing between consecutive trials' last reports is one trial's full cost (scheduling, actor
    reuse, set-up, training, reporting, checkpoint I/O); minus the bare wall = its overhead."""
    from asr_tune.tuning.folder import WALL_TIME_KEY
    from asr_tune.tuning.runner import search

    cfg = cfg.with_overrides({"search.name": f"reused_{int(time.time())}",
                              "resources.max_concurrent_trials": 1})
    start = time.time()
    res = search(cfg, searcher="random", num_samples=n_trials)
    ends, firsts = [], []
    for _, row in res.table.iterrows():
        if row["status"] != "TERMINATED":
            raise RuntimeError(f"reused trial failed: {row.get('error')}")
        iters = _trial_iterations(row["path"])
        ends.append(float(iters[-1][WALL_TIME_KEY]))
        firsts.append(float(iters[0][WALL_TIME_KEY]))
    order = sorted(range(len(ends)), key=ends.__getitem__)
    ends = [ends[i] for i in order]
    spans = [b - a for a, b in zip(ends, ends[1:])]  # trials 2..N
    over = [sp - bare_wall_s for sp in spans]
    return {"trials": n_trials, "first_trial_end_s": ends[0] - start, "later_trial_spans_s": spans,
            "later_overhead_s": over, "later_overhead_share_pct": [100 * o / sp for o, sp in zip(over, spans)],
            "search_wall_s": float(res.wall_s)}


# ---- (d) no-op trial throughput -----------------------------------------------------------------
def _noop_trainable(config: dict[str, Any]) -> None:
    from ray import tune

    tune.report({"score": float(config.get("x", 0.0))})


def run_noop(n_trials: int, storage: Path, reuse: bool) -> dict[str, float]:
    from ray import tune

    tuner = tune.Tuner(
        _noop_trainable, param_space={"x": tune.uniform(0, 1)},
        tune_config=tune.TuneConfig(metric="score", mode="max", num_samples=n_trials, reuse_actors=reuse),
        run_config=tune.RunConfig(name=f"noop_{'reuse' if reuse else 'fresh'}_{int(time.time())}",
                                  storage_path=str(storage.resolve()), verbose=0))
    start = time.perf_counter()
    grid = tuner.fit()
    wall = time.perf_counter() - start
    ok = sum(1 for r in grid if r.error is None)
    return {"trials": n_trials, "ok": ok, "wall_s": wall, "trials_per_s": n_trials / wall,
            "reuse_actors": reuse}


# ---------------------------------------------------------------------------------------------
def summarize(bare: RunTiming, ray_init_s: float, tune_run: RunTiming | None, ddp: RunTiming | None,
              target_trial_s: float) -> tuple[list[dict[str, Any]], dict[str, float]]:
    rows: list[dict[str, Any]] = []
    num: dict[str, float] = {}

    def add(key: str, label: str, value: float, unit: str = "") -> None:
        num[key] = value
        rows.append({"measure": label, "value": value, "unit": unit})

    add("bare_wall_s", "bare run wall", bare.wall_s, "s")
    add("bare_samples_per_s", "bare throughput (steady epochs)", bare.samples_per_s, "utt/s")
    add("ray_init_s", "Ray start-up (ray.init, once per driver)", ray_init_s, "s")
    if tune_run:
        over = tune_run.wall_s - bare.wall_s
        add("tune_search_wall_s", "one-trial search() wall", tune_run.wall_s, "s")
        add("tune_trial_time_total_s", "  of which inside the trial (Tune time_total_s)",
            tune_run.extra["trial_time_total_s"], "s")
        add("tune_outside_trial_s", "  of which outside the trial (checks, actor, table, export)",
            tune_run.wall_s - tune_run.extra["trial_time_total_s"], "s")
        if "before_first_epoch_s" in tune_run.extra:
            add("tune_before_first_epoch_s", "  search() call -> first epoch starts (+-1 s)",
                tune_run.extra["before_first_epoch_s"], "s")
            add("tune_after_last_epoch_s", "  last epoch reported -> search() returns (+-1 s)",
                tune_run.extra["after_last_epoch_s"], "s")
        add("per_trial_overhead_s", "per-trial overhead (search wall - bare wall)", over, "s")
        add("per_trial_overhead_share", "per-trial overhead share of search wall",
            100 * over / tune_run.wall_s, "%")
        add("overhead_share_incl_ray_init", "overhead share incl. Ray start-up",
            100 * (over + ray_init_s) / (tune_run.wall_s + ray_init_s), "%")
        add("projected_share_target", f"projected per-trial share for a {target_trial_s:.0f}-s bare run",
            100 * over / (target_trial_s + over), "%")
        add("tune_vs_bare_samples_ratio", "Tune trial / bare throughput (steady epochs)",
            tune_run.samples_per_s / bare.samples_per_s, "x")
    if ddp:
        add("ddp_search_wall_s", "2-worker DDP one-trial search() wall", ddp.wall_s, "s")
        if ddp.epoch_s:
            add("ddp_first_epoch_s", "  DDP first epoch incl. worker-group start", ddp.epoch_s[0], "s")
        add("ddp_samples_per_s", "DDP throughput (steady epochs)", ddp.samples_per_s, "utt/s")
        add("ddp_vs_bare_samples_ratio", "DDP (2 workers) / bare throughput", ddp.samples_per_s / bare.samples_per_s,
            "x")
        add("ddp_vs_bare_wall_ratio", "DDP search wall / bare wall", ddp.wall_s / bare.wall_s, "x")
    return rows, num


def plot(path: Path, bare: RunTiming, ray_init_s: float, tune_run: RunTiming | None,
         ddp: RunTiming | None, noop: list[dict[str, float]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(14, 4.2))
    ax = axes[0]
    later = sum(bare.epoch_s[1:])
    labels, parts = ["bare"], [[0.0, 0.0, bare.wall_s - later, later]]
    for run in (tune_run, ddp):
        if run:
            inside, later = run.extra["trial_time_total_s"], sum(run.epoch_s[1:])
            labels.append(run.name)
            parts.append([ray_init_s, run.wall_s - inside, inside - later, later])
    names = ["Ray start-up", "outside the trial", "set-up + epoch 1", "epochs 2..N"]
    bottom = [0.0] * len(labels)
    for k, nm in enumerate(names):
        vals = [p[k] for p in parts]
        ax.bar(labels, vals, bottom=bottom, label=nm)
        bottom = [b + v for b, v in zip(bottom, vals)]
    ax.set_ylabel("wall time (s)")
    ax.set_title("wall time breakdown")
    ax.legend(fontsize=8)

    ax = axes[1]
    runs = [r for r in (bare, tune_run, ddp) if r]
    ax.bar([r.name for r in runs], [r.samples_per_s for r in runs], color="tab:green")
    ax.set_ylabel("train utterances / s (steady epochs)")
    ax.set_title("throughput")

    ax = axes[2]
    if noop:
        ax.bar([f"reuse={n['reuse_actors']}" for n in noop], [n["trials_per_s"] for n in noop],
               color="tab:purple")
    ax.set_ylabel("no-op trials / s")
    ax.set_title("Tune scheduler throughput")
    save_figure(fig, path)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = bench_parser(__doc__, f"small settings ({QUICK['utterances']} utterances, {QUICK['epochs']} "
                              f"epochs, {QUICK['noop_trials']} no-op trials); full: {FULL}",
                     "results/overhead")
    p.add_argument("--epochs", type=int, help="epochs per run (overrides the mode's; >= 2)")
    p.add_argument("--noop-trials", type=int, help="no-op trials per scheduler measurement")
    p.add_argument("--threads", type=int, default=1, help="torch threads per training process")
    p.add_argument("--num-cpus", type=int, default=0,
                   help="logical CPUs given to Ray (0 = max(cores, 3): a DDP trial needs 2 + 0.1)")
    p.add_argument("--target-trial-s", type=float, default=60.0,
                   help="bare run length the overhead share is projected to (default %(default)s s)")
    p.add_argument("--skip-tune", action="store_true")
    p.add_argument("--skip-ddp", action="store_true")
    p.add_argument("--skip-noop", action="store_true")
    p.add_argument("--reused-trials", type=int, default=3,
                   help="(e) trials of one search with reused actors, one at a time; the overhead of "
                        "trials 2..N is measured (0 = skip; default %(default)s)")
    a = p.parse_args(argv)
    mode = QUICK if a.quick else FULL
    a.utterances = a.utterances or mode["utterances"]
    a.epochs = max(2, a.epochs or mode["epochs"])
    a.noop_trials = a.noop_trials or mode["noop_trials"]
    return a


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    logs = out / "logs"
    silence(("lightning", "lightning.pytorch", "lightning.fabric", "ray", "asr_tune"))
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    load_before = os.getloadavg()
    t_all = time.perf_counter()

    corpus = ensure_corpus(Path(args.data), args.utterances, logs)
    cfg = base_config(corpus, args.epochs, args.threads, out)
    n = n_train(cfg)
    print(f"corpus {corpus}: {n} train utterances; {args.epochs} epochs; threads/process {args.threads}",
          flush=True)

    print("(a) bare run ...", flush=True)
    with quiet(logs / "bare.log"):
        bare = run_bare(cfg)
    print(f"    {bare.wall_s:.1f} s", flush=True)
    bare_warm = None
    if args.reused_trials >= 2:  # the later trials' baseline: feature cache built, imports done
        print("(a') bare run again, warm ...", flush=True)
        with quiet(logs / "bare_warm.log"):
            bare_warm = run_bare(cfg)
        print(f"    {bare_warm.wall_s:.1f} s", flush=True)

    import ray

    num_cpus = args.num_cpus or max(os.cpu_count() or 1, 3)
    t0 = time.perf_counter()
    with quiet(logs / "ray_init.log"):
        ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, log_to_driver=False,
                 configure_logging=False)
    ray_init_s = time.perf_counter() - t0
    print(f"Ray start-up {ray_init_s:.1f} s ({num_cpus} logical CPUs)", flush=True)

    tune_run = ddp = reused = None
    noop: list[dict[str, float]] = []
    try:
        if not args.skip_tune:
            print("(b) one-trial Tune search ...", flush=True)
            with quiet(logs / "tune.log"):
                tune_run = run_search(cfg, "tune", n, {})
            print(f"    {tune_run.wall_s:.1f} s", flush=True)
        if not args.skip_ddp:
            print("(c) one-trial 2-worker DDP search (Ray Train, gloo) ...", flush=True)
            with quiet(logs / "ddp.log"):
                ddp = run_search(cfg, "ddp", n, {"resources.strategy": "ddp",
                                                 "resources.workers_per_trial": 2,
                                                 "resources.cpus_per_worker": 1})
            print(f"    {ddp.wall_s:.1f} s", flush=True)
        if args.reused_trials >= 2:
            print(f"(e) {args.reused_trials}-trial search, actors reused ...", flush=True)
            with quiet(logs / "reused.log"):
                reused = run_reused(cfg, args.reused_trials, bare_warm.wall_s)
            reused["bare_warm_wall_s"] = bare_warm.wall_s
            print(f"    later trials: overhead {', '.join(f'{o:.1f}' for o in reused['later_overhead_s'])}"
                  f" s of {', '.join(f'{s:.1f}' for s in reused['later_trial_spans_s'])} s", flush=True)
        if not args.skip_noop:
            print(f"(d) {args.noop_trials} no-op trials, twice ...", flush=True)
            with quiet(logs / "noop.log"):
                for reuse in (False, True):
                    noop.append(run_noop(args.noop_trials, out / "work" / "ray", reuse))
    finally:
        ray.shutdown()

    rows, num = summarize(bare, ray_init_s, tune_run, ddp, args.target_trial_s)
    for nrun in noop:
        key = "reuse" if nrun["reuse_actors"] else "fresh"
        num[f"noop_trials_per_s_{key}"] = nrun["trials_per_s"]
        rows.append({"measure": f"no-op trials/s (reuse_actors={nrun['reuse_actors']}, "
                                f"{int(nrun['trials'])} trials)", "value": nrun["trials_per_s"],
                     "unit": "trials/s"})
    if reused:
        over, spans = reused["later_overhead_s"], reused["later_trial_spans_s"]
        share = 100 * sum(over) / sum(spans)
        num.update(reused_later_overhead_s=sum(over) / len(over), reused_later_overhead_share=share)
        rows.append({"measure": "bare run wall, warm (the later trials' baseline)",
                     "value": reused["bare_warm_wall_s"], "unit": "s"})
        rows.append({"measure": f"trials 2..{reused['trials']} (actors reused): overhead per trial",
                     "value": sum(over) / len(over), "unit": "s"})
        rows.append({"measure": f"  share of a {sum(spans) / len(spans):.0f}-s trial (target <= 5 %)",
                     "value": share, "unit": "%"})
    info = machine_info()
    result = {
        "benchmark": "overhead", "mode": "quick" if args.quick else "full",
        "settings": {"utterances": args.utterances, "train_utterances": n, "epochs": args.epochs,
                     "threads_per_process": args.threads, "ray_num_cpus": num_cpus,
                     "noop_trials": args.noop_trials, "model": TINY},
        "summary": num, "table": rows,
        "runs": {r.name: r.to_dict() for r in (bare, tune_run, ddp) if r},
        "noop": noop, "reused": reused, "loadavg_before": load_before, "loadavg_after": os.getloadavg(),
        "total_s": time.perf_counter() - t_all, "machine": info,
    }
    write_json(out / "overhead.json", result)
    plot(out / "overhead.png", bare, ray_init_s, tune_run, ddp, noop)
    print()
    print_table(rows, ["measure", "value", "unit"],
                title=f"Ray Tune overhead ({result['mode']}: {n} train utts x {args.epochs} epochs)")
    print_footer(info, load_before, result, out / "overhead.json", out / "overhead.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
