"""Searcher registry: ``SearchConfig`` -> a ready-to-run Ray Tune search (:class:`SearchPlan`).

Each searcher name maps to a factory plus a typed options model (``search.options.<name>``,
unknown keys rejected) and the parameter types it can take. :func:`build_search` validates the
space, the searcher/space compatibility and the options, then imports the searcher's optional
packages (Ray Tune, hyperopt, hpbandster/ConfigSpace, bayes_opt) inside its factory only.

=========  ================================================  =============================
name       search algorithm / scheduler                      parameter types (conditionals)
=========  ================================================  =============================
random     BasicVariantGenerator / FIFO                      all (yes)
grid       BasicVariantGenerator over grid_search / FIFO     grid, choice (no)
asha       BasicVariantGenerator / ASHAScheduler             all (yes)
hyperband  BasicVariantGenerator / HyperBandScheduler        all (yes)
bohb       TuneBOHB (ConfigSpace) / HyperBandForBOHB         all but grid (yes, native)
pbt        BasicVariantGenerator / PopulationBasedTraining   all but grid (no)
pb2        BasicVariantGenerator / PB2                       numeric ranges (no)
tpe        HyperOptSearch (native hyperopt space) / FIFO     all but grid (single-key when
                                                             on a choice parent, nested)
bayesopt   BayesOptSearch / FIFO                             uniform, loguniform (no)
rl         ReinforceSearcher (REINFORCE controller) / FIFO   all but grid (yes)
=========  ================================================  =============================

PBT and PB2 also reject parameters that change weight shapes (``model.*`` except
``model.dropout``, ``tokenizer.*``, ``features.n_mels``): a restored checkpoint cannot take them.
bayesopt and pb2 model values linearly, so a loguniform parameter reaches them as
``<name>@log10`` (uniform in log10 space); :func:`asr_tune.tuning.space.trial_overrides` maps it
back. Everything uses ``time_attr="training_iteration"``; the search's ``seed`` is passed wherever
the library takes one. Schedulers get no metric/mode (pass ``plan.metric``/``plan.mode`` to
``tune.TuneConfig``, e.g. ``tune.TuneConfig(**plan.tune_config_kwargs())``); searchers that hold
their own space get them at construction, since Tune does not forward them with an empty
``param_space``. Concurrency: pass the cap as ``build_search(..., max_concurrent=k)`` (see
there); model-based searchers need one, or Tune pre-suggests trials before any result arrives.
A plan's objects are stateful: build one plan per ``Tuner``.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from asr_tune.config import ParamSpec, SearchConfig
from asr_tune.errors import SearchError
from asr_tune.tuning import space as sp
from asr_tune.tuning.options import (  # also re-exported from here
    AshaOptions, BayesOptOptions, BohbOptions, HyperBandOptions, NoOptions, Pb2Options,
    PbtOptions, PerturbationOptions, RlOptions, SearcherOptions, TpeOptions, interval,
    parse_all_options, parse_options)
from asr_tune.tuning.native import (  # also re-exported from here
    bayesopt_bounds, config_space, hyperopt_space, pb2_bounds, pbt_mutations)

__all__ = [
    "ALL_TYPES", "DEFAULT_MODEL_CONCURRENCY", "MAX_BOHB_CATEGORIES", "NO_GRID", "TIME_ATTR",
    "BuildContext", "SearchPlan", "SearcherInfo", "build_search", "changes_shapes",
    "check_compatible", "searcher_info", "searcher_names",
    # from options.py
    "AshaOptions", "BayesOptOptions", "BohbOptions", "HyperBandOptions", "NoOptions",
    "Pb2Options", "PbtOptions", "PerturbationOptions", "RlOptions", "SearcherOptions",
    "TpeOptions", "interval", "parse_all_options", "parse_options",
    # from native.py
    "bayesopt_bounds", "config_space", "hyperopt_space", "pb2_bounds", "pbt_mutations"]

TIME_ATTR = "training_iteration"
ALL_TYPES = frozenset({"uniform", "loguniform", "quniform", "randint", "choice", "grid"})
NO_GRID = ALL_TYPES - {"grid"}
MAX_BOHB_CATEGORIES = 256
DEFAULT_MODEL_CONCURRENCY = 4
_SHAPE_SAFE = frozenset({"model.dropout"})
_SHAPE_PREFIXES = ("model.", "tokenizer.", "features.n_mels")


@dataclass
class SearchPlan:
    """What ``tune.Tuner`` needs for one search (use each plan for one ``Tuner`` only)."""

    searcher: str
    search_alg: Any
    scheduler: Any
    param_space: dict[str, Any]
    num_samples: int
    metric: str
    mode: str
    space: dict[str, ParamSpec]
    notes: list[str] = field(default_factory=list)

    def tune_config_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``tune.TuneConfig`` (metric, mode, search_alg, scheduler, ...)."""
        return {"metric": self.metric, "mode": self.mode, "search_alg": self.search_alg,
                "scheduler": self.scheduler, "num_samples": self.num_samples}

    def overrides(self, trial_config: Mapping[str, Any]) -> dict[str, Any]:
        """The dotted config overrides of a trial of this plan (see ``space.trial_overrides``)."""
        return sp.trial_overrides(trial_config, self.space)


