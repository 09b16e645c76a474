"""The searcher factories: ``BuildContext`` -> :class:`SearchPlan` (one per registered name).

Each builds the Ray Tune search algorithm and scheduler for one searcher, importing Ray Tune and the
searcher's optional packages (hyperopt, hpbandster/ConfigSpace, bayes_opt) inside the factory only.
The name -> factory table, and the checks that run before a factory, live in
:mod:`asr_tune.tuning.registry`.

Usage::

    from asr_tune.tuning.registry import build_search
    plan = build_search(cfg.search, max_t=cfg.trainer.max_epochs)   # calls one factory below
"""
from __future__ import annotations

from typing import Any

from asr_tune.tuning import space as sp
from asr_tune.tuning.native import bayesopt_bounds, config_space, hyperopt_space, pb2_bounds, pbt_mutations
from asr_tune.tuning.options import (
    AshaOptions, BayesOptOptions, BohbOptions, HyperBandOptions, Pb2Options, PbtOptions,
    PerturbationOptions, RlOptions, TpeOptions, interval)
from asr_tune.tuning.plan import TIME_ATTR, BuildContext, SearchPlan


def _plan(ctx: BuildContext, search_alg: Any, scheduler: Any, param_space: dict[str, Any],
          notes: list[str], num_samples: int | None = None) -> SearchPlan:
    return SearchPlan(searcher=ctx.name, search_alg=search_alg, scheduler=scheduler,
                      param_space=param_space, num_samples=num_samples or ctx.num_samples,
                      metric=ctx.metric, mode=ctx.mode, space=dict(ctx.space), notes=notes)


def _variants(ctx: BuildContext) -> Any:
    from ray.tune.search.basic_variant import BasicVariantGenerator

    return BasicVariantGenerator(random_state=ctx.seed, max_concurrent=ctx.max_concurrent)


def _limit(searcher: Any, ctx: BuildContext) -> Any:
    """Wrap in a ``ConcurrencyLimiter`` when a cap was requested; otherwise leave the searcher bare
    so that ``TuneConfig(max_concurrent_trials=...)`` can wrap it (Tune rejects a second cap)."""
    if not ctx.requested_concurrency():
        return searcher
    from ray.tune.search import ConcurrencyLimiter

    return ConcurrencyLimiter(searcher, max_concurrent=ctx.requested_concurrency())


_UNCAPPED = ("no concurrency cap: pass max_concurrent to build_search or max_concurrent_trials "
             "to tune.TuneConfig, else Tune pre-suggests many trials before any result arrives "
             "and the model-based search degrades to random search")


def _concurrency_note(ctx: BuildContext, internal: bool = False) -> str:
    if not internal and not ctx.requested_concurrency():
        return _UNCAPPED
    cap = ctx.model_concurrency() if internal else ctx.requested_concurrency()
    return f"at most {cap} unfinished suggestions at a time"


_PAUSE_NOTE = ("trials are paused and resumed: the trainable must report a checkpoint every "
               "iteration and restore from tune.get_checkpoint()")


def build_random(ctx: BuildContext) -> SearchPlan:
    return _plan(ctx, _variants(ctx), None, sp.to_param_space(ctx.space),
                 ["random sampling with the basic variant generator (seeded)"])


def build_grid(ctx: BuildContext) -> SearchPlan:
    size = sp.grid_size(ctx.space)
    notes = [f"exhaustive grid of {size} points; 'choice' parameters are enumerated like 'grid'"]
    if ctx.num_samples != 1:
        notes.append(f"search.num_samples={ctx.num_samples} ignored: each grid point runs once")
    return _plan(ctx, _variants(ctx), None, sp.grid_param_space(ctx.space), notes, num_samples=1)


def build_asha(ctx: BuildContext) -> SearchPlan:
    from ray.tune.schedulers import ASHAScheduler

    o: AshaOptions = ctx.options
    scheduler = ASHAScheduler(time_attr=TIME_ATTR, max_t=ctx.max_t, grace_period=o.grace_period,
                              reduction_factor=o.reduction_factor, brackets=o.brackets)
    return _plan(ctx, _variants(ctx), scheduler, sp.to_param_space(ctx.space),
                 ["random sampling + asynchronous successive halving (early stopping)"])


def build_hyperband(ctx: BuildContext) -> SearchPlan:
    from ray.tune.schedulers import HyperBandScheduler

    o: HyperBandOptions = ctx.options
    scheduler = HyperBandScheduler(time_attr=TIME_ATTR, max_t=ctx.max_t,
                                   reduction_factor=o.reduction_factor)
    return _plan(ctx, _variants(ctx), scheduler, sp.to_param_space(ctx.space),
                 ["random sampling + synchronous HyperBand", _PAUSE_NOTE])


