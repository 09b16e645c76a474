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
``model.dropout``, ``tokenizer.*``, ``features.n_mels``): a restored checkpoint cannot take them;
nor ``optim.optimizer``/``optim.schedule``, whose restored state belongs to the old value.
bayesopt and pb2 model values linearly, so a loguniform parameter reaches them as
``<name>@log10`` (uniform in log10 space); :func:`asr_tune.tuning.space.trial_overrides` maps it
back. Everything uses ``time_attr="training_iteration"``; the search's ``seed`` is passed wherever
the library takes one. Schedulers get no metric/mode (pass ``plan.metric``/``plan.mode`` to
``tune.TuneConfig``, e.g. ``tune.TuneConfig(**plan.tune_config_kwargs())``); searchers that hold
their own space get them at construction, since Tune does not forward them with an empty
``param_space``. Concurrency: pass the cap as ``build_search(..., max_concurrent=k)`` (see
there); model-based searchers need one, or Tune pre-suggests trials before any result arrives.
A plan's objects are stateful: build one plan per ``Tuner``.

The factories themselves live in :mod:`asr_tune.tuning.factories`, the option models in
:mod:`asr_tune.tuning.options` and the plan/context types in :mod:`asr_tune.tuning.plan`; this
module is the table, the checks that run before a factory, and option parsing.

Usage::

    from asr_tune.tuning.registry import build_search, searcher_names
    plan = build_search(cfg.search, max_t=cfg.trainer.max_epochs, max_concurrent=4)
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from pydantic import ValidationError

from asr_tune.config import ParamSpec, SearchConfig
from asr_tune.errors import SearchError
from asr_tune.tuning import factories as f
from asr_tune.tuning import space as sp
from asr_tune.tuning.native import (  # also re-exported from here
    bayesopt_bounds, config_space, hyperopt_space, pb2_bounds, pbt_mutations)
from asr_tune.tuning.options import (  # also re-exported from here
    AshaOptions, BayesOptOptions, BohbOptions, HyperBandOptions, NoOptions, Pb2Options,
    PbtOptions, PerturbationOptions, RlOptions, SearcherOptions, TpeOptions, format_option_error,
    interval)
from asr_tune.tuning.plan import (  # also re-exported from here
    DEFAULT_MODEL_CONCURRENCY, TIME_ATTR, BuildContext, SearcherInfo, SearchPlan)

__all__ = [
    "ALL_TYPES", "DEFAULT_MODEL_CONCURRENCY", "MAX_BOHB_CATEGORIES", "NO_GRID", "TIME_ATTR",
    "BuildContext", "SearchPlan", "SearcherInfo", "build_search", "changes_shapes",
    "check_compatible", "searcher_info", "searcher_names",
    # from options.py
    "AshaOptions", "BayesOptOptions", "BohbOptions", "HyperBandOptions", "NoOptions",
    "Pb2Options", "PbtOptions", "PerturbationOptions", "RlOptions", "SearcherOptions",
    "TpeOptions", "interval", "parse_all_options", "parse_options",
    # from plan.py: DEFAULT_MODEL_CONCURRENCY, TIME_ATTR, BuildContext, SearchPlan, SearcherInfo
    # from native.py
    "bayesopt_bounds", "config_space", "hyperopt_space", "pb2_bounds", "pbt_mutations"]

ALL_TYPES = frozenset({"uniform", "loguniform", "quniform", "randint", "choice", "grid"})
NO_GRID = ALL_TYPES - {"grid"}
MAX_BOHB_CATEGORIES = 256
_SHAPE_SAFE = frozenset({"model.dropout"})
MUTATION_UNSAFE_OPTIM = frozenset({"optim.optimizer", "optim.schedule"})  # PBT/PB2 may not mutate
FILL_BRACKETS = frozenset({"hyperband"})
"""Synchronous HyperBand only halves a bracket once all its trials exist: Tune must create every
trial up front (no ``max_concurrent_trials`` cap; resources still limit how many run at once),
else a cap below the bracket size keeps every bracket unfilled and HyperBand never stops a trial."""
_SHAPE_PREFIXES = ("model.", "tokenizer.", "features.n_mels")