# ----------------------------------------------------------------------------- the table


@dataclass(frozen=True)
class BuildContext:
    name: str
    space: dict[str, ParamSpec]
    max_t: int
    metric: str
    mode: str
    seed: int
    num_samples: int
    options: Any
    max_concurrent: int = 0

    def requested_concurrency(self) -> int:
        """The cap asked for: the searcher's ``max_concurrent`` option, else the run's (0 = none)."""
        return getattr(self.options, "max_concurrent", 0) or self.max_concurrent

    def model_concurrency(self) -> int:
        """Internal cap of BOHB/RL: the requested one, else 4 (a Tune ConcurrencyLimiter built
        from ``max_concurrent_trials`` replaces it through ``set_max_concurrency``)."""
        return self.requested_concurrency() or DEFAULT_MODEL_CONCURRENCY


@dataclass(frozen=True)
class SearcherInfo:
    name: str
    summary: str
    options: type[SearcherOptions]
    param_types: frozenset[str]
    conditionals: bool
    mutates: bool
    factory: Callable[[BuildContext], SearchPlan]


def searcher_names() -> list[str]:
    """The registered searcher names, in registry order."""
    return list(_registry())


def searcher_info(name: str) -> SearcherInfo:
    """The registry entry for ``name``; ``SearchError`` listing the valid names if unknown."""
    table = _registry()
    if name not in table:
        raise SearchError(f"unknown searcher '{name}'; valid searchers: {', '.join(table)}")
    return table[name]


def build_search(search_cfg: SearchConfig, max_t: int, max_concurrent: int = 0) -> SearchPlan:
    """Validate ``search_cfg`` against its searcher and build the Tune objects for it.

    ``max_t`` is the number of epochs a trial runs at most (``training_iteration`` budget).
    ``max_concurrent`` caps the unfinished trials (0 = no cap; a searcher's ``max_concurrent``
    option takes precedence). The cap is built into the search algorithm
    (``BasicVariantGenerator(max_concurrent=...)``, a ``ConcurrencyLimiter`` for tpe/bayesopt, the
    internal caps of bohb/rl, which default to 4). Pass the same value, or nothing, as
    ``tune.TuneConfig(max_concurrent_trials=...)``: Tune ignores that for a
    ``BasicVariantGenerator`` and rejects a different value on a ``ConcurrencyLimiter``.
    Raises ``SearchError`` (unknown searcher, incompatible parameter, bad option) or
    ``ConfigError`` (a malformed space).
    """
    info = searcher_info(search_cfg.searcher)
    if max_t < 1:
        raise SearchError(f"max_t={max_t} must be >= 1")
    if max_concurrent < 0:
        raise SearchError(f"max_concurrent={max_concurrent} must be >= 0")
    space = dict(search_cfg.space)
    sp.validate_space(space)
    all_options = parse_all_options(search_cfg.options)
    check_compatible(info.name, space)
    ctx = BuildContext(name=info.name, space=space, max_t=int(max_t), metric=search_cfg.metric,
                       mode=search_cfg.mode, seed=search_cfg.seed,
                       num_samples=search_cfg.num_samples, options=all_options[info.name],
                       max_concurrent=int(max_concurrent))
    ctx.options.check(ctx)
    return info.factory(ctx)


# ----------------------------------------------------------------------------- compatibility


