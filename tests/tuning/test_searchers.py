"""Every registered searcher drives a real (tiny) Ray Tune search; plus the registry's errors.

The trainable is a synthetic learning curve: ``val_wer`` falls with the epochs towards a floor set
by the hyperparameters (best at ``optim.lr=1e-3``), the "weights" decay at a rate set by ``lr`` and
live in the checkpoint, and every (re)start logs an event file saying whether it restored its own
checkpoint (pause/resume) or another trial's (a PBT exploit) and with which ``lr``.
"""
from __future__ import annotations

import json
import math
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from asr_tune.config import ParamSpec, SearchConfig
from asr_tune.errors import ConfigError, SearchError
from asr_tune.tuning import registry
from asr_tune.tuning.space import (
    INACTIVE,
    SpaceClipper,
    to_param_space,
    trial_overrides,
    validate_space,
    validate_values,
)

pytestmark = pytest.mark.timeout(600)

LR_SPACE = {"optim.lr": {"type": "loguniform", "low": 1e-4, "high": 1.0}}
COND_SPACE = {
    "optim.optimizer": {"type": "choice", "values": ["adamw", "sgd"]},
    "optim.weight_decay": {"type": "loguniform", "low": 1e-5, "high": 1e-2,
                           "when": {"optim.optimizer": ["adamw"]}},
    "optim.lr": {"type": "loguniform", "low": 1e-4, "high": 1e-1},
}


# ----------------------------------------------------------------------------- the trainable


def _quality(lr: float) -> float:
    return math.exp(-((math.log10(lr) + 3.0) ** 2) / 2.0)


def _val_wer(ov: dict[str, Any], weights: float) -> float:
    lr = ov.get("optim.lr", 1e-3)
    arch = 0.02 * abs(ov.get("model.num_layers", 4) - 4) + 0.1 * abs(ov.get("model.dropout", 0.1) - 0.1)
    arch += 0.05 if ov.get("optim.optimizer") == "sgd" else 0.0
    return 0.05 + 0.3 * (1.0 - _quality(lr)) + 0.5 * weights + arch


def synthetic_trainable(config: dict[str, Any]) -> None:
    from ray import tune

    ov = trial_overrides(config)
    lr = ov.get("optim.lr", 1e-3)
    me = tune.get_context().get_trial_id()
    state = {"epoch": 0, "weights": 1.0, "owner": me, "lr": lr}
    event = {"trial": me, "time": time.time(), "config": ov, "lr": lr, "restored": False}
    ckpt = tune.get_checkpoint()
    if ckpt is not None:
        with ckpt.as_directory() as d:
            state = json.loads((Path(d) / "state.json").read_text())
        event.update(restored=True, owner=state["owner"], ckpt_lr=state["lr"],
                     ckpt_epoch=state["epoch"])
    Path(config["_events"], f"{me}-{uuid.uuid4().hex}.json").write_text(json.dumps(event))
    weights = state["weights"]
    for epoch in range(state["epoch"] + 1, config["_epochs"] + 1):
        weights *= 1.0 - 0.5 * _quality(lr)
        with tempfile.TemporaryDirectory() as d:
            new_state = {"epoch": epoch, "weights": weights, "owner": me, "lr": lr}
            (Path(d) / "state.json").write_text(json.dumps(new_state))
            tune.report({"val_wer": _val_wer(ov, weights), "epoch": epoch, "lr": lr},
                        checkpoint=tune.Checkpoint.from_directory(d))


# ----------------------------------------------------------------------------- helpers


@pytest.fixture(scope="module")
def ray_session():
    ray = pytest.importorskip("ray")
    import ray.cloudpickle

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    if started:
        ray.shutdown()


def _plan(searcher: str, space: dict, max_t: int, num_samples: int = 4, seed: int = 0,
          cap: int = 4, **options: Any) -> registry.SearchPlan:
    cfg = SearchConfig(searcher=searcher, space=space, num_samples=num_samples, seed=seed,
                       options={searcher: options} if options else {})
    return registry.build_search(cfg, max_t=max_t, max_concurrent=cap)  # 4 x 0.5 CPU