def build_bohb(ctx: BuildContext) -> SearchPlan:
    from ray.tune.schedulers import HyperBandForBOHB
    from ray.tune.search.bohb import TuneBOHB

    o: BohbOptions = ctx.options
    search_alg = TuneBOHB(space=config_space(ctx.space, ctx.seed), metric=ctx.metric,
                          mode=ctx.mode, seed=ctx.seed, max_concurrent=ctx.model_concurrency())
    scheduler = HyperBandForBOHB(time_attr=TIME_ATTR, max_t=ctx.max_t,
                                 reduction_factor=o.reduction_factor)
    return _plan(ctx, search_alg, scheduler, {}, [
        "BOHB: KDE model over a ConfigSpace (conditions native; quniform as a categorical grid)",
        _PAUSE_NOTE, _concurrency_note(ctx, internal=True),
        "the BOHB KDE itself draws from numpy's global RNG (not seeded)"])


def build_pbt(ctx: BuildContext) -> SearchPlan:
    from ray.tune.schedulers import PopulationBasedTraining

    o: PbtOptions = ctx.options
    scheduler = PopulationBasedTraining(
        time_attr=TIME_ATTR, perturbation_interval=interval(o, ctx.max_t),
        hyperparam_mutations=pbt_mutations(ctx.space), quantile_fraction=o.quantile_fraction,
        resample_probability=o.resample_probability,
        custom_explore_fn=sp.SpaceClipper(ctx.space), synch=o.synch)
    return _plan(ctx, _variants(ctx), scheduler, sp.to_param_space(ctx.space), [
        _exploit_note(o, ctx.max_t), "mutations use Python's global `random` (not seeded)"])


def build_pb2(ctx: BuildContext) -> SearchPlan:
    from ray.tune.schedulers.pb2 import PB2

    o: Pb2Options = ctx.options
    scheduler = PB2(time_attr=TIME_ATTR, perturbation_interval=interval(o, ctx.max_t),
                    hyperparam_bounds=pb2_bounds(ctx.space), quantile_fraction=o.quantile_fraction,
                    custom_explore_fn=sp.SpaceClipper(ctx.space), synch=o.synch)
    return _plan(ctx, _variants(ctx), scheduler, sp.to_param_space(ctx.space, log10=True), [
        _exploit_note(o, ctx.max_t), _LOG10_NOTE,
        "PB2 explores only after a trial has two results in the same config"])


_LOG10_NOTE = ("loguniform parameters are searched as '<name>@log10'; use "
               "space.trial_overrides() to get the real values")


def _exploit_note(o: PerturbationOptions, max_t: int) -> str:
    every = interval(o, max_t)
    note = (f"every {every} iterations the bottom {o.quantile_fraction:.0%} clone the top trials' "
            "checkpoints with mutated hyperparameters: the trainable must report the metric every "
            "iteration, a checkpoint at least that often, and restore from tune.get_checkpoint()")
    if max_t % every == 0:
        note += (f"; max_t={max_t} is a multiple of the interval, so a perturbation can land on "
                 "the last iteration and leave a trial's reported config mutated but never "
                 "trained (use the config recorded by the trial itself)")
    return note


def build_tpe(ctx: BuildContext) -> SearchPlan:
    from ray.tune.search.hyperopt import HyperOptSearch

    o: TpeOptions = ctx.options
    searcher = HyperOptSearch(space=hyperopt_space(ctx.space), metric=ctx.metric, mode=ctx.mode,
                              n_initial_points=o.n_initial_points, random_state_seed=ctx.seed,
                              gamma=o.gamma)
    notes = [f"TPE after {o.n_initial_points} random points", _concurrency_note(ctx)]
    if sp.conditional_names(ctx.space):
        notes.append("conditional parameters are nested hyperopt choices: trial configs hold "
                     "groups; use space.trial_overrides()")
    return _plan(ctx, _limit(searcher, ctx), None, {}, notes)


def build_bayesopt(ctx: BuildContext) -> SearchPlan:
    from ray.tune.search.bayesopt import BayesOptSearch

    o: BayesOptOptions = ctx.options
    searcher = BayesOptSearch(space=bayesopt_bounds(ctx.space), metric=ctx.metric, mode=ctx.mode,
                              utility_kwargs={"kind": o.utility, "kappa": o.kappa, "xi": o.xi},
                              random_state=ctx.seed, random_search_steps=o.random_search_steps)
    return _plan(ctx, _limit(searcher, ctx), None, {}, [
        f"GP-UCB/EI/POI ({o.utility}) after {o.random_search_steps} random points", _LOG10_NOTE,
        _concurrency_note(ctx)])


def build_rl(ctx: BuildContext) -> SearchPlan:
    from asr_tune.tuning.rl import ReinforceSearcher

    o: RlOptions = ctx.options
    searcher = ReinforceSearcher(ctx.space, metric=ctx.metric, mode=ctx.mode, lr=o.lr,
                                 baseline_decay=o.baseline_decay, entropy_coef=o.entropy_coef,
                                 bins=o.bins, seed=ctx.seed,
                                 max_concurrent=ctx.model_concurrency())
    return _plan(ctx, searcher, None, {}, [
        f"REINFORCE controller: a Gaussian policy on continuous parameters (and grids of more than "
        f"{o.bins} values), a softmax over the values of the others; reward = a trial's best result",
        _concurrency_note(ctx, internal=True)])
