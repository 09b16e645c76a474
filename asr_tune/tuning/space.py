"""Search spaces -> Ray Tune param spaces, and trial configs -> overrides (the tuning half).

What a parameter is and which values it may take lives in the config layer
(:mod:`asr_tune.space_spec`: ``ParamSpec``, ``validate_space``, bounds and grids), so a bad space is
rejected when the config loads. This module translates a valid space for Ray Tune and the
searchers, and turns a trial's config back into the dotted overrides to apply to the base
``ExperimentConfig``:

* :func:`validate_space` checks a space against ``ExperimentConfig``'s fields (the config's own
  check, for spaces built outside a config); it raises ``ConfigError``.
* :func:`to_param_space` builds a flat Tune ``param_space`` (``tune.uniform`` ... ``grid_search``).
  Conditional parameters become ``tune.sample_from`` domains whose sampler draws from the seeded
  Tune RNG when their condition holds and yields :data:`INACTIVE` otherwise (random/ASHA/HyperBand).
* :func:`trial_overrides` (Ray-free, in ``space_spec``; re-exported here) maps a trial config
  back to overrides: it decodes log10-encoded keys
  (``"optim.lr@log10"``, used for GP-based searchers), flattens the nested groups that the TPE
  encoding of conditionals produces, drops inactive conditionals and converts numpy scalars.
* :func:`validate_values` checks sampled values against their bounds; :class:`SpaceClipper` snaps
  PBT/PB2 perturbations back into bounds.

Nothing here imports Ray at module import time; Tune domains are built inside the functions.

Usage::

    from asr_tune.tuning.space import to_param_space, trial_overrides
    param_space = to_param_space(cfg.search.space)
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from asr_tune import space_spec
from asr_tune.config import ExperimentConfig, ParamSpec
from asr_tune.errors import SearchError
from asr_tune.space_spec import (  # noqa: F401  (re-exported: the searchers use them from here)
    CONTINUOUS,
    DISCRETE,
    INACTIVE,
    LOG10_SUFFIX,
    MAX_GRID_POINTS,
    NUMERIC,
    clean,
    conditional_names,
    conditional_order,
    describe,
    grid_indices,
    is_active,
    quantized_bounds,
    quantized_values,
    same_value,
    trial_overrides,
    value_in_bounds,
)

def validate_space(space: Mapping[str, ParamSpec]) -> None:
    """Check a search space on its own (independent of the searcher); raise ``ConfigError``."""
    space_spec.validate_space(space, ExperimentConfig().to_dict())


def validate_values(overrides: Mapping[str, Any], space: Mapping[str, ParamSpec]) -> None:
    """Raise ``SearchError`` if a sampled value is outside its parameter's domain.

    Active parameters must be present; parameters whose ``when`` condition is false must be absent
    (``overrides`` is what :func:`trial_overrides` returns).
    """
    for name, spec in space.items():
        active = is_active(spec, overrides)
        if name not in overrides:
            if active:
                raise SearchError(f"parameter '{name}' is active but was not sampled")
            continue
        if not active:
            raise SearchError(f"parameter '{name}' was sampled although its condition "
                              f"{spec.when} does not hold")
        value = overrides[name]
        if not value_in_bounds(spec, value):
            raise SearchError(f"parameter '{name}': sampled value {value!r} is outside its domain "
                              f"{describe(spec)}")


def snap(spec: ParamSpec, value: float) -> Any:
    """The nearest value ``spec`` can take (for numeric params); used to repair perturbations."""
    if spec.type in ("choice", "grid"):
        return value
    if spec.type == "randint":
        return int(min(max(round(value), spec.low), spec.high - 1))
    value = min(max(float(value), spec.low), spec.high)
    if spec.type == "quniform":
        first, last = grid_indices(spec)
        return clean(min(max(round(value / spec.q), first), last) * spec.q)
    return value


# ----------------------------------------------------------------------------- Tune param spaces


def tune_domain(spec: ParamSpec) -> Any:
    """The Tune domain for one (unconditional) parameter; ``grid`` becomes ``tune.grid_search``."""
    from ray import tune

    if spec.type == "uniform":
        return tune.uniform(spec.low, spec.high)
    if spec.type == "loguniform":
        return tune.loguniform(spec.low, spec.high)
    if spec.type == "quniform":
        return tune.quniform(spec.low, spec.high, spec.q)
    if spec.type == "randint":
        return tune.randint(int(spec.low), int(spec.high))
    if spec.type == "choice":
        return tune.choice(list(spec.values or []))
    return tune.grid_search(list(spec.values or []))


def log10_domain(spec: ParamSpec) -> Any:
    """``tune.uniform`` over ``[log10 low, log10 high]`` for a loguniform parameter."""
    from ray import tune

    low, high = log10_bounds(spec)
    return tune.uniform(low, high)


def log10_bounds(spec: ParamSpec) -> tuple[float, float]:
    return math.log10(spec.low), math.log10(spec.high)


def to_param_space(space: Mapping[str, ParamSpec], log10: bool = False) -> dict[str, Any]:
    """A flat Tune ``param_space`` keyed by the dotted names.

    Conditional parameters become ``tune.sample_from`` domains resolved by the basic variant
    generator (random search, ASHA, HyperBand); model-based searchers get their own encodings in
    the registry. With ``log10=True`` loguniform parameters are exposed as ``uniform`` over
    ``name@log10`` (for searchers that model values linearly).
    """
    from ray import tune

    out: dict[str, Any] = {}
    for name in conditional_order(space):
        spec = space[name]
        if log10 and spec.type == "loguniform":
            if spec.when:
                raise SearchError(f"parameter '{name}': log10 encoding of a conditional parameter "
                                  "is not supported")
            out[name + LOG10_SUFFIX] = log10_domain(spec)
        elif spec.when:
            sampler = ConditionalSampler(name, tune_domain(spec), dict(spec.when))
            domain = tune.sample_from(sampler)
            domain.set_sampler(sampler, allow_override=True)
            out[name] = domain
        else:
            out[name] = tune_domain(spec)
    return out


def grid_param_space(space: Mapping[str, ParamSpec]) -> dict[str, Any]:
    """Every ``grid``/``choice`` parameter as ``tune.grid_search`` (the exhaustive grid searcher)."""
    from ray import tune

    return {name: tune.grid_search(list(spec.values or [])) for name, spec in space.items()}


def grid_size(space: Mapping[str, ParamSpec]) -> int:
    return math.prod(len(spec.values or []) for spec in space.values())


class ConditionalSampler:
    """Tune sampler (and ``sample_from`` callable) for a parameter with a ``when`` condition.

    Installed as the sampler of a ``tune.sample_from`` domain so that the basic variant generator
    calls :meth:`sample` with its seeded RNG. It reads the parents from the partially resolved
    config (Tune retries while a parent is still unresolved) and returns either a draw from the
    inner domain or :data:`INACTIVE`.
    """

    def __init__(self, name: str, inner: Any, when: dict[str, list[Any]]):
        self.name = name
        self.inner = inner
        self.when = when

    def sample(self, domain: Any = None, config: Any = None, size: int = 1,
               random_state: Any = None) -> Any:
        items = [self._one(config, random_state) for _ in range(size)]
        return items if size > 1 else items[0]

    def __call__(self, config: Any) -> Any:
        return self._one(config, None)

    def _one(self, config: Any, random_state: Any) -> Any:
        values = config["config"] if config is not None and "config" in config else config
        for parent, allowed in self.when.items():
            value = values[parent]  # raises RecursiveDependencyError while unresolved
            if value == INACTIVE or not any(same_value(value, a) for a in allowed):
                return INACTIVE
        return self.inner.sample(random_state=random_state)

    def __repr__(self) -> str:
        return f"ConditionalSampler({self.name!r} when {self.when})"


class SpaceClipper:
    """``custom_explore_fn`` for PBT/PB2: snaps perturbed values back into their domains.

    PBT multiplies continuous values by 0.8/1.2 without bounds and PB2 returns float32 values; this
    clamps them into ``[low, high]``, snaps ``quniform`` to its grid and ``randint`` to integers.
    Keys may carry the ``@log10`` suffix (clamped in log10 space).
    """

    def __init__(self, space: Mapping[str, ParamSpec]):
        self.space = dict(space)

    def __call__(self, config: dict[str, Any]) -> dict[str, Any]:
        for key, value in list(config.items()):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            if key.endswith(LOG10_SUFFIX) and key[: -len(LOG10_SUFFIX)] in self.space:
                low, high = log10_bounds(self.space[key[: -len(LOG10_SUFFIX)]])
                config[key] = float(min(max(float(value), low), high))
            elif key in self.space and self.space[key].type in NUMERIC:
                config[key] = snap(self.space[key], value)
        return config