# ----------------------------------------------------------------------------- the table


def searcher_names() -> list[str]:
    """The registered searcher names, in registry order."""
    return list(_registry())


def searcher_info(name: str) -> SearcherInfo:
    """The registry entry for ``name``; ``SearchError`` listing the valid names if unknown."""
    table = _registry()
    if name not in table:
        raise SearchError(f"unknown searcher '{name}'; valid searchers: {', '.join(table)}")
    return table[name]


def parse_all_options(raw: Mapping[str, Mapping[str, Any]]) -> dict[str, SearcherOptions]:
    """Typed options for every searcher (defaults where absent); errors name searcher and key."""
    names = searcher_names()
    unknown = sorted(set(raw) - set(names))
    if unknown:
        raise SearchError(f"search.options: unknown searcher '{unknown[0]}'; valid searchers: "
                          f"{', '.join(names)}")
    return {name: parse_options(name, raw.get(name) or {}) for name in names}


def parse_options(name: str, raw: Mapping[str, Any]) -> SearcherOptions:
    """The typed options of searcher ``name`` from ``raw``; ``SearchError`` naming bad keys."""
    model = searcher_info(name).options
    if not isinstance(raw, Mapping):
        raise SearchError(f"search.options.{name}: expected a mapping, got {type(raw).__name__}")
    try:
        return model.model_validate(dict(raw))
    except ValidationError as err:
        raise SearchError(format_option_error(name, model, err)) from None


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
        if info.mutates and pname in MUTATION_UNSAFE_OPTIM:
            able = [n for n, i in _registry().items() if not i.mutates
                    and spec.type in i.param_types]
            raise SearchError(f"searcher '{name}' cannot tune '{pname}': a restored checkpoint's "
                              "optimiser/schedule state belongs to the old value (Adam moments "
                              "into SGD fail, AdamW->Adam keeps decoupled decay); searchers that "
                              f"can tune it: {', '.join(able)}")
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


# ----------------------------------------------------------------------------- registry


def _registry() -> dict[str, SearcherInfo]:
    return _REGISTRY


_REGISTRY: dict[str, SearcherInfo] = {info.name: info for info in [
    SearcherInfo("random", "random search", NoOptions, ALL_TYPES, True, False, f.build_random),
    SearcherInfo("grid", "exhaustive grid", NoOptions, frozenset({"grid", "choice"}), False, False,
                 f.build_grid),
    SearcherInfo("asha", "random + ASHA early stopping", AshaOptions, ALL_TYPES, True, False,
                 f.build_asha),
    SearcherInfo("hyperband", "random + HyperBand", HyperBandOptions, ALL_TYPES, True, False,
                 f.build_hyperband),
    SearcherInfo("bohb", "BOHB (TuneBOHB + HyperBandForBOHB)", BohbOptions, NO_GRID, True, False,
                 f.build_bohb),
    SearcherInfo("pbt", "population based training", PbtOptions, NO_GRID, False, True, f.build_pbt),
    SearcherInfo("pb2", "population based bandits", Pb2Options, sp.NUMERIC, False, True, f.build_pb2),
    SearcherInfo("tpe", "tree-structured Parzen estimator (hyperopt)", TpeOptions, NO_GRID, True,
                 False, f.build_tpe),
    SearcherInfo("bayesopt", "GP Bayesian optimisation (bayes_opt)", BayesOptOptions,
                 sp.CONTINUOUS, False, False, f.build_bayesopt),
    SearcherInfo("rl", "REINFORCE controller (NAS with RL)", RlOptions, NO_GRID, True, False,
                 f.build_rl),
]}
