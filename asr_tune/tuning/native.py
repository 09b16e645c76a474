"""Search spaces in the searchers' own formats, built from ``search.space`` (:class:`ParamSpec`).

PBT ``hyperparam_mutations``, PB2 ``hyperparam_bounds``, BayesOpt bounds, a ConfigSpace for BOHB
(``when`` as (And)InConditions) and a nested hyperopt space for TPE. Used by the factories in
:mod:`asr_tune.tuning.registry`; ConfigSpace and hyperopt are imported inside the functions only.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from asr_tune.config import ParamSpec
from asr_tune.tuning import space as sp


def pbt_mutations(space: Mapping[str, ParamSpec]) -> dict[str, Any]:
    """PBT ``hyperparam_mutations``: lists (shifted left/right) for discrete, domains otherwise."""
    out: dict[str, Any] = {}
    for name, spec in space.items():
        if spec.type == "choice":
            out[name] = list(spec.values or [])
        elif spec.type == "randint" and spec.high - spec.low <= sp.MAX_GRID_POINTS:
            out[name] = list(range(int(spec.low), int(spec.high)))
        elif spec.type == "quniform" and len(sp.quantized_values(spec)) < sp.MAX_GRID_POINTS:
            out[name] = sp.quantized_values(spec)
        else:
            out[name] = sp.tune_domain(spec)
    return out


def pb2_bounds(space: Mapping[str, ParamSpec]) -> dict[str, list[float]]:
    """PB2 ``hyperparam_bounds`` (loguniform in log10 space under ``<name>@log10``)."""
    out: dict[str, list[float]] = {}
    for name, spec in space.items():
        if spec.type == "loguniform":
            out[name + sp.LOG10_SUFFIX] = list(sp.log10_bounds(spec))
        elif spec.type == "randint":
            out[name] = [float(spec.low), float(spec.high - 1)]
        elif spec.type == "quniform":
            out[name] = list(sp.quantized_bounds(spec))
        else:
            out[name] = [float(spec.low), float(spec.high)]
    return out


def bayesopt_bounds(space: Mapping[str, ParamSpec]) -> dict[str, tuple[float, float]]:
    """BayesOpt ``space`` bounds (loguniform in log10 space under ``<name>@log10``)."""
    bounds: dict[str, tuple[float, float]] = {}
    for name, spec in space.items():
        if spec.type == "loguniform":
            bounds[name + sp.LOG10_SUFFIX] = sp.log10_bounds(spec)
        else:
            bounds[name] = (float(spec.low), float(spec.high))
    return bounds


def config_space(space: Mapping[str, ParamSpec], seed: int | None = None) -> Any:
    """A ``ConfigSpace.ConfigurationSpace`` for BOHB, with ``when`` as (And)InConditions."""
    import ConfigSpace as CS

    cs = CS.ConfigurationSpace(seed=seed)
    hps = {name: _cs_param(CS, name, spec) for name, spec in space.items()}
    cs.add(list(hps.values()))
    for name, spec in space.items():
        if spec.when:
            conds = [CS.InCondition(hps[name], hps[parent],
                                    [_cs_value(space[parent], v) for v in values])
                     for parent, values in spec.when.items()]
            cs.add(conds[0] if len(conds) == 1 else CS.AndConjunction(*conds))
    return cs


def _cs_param(CS: Any, name: str, spec: ParamSpec) -> Any:
    if spec.type in ("uniform", "loguniform"):
        return CS.UniformFloatHyperparameter(name, lower=spec.low, upper=spec.high,
                                             log=spec.type == "loguniform")
    if spec.type == "randint":
        return CS.UniformIntegerHyperparameter(name, lower=int(spec.low), upper=int(spec.high) - 1)
    if spec.type == "quniform":
        return CS.CategoricalHyperparameter(name, choices=sp.quantized_values(spec))
    return CS.CategoricalHyperparameter(name, choices=list(spec.values or []))


def _cs_value(parent: ParamSpec, value: Any) -> Any:
    if parent.type == "quniform":
        return min(sp.quantized_values(parent), key=lambda g: abs(g - value))
    if parent.type == "randint":
        return int(value)
    return next(v for v in parent.values or [] if sp.same_value(v, value))


def hyperopt_space(space: Mapping[str, ParamSpec]) -> dict[str, Any]:
    """A native hyperopt space; a choice parent with conditional children becomes
    ``hp.choice(parent, [{parent: value, child: node, ...}, ...])`` (shared child nodes)."""
    children: dict[str, list[str]] = {}
    for name, spec in space.items():
        for parent in spec.when or {}:
            children.setdefault(parent, []).append(name)
    memo: dict[str, Any] = {}

    def build(name: str) -> Any:
        if name not in memo:
            memo[name] = _hp_node(name, space, children, build)
        return memo[name]

    return {name: build(name) for name, spec in space.items() if not spec.when}


def _hp_node(name: str, space: Mapping[str, ParamSpec], children: dict[str, list[str]],
             build: Callable[[str], Any]) -> Any:
    from hyperopt import hp

    spec = space[name]
    if spec.type == "choice" and name in children:
        branches = []
        for value in spec.values or []:
            branch = {name: value}
            for child in children[name]:
                if sp.is_active(space[child], {name: value}):
                    branch[child] = build(child)
            branches.append(branch)
        return hp.choice(name, branches)
    if spec.type == "choice":
        return hp.choice(name, list(spec.values or []))
    if spec.type == "uniform":
        return hp.uniform(name, spec.low, spec.high)
    if spec.type == "loguniform":
        return hp.loguniform(name, math.log(spec.low), math.log(spec.high))
    if spec.type == "randint":
        return hp.uniformint(name, int(spec.low), int(spec.high) - 1)
    low, high = sp.quantized_bounds(spec)
    return hp.quniform(name, low, high, spec.q)