def check_compatible(name: str, space: Mapping[str, ParamSpec]) -> None:
    """Raise ``SearchError`` naming the parameter (and who can take it) if ``name`` cannot."""
    info = searcher_info(name)
    if not space and name not in ("random", "grid"):
        raise SearchError(f"searcher '{name}' needs at least one parameter in search.space")
    for pname, spec in space.items():
        if spec.when and not info.conditionals:
            able = [n for n, i in _registry().items() if i.conditionals]
            raise SearchError(f"searcher '{name}' does not support conditional parameter "
                              f"'{pname}' (when {spec.when}); searchers that do: "
                              f"{', '.join(able)}")
    for pname, spec in space.items():
        if spec.type not in info.param_types:
            able = [n for n, i in _registry().items() if spec.type in i.param_types]
            raise SearchError(f"searcher '{name}' cannot take parameter '{pname}' of type "
                              f"'{spec.type}'; searchers that can: {', '.join(able)}")
        if info.mutates and changes_shapes(pname):
            able = [n for n, i in _registry().items() if not i.mutates
                    and spec.type in i.param_types]
            raise SearchError(f"searcher '{name}' cannot tune '{pname}': it changes weight "
                              "shapes, so it cannot be mutated on a restored checkpoint; "
                              f"searchers that can tune it: {', '.join(able)}")
    _EXTRA_CHECKS.get(name, lambda _s: None)(space)


def changes_shapes(key: str) -> bool:
    """Whether overriding ``key`` changes parameter shapes (so PBT/PB2 cannot mutate it)."""
    return key not in _SHAPE_SAFE and key.startswith(_SHAPE_PREFIXES)


def _check_tpe(space: Mapping[str, ParamSpec]) -> None:
    for pname, spec in space.items():
        if not spec.when:
            continue
        parents = list(spec.when)
        if len(parents) != 1 or space[parents[0]].type != "choice":
            able = [n for n, i in _registry().items() if i.conditionals and n != "tpe"]
            raise SearchError(f"searcher 'tpe' encodes conditionals as nested choices: parameter "
                              f"'{pname}' needs a single 'when' key naming a 'choice' parameter "
                              f"(got when {spec.when}); searchers that take any condition: "
                              f"{', '.join(able)}")


def _check_bohb(space: Mapping[str, ParamSpec]) -> None:
    for pname, spec in space.items():
        if spec.type == "quniform":
            count = len(sp.quantized_values(spec, limit=MAX_BOHB_CATEGORIES + 1))
            if count > MAX_BOHB_CATEGORIES:
                raise SearchError(f"searcher 'bohb' takes quniform parameter '{pname}' as a "
                                  f"categorical of its grid, which has more than "
                                  f"{MAX_BOHB_CATEGORIES} points; use a coarser q or 'uniform'")


_EXTRA_CHECKS: dict[str, Callable[[Mapping[str, ParamSpec]], None]] = {
    "tpe": _check_tpe, "bohb": _check_bohb}


# ----------------------------------------------------------------------------- factories


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


def _random(ctx: BuildContext) -> SearchPlan:
    return _plan(ctx, _variants(ctx), None, sp.to_param_space(ctx.space),
                 ["random sampling with the basic variant generator (seeded)"])


def _grid(ctx: BuildContext) -> SearchPlan:
    size = sp.grid_size(ctx.space)
    notes = [f"exhaustive grid of {size} points; 'choice' parameters are enumerated like 'grid'"]
    if ctx.num_samples != 1:
        notes.append(f"search.num_samples={ctx.num_samples} ignored: each grid point runs once")
    return _plan(ctx, _variants(ctx), None, sp.grid_param_space(ctx.space), notes, num_samples=1)


def _asha(ctx: BuildContext) -> SearchPlan:
    from ray.tune.schedulers import ASHAScheduler

    o: AshaOptions = ctx.options
    scheduler = ASHAScheduler(time_attr=TIME_ATTR, max_t=ctx.max_t, grace_period=o.grace_period,
                              reduction_factor=o.reduction_factor, brackets=o.brackets)
    return _plan(ctx, _variants(ctx), scheduler, sp.to_param_space(ctx.space),
                 ["random sampling + asynchronous successive halving (early stopping)"])