class Run:
    """The outcome of one search: trials (config, overrides, last epoch) and restart events."""

    def __init__(self, results: Any, events_dir: Path, plan: registry.SearchPlan):
        self.plan = plan
        self.events = sorted((json.loads(p.read_text()) for p in events_dir.glob("*.json")),
                             key=lambda e: e["time"])
        started = {}
        for event in self.events:
            started.setdefault(event["trial"], event["time"])
        self.trials = sorted(  # in the order the trials started (= suggestion order if serial)
            ({"id": r.metrics["trial_id"], "config": r.config, "ov": plan.overrides(r.config),
              "epoch": r.metrics.get("epoch", 0)} for r in results),
            key=lambda t: started[t["id"]])

    def restores(self, own: bool) -> list[dict]:
        return [e for e in self.events if e["restored"] and (e["owner"] == e["trial"]) == own]


def _run(plan: registry.SearchPlan, tmp_path: Path, epochs: int) -> Run:
    from ray import tune

    events = tmp_path / "events"
    events.mkdir()
    tuner = tune.Tuner(
        tune.with_resources(synthetic_trainable, {"cpu": 0.5}),  # 4 concurrent trials on 2 cores
        param_space={**plan.param_space, "_epochs": epochs, "_events": str(events)},
        tune_config=tune.TuneConfig(metric="val_wer", mode="min", search_alg=plan.search_alg,
                                    scheduler=plan.scheduler, num_samples=plan.num_samples,
                                    reuse_actors=True),
        run_config=tune.RunConfig(storage_path=str(tmp_path / "runs"), name="search", verbose=0),
    )
    results = tuner.fit()
    assert not results.errors, results.errors
    return Run(results, events, plan)


def _searcher(plan: registry.SearchPlan) -> Any:
    """The searcher itself (unwrapping a ConcurrencyLimiter)."""
    return getattr(plan.search_alg, "searcher", plan.search_alg)


def _dist(lr: float) -> float:
    return abs(math.log10(lr) + 3.0)


# ----------------------------------------------------------------------------- every searcher


CONDITIONAL = [n for n in registry.searcher_names() if registry.searcher_info(n).conditionals]


def test_every_registered_searcher_has_a_run_test():
    tested = {"random", "grid", "asha", "hyperband", "bohb", "pbt", "pb2", "tpe", "bayesopt", "rl"}
    assert set(registry.searcher_names()) == tested
    assert CONDITIONAL == ["random", "asha", "hyperband", "bohb", "tpe", "rl"]


def _check_conditionals(run: Run) -> None:
    """``optim.weight_decay`` is sampled exactly when ``optim.optimizer`` is adamw."""
    branches = set()
    for trial in run.trials:
        ov = trial["ov"]
        validate_values(ov, run.plan.space)
        assert ("optim.weight_decay" in ov) == (ov["optim.optimizer"] == "adamw"), ov
        assert trial_overrides(trial["config"]) == ov  # also right without the space
        branches.add(ov["optim.optimizer"])
    assert branches == {"adamw", "sgd"}


def test_random_runs_requested_trials_within_bounds(ray_session, tmp_path):
    space = {**COND_SPACE,
             "model.dropout": {"type": "uniform", "low": 0.0, "high": 0.3},
             "model.num_layers": {"type": "randint", "low": 2, "high": 7},
             "optim.warmup_steps": {"type": "quniform", "low": 0, "high": 500, "q": 50}}
    plan = _plan("random", space, max_t=1, num_samples=6, seed=3)
    run = _run(plan, tmp_path, epochs=1)
    assert len(run.trials) == 6
    assert len({t["ov"]["optim.lr"] for t in run.trials}) == 6
    _check_conditionals(run)


def test_random_is_reproducible_with_seed():
    from ray.tune.search.variant_generator import generate_variants
    import numpy as np

    space = {k: ParamSpec(**v) for k, v in COND_SPACE.items()}

    def draw(seed: int) -> list[dict]:
        rng = np.random.default_rng(seed)
        return [spec["config"] for _ in range(6)
                for _, spec in generate_variants({"config": to_param_space(space)}, random_state=rng)]

    assert draw(1) == draw(1)
    assert draw(1) != draw(2)


def test_grid_covers_exactly_the_grid(ray_session, tmp_path):
    space = {"optim.optimizer": {"type": "choice", "values": ["adam", "sgd"]},
             "model.num_layers": {"type": "grid", "values": [2, 3, 4]}}
    plan = _plan("grid", space, max_t=1, num_samples=8)
    assert plan.num_samples == 1 and any("ignored" in n for n in plan.notes)
    run = _run(plan, tmp_path, epochs=1)
    points = [(t["ov"]["optim.optimizer"], t["ov"]["model.num_layers"]) for t in run.trials]
    assert sorted(points) == sorted((o, n) for o in ["adam", "sgd"] for n in [2, 3, 4])


def test_asha_stops_bad_trials_early(ray_session, tmp_path):
    plan = _plan("asha", COND_SPACE, max_t=8, num_samples=8, seed=1, grace_period=1,
                 reduction_factor=2)
    run = _run(plan, tmp_path, epochs=8)
    epochs = [t["epoch"] for t in run.trials]
    assert len(epochs) == 8
    assert max(epochs) == 8 and min(epochs) < 8, epochs
    _check_conditionals(run)


def test_hyperband_stops_and_resumes(ray_session, tmp_path):
    # no cap: all trials exist up front, so the brackets fill in creation order (3 trials run
    # the full 9 epochs, the next 5 are halved at epoch 3); with a cap the brackets depend on
    # when trials get created
    plan = _plan("hyperband", COND_SPACE, max_t=9, num_samples=8, seed=2, cap=0,
                 reduction_factor=3)
    run = _run(plan, tmp_path, epochs=9)
    epochs = [t["epoch"] for t in run.trials]
    assert max(epochs) == 9 and sum(e < 9 for e in epochs) >= 2, epochs
    assert run.restores(own=True), "no trial was paused at a milestone and resumed"
    _check_conditionals(run)


def test_bohb_pauses_and_resumes_from_checkpoints(ray_session, tmp_path):
    plan = _plan("bohb", COND_SPACE, max_t=4, num_samples=4, seed=6, reduction_factor=2)
    run = _run(plan, tmp_path, epochs=4)
    resumed = run.restores(own=True)
    assert resumed, "no trial was paused and resumed from its own checkpoint"
    assert all(e["ckpt_epoch"] >= 1 for e in resumed)
    epochs = [t["epoch"] for t in run.trials]
    assert max(epochs) == 4 and min(epochs) < 4, epochs
    bohber = _searcher(plan).bohber
    assert sum(len(v) for v in bohber.configs.values()) >= 4  # the KDE model was fed results
    _check_conditionals(run)


@pytest.mark.parametrize("name", ["pbt", "pb2"])
def test_population_methods_exploit_and_mutate(ray_session, tmp_path, name):
    space = {"optim.lr": {"type": "loguniform", "low": 1e-4, "high": 1.0},
             "model.dropout": {"type": "uniform", "low": 0.0, "high": 0.5}}
    # synchronous: every 2 epochs all 4 trials wait, then the bottom 2 clone the top 2 (the
    # asynchronous mode exploits only when a trial reaches the interval while in the bottom half,
    # which with millisecond epochs depends on timing); PB2 explores with its GP from epoch 4 on
    plan = _plan(name, space, max_t=9, num_samples=4, seed=0, perturbation_interval=2,
                 quantile_fraction=0.5, synch=True)
    run = _run(plan, tmp_path, epochs=9)
    exploits = run.restores(own=False)
    assert exploits, "no trial restored another trial's checkpoint"
    mutated = [e for e in exploits if not math.isclose(e["lr"], e["ckpt_lr"], rel_tol=1e-6)]
    assert mutated, f"exploits kept the donor's lr: {exploits}"
    for event in exploits:
        validate_values(event["config"], plan.space)
    # the trial's final config is the one in effect in its last session
    for trial in run.trials:
        last = [e for e in run.events if e["trial"] == trial["id"]][-1]
        assert math.isclose(trial["ov"]["optim.lr"], last["lr"], rel_tol=1e-6)


MODEL_BASED = {
    "tpe": {"n_initial_points": 3},
    "bayesopt": {"random_search_steps": 3},
    "rl": {"lr": 1.0, "bins": 8},
}