def _hyperband(ctx: BuildContext) -> SearchPlan:
    from ray.tune.schedulers import HyperBandScheduler

    o: HyperBandOptions = ctx.options
    scheduler = HyperBandScheduler(time_attr=TIME_ATTR, max_t=ctx.max_t,
                                   reduction_factor=o.reduction_factor)
    return _plan(ctx, _variants(ctx), scheduler, sp.to_param_space(ctx.space),
                 ["random sampling + synchronous HyperBand", _PAUSE_NOTE])


def _bohb(ctx: BuildContext) -> SearchPlan:
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


def _pbt(ctx: BuildContext) -> SearchPlan:
    from ray.tune.schedulers import PopulationBasedTraining

    o: PbtOptions = ctx.options
    scheduler = PopulationBasedTraining(
        time_attr=TIME_ATTR, perturbation_interval=interval(o, ctx.max_t),
        hyperparam_mutations=pbt_mutations(ctx.space), quantile_fraction=o.quantile_fraction,
        resample_probability=o.resample_probability,
        custom_explore_fn=sp.SpaceClipper(ctx.space), synch=o.synch)
    return _plan(ctx, _variants(ctx), scheduler, sp.to_param_space(ctx.space), [
        _exploit_note(o, ctx.max_t), "mutations use Python's global `random` (not seeded)"])


def _pb2(ctx: BuildContext) -> SearchPlan:
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


def _tpe(ctx: BuildContext) -> SearchPlan:
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


def _bayesopt(ctx: BuildContext) -> SearchPlan:
    from ray.tune.search.bayesopt import BayesOptSearch

    o: BayesOptOptions = ctx.options
    searcher = BayesOptSearch(space=bayesopt_bounds(ctx.space), metric=ctx.metric, mode=ctx.mode,
                              utility_kwargs={"kind": o.utility, "kappa": o.kappa, "xi": o.xi},
                              random_state=ctx.seed, random_search_steps=o.random_search_steps)
    return _plan(ctx, _limit(searcher, ctx), None, {}, [
        f"GP-UCB/EI/POI ({o.utility}) after {o.random_search_steps} random points", _LOG10_NOTE,
        _concurrency_note(ctx)])


def _rl(ctx: BuildContext) -> SearchPlan:
    from asr_tune.tuning.rl import ReinforceSearcher

    o: RlOptions = ctx.options
    searcher = ReinforceSearcher(ctx.space, metric=ctx.metric, mode=ctx.mode, lr=o.lr,
                                 baseline_decay=o.baseline_decay, entropy_coef=o.entropy_coef,
                                 bins=o.bins, seed=ctx.seed,
                                 max_concurrent=ctx.model_concurrency())
    return _plan(ctx, searcher, None, {}, [
        f"REINFORCE controller; continuous parameters discretised into {o.bins} values",
        _concurrency_note(ctx, internal=True)])


# ----------------------------------------------------------------------------- registry


def _registry() -> dict[str, SearcherInfo]:
    return _REGISTRY


_REGISTRY: dict[str, SearcherInfo] = {info.name: info for info in [
    SearcherInfo("random", "random search", NoOptions, ALL_TYPES, True, False, _random),
    SearcherInfo("grid", "exhaustive grid", NoOptions, frozenset({"grid", "choice"}), False, False,
                 _grid),
    SearcherInfo("asha", "random + ASHA early stopping", AshaOptions, ALL_TYPES, True, False,
                 _asha),
    SearcherInfo("hyperband", "random + HyperBand", HyperBandOptions, ALL_TYPES, True, False,
                 _hyperband),
    SearcherInfo("bohb", "BOHB (TuneBOHB + HyperBandForBOHB)", BohbOptions, NO_GRID, True, False,
                 _bohb),
    SearcherInfo("pbt", "population based training", PbtOptions, NO_GRID, False, True, _pbt),
    SearcherInfo("pb2", "population based bandits", Pb2Options, sp.NUMERIC, False, True, _pb2),
    SearcherInfo("tpe", "tree-structured Parzen estimator (hyperopt)", TpeOptions, NO_GRID, True,
                 False, _tpe),
    SearcherInfo("bayesopt", "GP Bayesian optimisation (bayes_opt)", BayesOptOptions,
                 sp.CONTINUOUS, False, False, _bayesopt),
    SearcherInfo("rl", "REINFORCE controller (NAS with RL)", RlOptions, NO_GRID, True, False,
                 _rl),
]}