@pytest.mark.parametrize("name", sorted(MODEL_BASED))
def test_model_based_searchers_drive_the_run(ray_session, tmp_path, name):
    """The trials are the searcher's suggestions and every result went back into its model."""
    n, warmup = (6 if name == "bayesopt" else 8), 3
    space = LR_SPACE if name == "bayesopt" else COND_SPACE
    plan = _plan(name, space, max_t=1, num_samples=n, seed=0, **MODEL_BASED[name])
    baseline = _no_feedback_suggestions(name, space, n)  # same seed, never told a result
    run = _run(plan, tmp_path, epochs=1)
    lrs = [t["ov"]["optim.lr"] for t in run.trials]
    assert len(lrs) == n
    searcher = _searcher(plan)
    if name == "rl":
        # every result reached the controller, and its Gaussian on lr moved off the initial one
        assert all(1e-4 <= lr <= 1e-1 for lr in lrs)
        assert searcher.num_updates == n
        d = searcher.distribution("optim.lr")
        assert abs(d["mu"] - 0.5) > 1e-3 or abs(d["sigma"] - 0.3) > 1e-3
    else:
        # the seeded initial draws are reproduced, the model-based ones are not random draws
        same = [lr for lr in lrs if any(math.isclose(lr, b, rel_tol=1e-9) for b in baseline)]
        assert warmup <= len(same) < n, (lrs, baseline)
        if name == "tpe":
            losses = [t["result"].get("loss") for t in searcher._hpopt_trials.trials]
            assert sum(loss is not None for loss in losses) == n
        else:
            assert len(searcher.optimizer.space) == n
    if space is COND_SPACE:
        _check_conditionals(run)


@pytest.mark.parametrize("name", sorted(MODEL_BASED))
def test_model_based_searchers_concentrate_near_optimum(name):
    """Driven in-process (deterministic), the second half of the suggestions sits closer to the
    optimum (lr=1e-3) than uniform sampling (mean |log10 lr + 3| = 1.25) and than the same
    searcher without feedback."""
    n = {"tpe": 30, "rl": 20, "bayesopt": 10}[name]  # a GP fit per suggestion is slow
    searcher = _searcher(_plan(name, LR_SPACE, max_t=1, num_samples=n, seed=0,
                               **MODEL_BASED[name]))
    lrs = []
    for i in range(n):
        config = searcher.suggest(f"t{i}")
        if config is None:  # bayesopt skips a duplicate suggestion
            continue
        lr = trial_overrides(config)["optim.lr"]
        lrs.append(lr)
        searcher.on_trial_complete(f"t{i}", {"val_wer": _val_wer({"optim.lr": lr}, 1.0)})
    half = n // 2
    tail = sum(map(_dist, lrs[-half:])) / half
    blind = _no_feedback_suggestions(name, LR_SPACE, n)[-half:]
    blind_tail = sum(map(_dist, blind)) / half if len(blind) == half else 1.25
    assert tail < 0.75 and tail < blind_tail, (tail, blind_tail, lrs)


def _no_feedback_suggestions(name: str, space: dict, n: int) -> list[float]:
    searcher = _searcher(_plan(name, space, max_t=1, num_samples=n, seed=0,
                               max_concurrent=n, **MODEL_BASED[name]))
    out = []
    for i in range(n):
        config = searcher.suggest(f"baseline_{i}")
        if not isinstance(config, dict):  # bayesopt waits for its random points' results
            break
        out.append(trial_overrides(config)["optim.lr"])
    return out


# ----------------------------------------------------------------------------- conditionals


@pytest.mark.parametrize("name", sorted(set(registry.searcher_names()) - set(CONDITIONAL)))
def test_conditional_params_rejected_by_other_searchers(name):
    space = dict(COND_SPACE)
    if name == "grid":
        space["optim.lr"] = {"type": "choice", "values": [1e-3, 1e-2]}
    with pytest.raises(SearchError, match=r"optim\.weight_decay.*random, asha, hyperband, bohb"):
        _plan(name, space, max_t=4)


def test_tpe_rejects_conditions_it_cannot_nest():
    space = {"model.num_layers": {"type": "randint", "low": 2, "high": 6},
             "model.dropout": {"type": "uniform", "low": 0.0, "high": 0.3,
                               "when": {"model.num_layers": [4, 5]}}}
    with pytest.raises(SearchError, match=r"'model\.dropout'.*'choice'"):
        _plan("tpe", space, max_t=4)
    _plan("bohb", space, max_t=4)  # BOHB takes conditions on integer parents


def test_nested_conditionals_in_tpe_and_rl():
    space = {
        "optim.optimizer": {"type": "choice", "values": ["adamw", "sgd"]},
        "optim.schedule": {"type": "choice", "values": ["noam", "constant"],
                           "when": {"optim.optimizer": ["adamw"]}},
        "optim.warmup_steps": {"type": "randint", "low": 0, "high": 100,
                               "when": {"optim.schedule": ["noam"]}},
    }
    for name in ("tpe", "rl", "bohb"):
        plan = _plan(name, space, max_t=2, num_samples=1, seed=1, max_concurrent=100)
        seen = set()
        for i in range(30):
            ov = plan.overrides(_searcher(plan).suggest(f"t{i}"))
            validate_values(ov, plan.space)
            seen.add(tuple(sorted(ov)))
        assert len(seen) == 3, (name, seen)


# ----------------------------------------------------------------------------- errors


def test_unknown_searcher_lists_valid_names():
    with pytest.raises(SearchError) as err:
        registry.build_search(SearchConfig(searcher="cmaes", space=LR_SPACE), max_t=4)
    msg = str(err.value)
    assert "cmaes" in msg and all(n in msg for n in registry.searcher_names())


@pytest.mark.parametrize("name,space,param,able", [
    ("bayesopt", {"optim.optimizer": {"type": "choice", "values": ["adam", "sgd"]}},
     "optim.optimizer", "random"),
    ("bayesopt", {"model.num_layers": {"type": "randint", "low": 2, "high": 6}},
     "model.num_layers", "tpe"),
    ("pb2", {"optim.optimizer": {"type": "choice", "values": ["adam", "sgd"]}},
     "optim.optimizer", "pbt"),
    ("grid", LR_SPACE, "optim.lr", "bayesopt"),
    ("tpe", {"model.num_layers": {"type": "grid", "values": [2, 4]}}, "model.num_layers", "grid"),
    ("pbt", {"model.num_layers": {"type": "randint", "low": 2, "high": 6}},
     "model.num_layers", "asha"),
    ("pb2", {"model.d_model": {"type": "quniform", "low": 64, "high": 256, "q": 32}},
     "model.d_model", "bohb"),
    ("pbt", {"tokenizer.vocab_size": {"type": "choice", "values": [64, 128]}},
     "tokenizer.vocab_size", "rl"),
])
def test_incompatible_space_names_param_and_able_searchers(name, space, param, able):
    with pytest.raises(SearchError) as err:
        _plan(name, space, max_t=8)
    msg = str(err.value)
    assert f"'{param}'" in msg and name in msg and able in msg, msg


def test_pbt_may_mutate_dropout_but_not_the_optimizer():
    """Dropout is safe to mutate; the optimizer type is not (its state would not fit: issue 10)."""
    space = {"model.dropout": {"type": "uniform", "low": 0.0, "high": 0.3}}
    plan = _plan("pbt", space, max_t=8)
    assert "model.dropout" in plan.scheduler._hyperparam_mutations
    with pytest.raises(SearchError, match="optim.optimizer"):
        _plan("pbt", {**space, "optim.optimizer": {"type": "choice", "values": ["adam", "sgd"]}}, max_t=8)


@pytest.mark.parametrize("name,options,pattern", [
    ("asha", {"grace": 1}, r"search\.options\.asha: unknown key 'grace'"),
    ("asha", {"grace_period": 0}, r"search\.options\.asha\.grace_period"),
    ("asha", {"grace_period": 20}, r"asha\.grace_period=20 must be <= max_t=8"),
    ("hyperband", {"reduction_factor": 1}, r"hyperband\.reduction_factor"),
    ("pbt", {"quantile_fraction": 0.7}, r"pbt\.quantile_fraction"),
    ("pbt", {"perturbation_interval": 8}, r"pbt\.perturbation_interval=8 must be < max_t=8"),
    ("pb2", {"resample_probability": 0.5}, r"search\.options\.pb2: unknown key"),
    ("tpe", {"n_initial_points": 0}, r"tpe\.n_initial_points"),
    ("bayesopt", {"utility": "thompson"}, r"bayesopt\.utility"),
    ("rl", {"bins": 1}, r"rl\.bins"),
    ("rl", {"baseline_decay": 1.0}, r"rl\.baseline_decay"),
    ("random", {"grace_period": 1}, r"search\.options\.random: unknown key 'grace_period'"),
])
def test_bad_option_names_searcher_and_key(name, options, pattern):
    with pytest.raises(SearchError, match=pattern):
        _plan(name, LR_SPACE, max_t=8, **options)


def test_concurrency_cap_wiring():
    from ray.tune.search import ConcurrencyLimiter

    def cfg(name: str, **options: Any) -> SearchConfig:
        return SearchConfig(searcher=name, space=LR_SPACE, options={name: options})

    # no cap asked: model-based searchers stay bare so TuneConfig(max_concurrent_trials) can wrap
    bare = registry.build_search(cfg("tpe"), max_t=4)
    assert not isinstance(bare.search_alg, ConcurrencyLimiter)
    assert any("no concurrency cap" in n for n in bare.notes)
    capped = registry.build_search(cfg("bayesopt"), max_t=4, max_concurrent=3)
    assert isinstance(capped.search_alg, ConcurrencyLimiter)
    assert capped.search_alg.max_concurrent == 3
    assert registry.build_search(cfg("tpe", max_concurrent=2), max_t=4,
                                 max_concurrent=3).search_alg.max_concurrent == 2
    assert registry.build_search(cfg("random"), max_t=4,
                                 max_concurrent=3).search_alg.max_concurrent == 3
    assert registry.build_search(cfg("rl"), max_t=4).search_alg.max_concurrent == 4
    assert registry.build_search(cfg("bohb"), max_t=4, max_concurrent=2).search_alg._max_concurrent == 2
    with pytest.raises(SearchError, match="max_concurrent"):
        registry.build_search(cfg("random"), max_t=4, max_concurrent=-1)


def test_options_for_unknown_searcher_rejected():
    cfg = SearchConfig(searcher="asha", space=LR_SPACE, options={"ashaa": {"grace_period": 1}})
    with pytest.raises(SearchError, match="unknown searcher 'ashaa'"):
        registry.build_search(cfg, max_t=4)


def test_population_needs_more_than_one_trial():
    with pytest.raises(SearchError, match="num_samples=1 must be >= 2"):
        _plan("pbt", LR_SPACE, max_t=8, num_samples=1)


@pytest.mark.parametrize("space,pattern", [
    ({"optim.lrr": {"type": "uniform", "low": 0, "high": 1}}, "unknown config key 'optim.lrr'"),
    ({"model.num_layers": {"type": "randint", "low": 1.5, "high": 4}}, "integer"),
    ({"optim.lr": {"type": "quniform", "low": 0.11, "high": 0.19, "q": 0.1}}, "no multiple"),
    ({"optim.lr": {"type": "uniform", "low": 0.1, "high": 0.2,
                   "when": {"optim.optimizer": ["adam"]}}}, "not a parameter"),
    ({"optim.optimizer": {"type": "choice", "values": ["adam", "sgd"]},
      "optim.lr": {"type": "uniform", "low": 0.1, "high": 0.2,
                   "when": {"optim.optimizer": ["lion"]}}}, "'lion' is not a value"),
    ({"optim.optimizer": {"type": "choice", "values": ["adam", "sgd"],
                          "when": {"optim.schedule": ["noam"]}},
      "optim.schedule": {"type": "choice", "values": ["noam", "constant"],
                         "when": {"optim.optimizer": ["adam"]}}}, "cycle"),
])
def test_malformed_space_is_a_config_error(space, pattern):
    with pytest.raises(ConfigError, match=pattern):
        validate_space({k: ParamSpec(**v) for k, v in space.items()})


def test_validate_values_and_clipper():
    space = {"optim.lr": ParamSpec(type="loguniform", low=1e-4, high=1e-1),
             "model.num_layers": ParamSpec(type="randint", low=2, high=6),
             "optim.warmup_steps": ParamSpec(type="quniform", low=0, high=500, q=50)}
    validate_values({"optim.lr": 1e-3, "model.num_layers": 5, "optim.warmup_steps": 150}, space)
    for bad in ({"model.num_layers": 6}, {"optim.lr": 0.2}, {"optim.warmup_steps": 120}):
        with pytest.raises(SearchError, match=list(bad)[0].replace(".", r"\.")):
            validate_values({"optim.lr": 1e-3, "model.num_layers": 5,
                             "optim.warmup_steps": 150, **bad}, space)
    clipped = SpaceClipper(space)({"optim.lr": 0.5, "model.num_layers": 7.4,
                                   "optim.warmup_steps": 137.0, "optim.lr@log10": 3.0})
    assert clipped == {"optim.lr": 1e-1, "model.num_layers": 5, "optim.warmup_steps": 150.0,
                       "optim.lr@log10": -1.0}


def test_trial_overrides_decodes_and_drops():
    config = {"optim.lr@log10": -3.0, "optim.optimizer": {"optim.optimizer": "sgd"},
              "optim.weight_decay": INACTIVE, "_epochs": 3}
    assert trial_overrides(config) == {"optim.lr": pytest.approx(1e-3), "optim.optimizer": "sgd"}
