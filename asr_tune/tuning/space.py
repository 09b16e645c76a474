"""Search spaces: ``dict[str, ParamSpec]`` -> Ray Tune param spaces, and trial configs -> overrides.

A search space is keyed by the dotted config path each parameter overrides (``"optim.lr"``). This
module turns it into what Ray Tune and the searchers take, and turns a trial's config back into
the dotted overrides to apply to the base ``ExperimentConfig``:

* :func:`validate_space` checks the space itself (keys exist in the config schema, integer bounds,
  a non-empty quantization grid, well-formed ``when`` conditions); it raises ``ConfigError``.
* :func:`to_param_space` builds a flat Tune ``param_space`` (``tune.uniform`` ... ``grid_search``).
  Conditional parameters become ``tune.sample_from`` domains whose sampler draws from the seeded
  Tune RNG when their condition holds and yields :data:`INACTIVE` otherwise (random/ASHA/HyperBand).
* :func:`trial_overrides` maps a trial config back to overrides: it decodes log10-encoded keys
  (``"optim.lr@log10"``, used for GP-based searchers), flattens the nested groups that the TPE
  encoding of conditionals produces, drops inactive conditionals and converts numpy scalars.
* :func:`validate_values` checks sampled values against their bounds; :class:`SpaceClipper` snaps
  PBT/PB2 perturbations back into bounds.

Conventions (as in Ray Tune): ``randint`` is ``[low, high)`` (high exclusive); ``quniform`` takes
the multiples of ``q`` inside ``[low, high]``; ``grid`` enumerates every value.

Nothing here imports Ray at module import time; Tune domains are built inside the functions.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from asr_tune.config import ExperimentConfig, ParamSpec, get_dotted
from asr_tune.errors import ConfigError, SearchError

INACTIVE = "<inactive>"
"""Value a conditional parameter takes in a trial config when its ``when`` condition is false."""

LOG10_SUFFIX = "@log10"
"""Key suffix for a loguniform parameter that a searcher sees in log10 space (bayesopt, pb2)."""

CONTINUOUS = frozenset({"uniform", "loguniform"})
NUMERIC = frozenset({"uniform", "loguniform", "quniform", "randint"})
DISCRETE = frozenset({"quniform", "randint", "choice", "grid"})
MAX_GRID_POINTS = 10_000

_REL_TOL = 1e-9


# ----------------------------------------------------------------------------- space validation


def validate_space(space: Mapping[str, ParamSpec]) -> None:
    """Check a search space on its own (independent of the searcher); raise ``ConfigError``."""
    defaults = ExperimentConfig().to_dict()
    for name, spec in space.items():
        _check_key(name, defaults)
        _check_bounds(name, spec)
    for name, spec in space.items():
        if spec.when:
            _check_condition(name, spec, space)
    conditional_order(space)


def _check_key(name: str, defaults: dict[str, Any]) -> None:
    if name.endswith(LOG10_SUFFIX) or name.startswith("_"):
        raise ConfigError(f"search.space: '{name}' is a reserved name")
    try:
        value = get_dotted(defaults, name)
    except ConfigError:
        raise ConfigError(f"search.space: unknown config key '{name}'") from None
    if isinstance(value, dict):
        raise ConfigError(f"search.space: '{name}' is a config section, not a field")


def _check_bounds(name: str, spec: ParamSpec) -> None:
    where = f"search.space.{name}"
    if spec.type == "randint":
        if not (float(spec.low).is_integer() and float(spec.high).is_integer()):
            raise ConfigError(f"{where}: randint needs integer low/high (got {spec.low}, {spec.high})")
        if spec.high - spec.low < 1:
            raise ConfigError(f"{where}: randint [low, high) is empty")
    if spec.type == "quniform":
        count = len(quantized_values(spec, limit=MAX_GRID_POINTS + 1))
        if count == 0:
            raise ConfigError(f"{where}: no multiple of q={spec.q} lies in [{spec.low}, {spec.high}]")
    if spec.when and spec.type == "grid":
        raise ConfigError(f"{where}: a conditional parameter cannot be of type 'grid'; use 'choice'")


def _check_condition(name: str, spec: ParamSpec, space: Mapping[str, ParamSpec]) -> None:
    where = f"search.space.{name}.when"
    for parent, values in (spec.when or {}).items():
        if parent == name:
            raise ConfigError(f"{where}: a parameter cannot depend on itself")
        if parent not in space:
            raise ConfigError(f"{where}: '{parent}' is not a parameter of the search space")
        if not values:
            raise ConfigError(f"{where}.{parent}: needs at least one value")
        pspec = space[parent]
        if pspec.type in CONTINUOUS:
            raise ConfigError(f"{where}.{parent}: cannot condition on a continuous parameter "
                              f"(type {pspec.type}); use choice, grid, randint or quniform")
        for value in values:
            if not value_in_bounds(pspec, value):
                raise ConfigError(f"{where}.{parent}: {value!r} is not a value '{parent}' can take")


def conditional_order(space: Mapping[str, ParamSpec]) -> list[str]:
    """Parameter names with every ``when`` parent before its children; ``ConfigError`` on a cycle."""
    order: list[str] = []
    state: dict[str, int] = {}

    def visit(name: str, path: tuple[str, ...]) -> None:
        if state.get(name) == 2:
            return
        if state.get(name) == 1:
            raise ConfigError(f"search.space: conditional cycle {' -> '.join(path + (name,))}")
        state[name] = 1
        for parent in (space[name].when or {}):
            if parent in space:
                visit(parent, path + (name,))
        state[name] = 2
        order.append(name)

    for key in space:
        visit(key, ())
    return order


def conditional_names(space: Mapping[str, ParamSpec]) -> list[str]:
    return [name for name, spec in space.items() if spec.when]


def is_active(spec: ParamSpec, values: Mapping[str, Any]) -> bool:
    """Whether ``spec``'s ``when`` condition holds for the (already chosen) ``values``."""
    for parent, allowed in (spec.when or {}).items():
        value = values.get(parent, INACTIVE)
        if value == INACTIVE or not any(same_value(value, a) for a in allowed):
            return False
    return True


def same_value(a: Any, b: Any) -> bool:
    """Equality with a float tolerance (sampled floats vs. listed values)."""
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return math.isclose(float(a), float(b), rel_tol=_REL_TOL, abs_tol=1e-12)
    return bool(a == b)


# ----------------------------------------------------------------------------- values and grids


def _grid_indices(spec: ParamSpec) -> tuple[int, int]:
    q = float(spec.q)
    return math.ceil(spec.low / q - _REL_TOL), math.floor(spec.high / q + _REL_TOL)


def quantized_values(spec: ParamSpec, limit: int = MAX_GRID_POINTS) -> list[float]:
    """The multiples of ``q`` in ``[low, high]`` (at most ``limit`` of them)."""
    first, last = _grid_indices(spec)
    return [_clean(k * spec.q) for k in range(first, min(last, first + limit - 1) + 1)]


def quantized_bounds(spec: ParamSpec) -> tuple[float, float]:
    """The smallest and largest multiple of ``q`` in ``[low, high]``."""
    first, last = _grid_indices(spec)
    return _clean(first * spec.q), _clean(last * spec.q)


def _clean(value: float) -> float:
    return float(f"{value:.12g}")


def value_in_bounds(spec: ParamSpec, value: Any) -> bool:
    """Whether ``value`` is one that ``spec`` can produce (with a small float tolerance)."""
    if spec.type in ("choice", "grid"):
        return any(same_value(value, v) for v in spec.values or [])
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        return False
    tol = _REL_TOL * max(abs(spec.low), abs(spec.high), 1e-12)
    if spec.type == "randint":
        return float(value).is_integer() and spec.low <= value < spec.high
    if not spec.low - tol <= value <= spec.high + tol:
        return False
    if spec.type == "quniform":
        steps = value / spec.q
        return math.isclose(steps, round(steps), rel_tol=1e-6, abs_tol=1e-6)
    return True


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


def describe(spec: ParamSpec) -> str:
    if spec.type in ("choice", "grid"):
        return f"{spec.type}{spec.values}"
    if spec.type == "quniform":
        return f"quniform[{spec.low}, {spec.high}] step {spec.q}"
    if spec.type == "randint":
        return f"randint[{int(spec.low)}, {int(spec.high)})"
    return f"{spec.type}[{spec.low}, {spec.high}]"


def snap(spec: ParamSpec, value: float) -> Any:
    """The nearest value ``spec`` can take (for numeric params); used to repair perturbations."""
    if spec.type in ("choice", "grid"):
        return value
    if spec.type == "randint":
        return int(min(max(round(value), spec.low), spec.high - 1))
    value = min(max(float(value), spec.low), spec.high)
    if spec.type == "quniform":
        first, last = _grid_indices(spec)
        return _clean(min(max(round(value / spec.q), first), last) * spec.q)
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


# ----------------------------------------------------------------------------- trial configs


def trial_overrides(trial_config: Mapping[str, Any],
                    space: Mapping[str, ParamSpec] | None = None) -> dict[str, Any]:
    """The dotted overrides a trial applies to the base config.

    Decodes ``name@log10`` keys, flattens nested groups (TPE's conditional encoding), drops
    :data:`INACTIVE` values and metadata keys starting with ``_``, converts numpy scalars to Python
    values. With ``space`` it also keeps only the space's keys and drops parameters whose ``when``
    condition does not hold for the trial.
    """
    flat: dict[str, Any] = {}
    _flatten_into(flat, trial_config)
    out: dict[str, Any] = {}
    for key, value in flat.items():
        if key.startswith("_") or _is_inactive(value):
            continue
        if key.endswith(LOG10_SUFFIX):
            key, value = key[: -len(LOG10_SUFFIX)], 10.0 ** float(value)
        out[key] = value
    if space is not None:
        out = _restrict(out, space)
    return out


def _flatten_into(out: dict[str, Any], mapping: Mapping[str, Any]) -> None:
    for key, value in mapping.items():
        if isinstance(value, Mapping):
            _flatten_into(out, value)
        else:
            out[str(key)] = _native(value)


def _is_inactive(value: Any) -> bool:
    return isinstance(value, str) and value == INACTIVE


def _native(value: Any) -> Any:
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", 1) == 0:
        return value.item()
    if isinstance(value, (list, tuple)):
        return type(value)(_native(v) for v in value)
    return value


def _restrict(values: dict[str, Any], space: Mapping[str, ParamSpec]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in conditional_order(space):
        spec = space[name]
        if name in values and is_active(spec, out):
            value = values[name]
            if spec.type == "loguniform" and isinstance(value, float):
                value = min(max(value, spec.low), spec.high)  # 10**log10(x) round-off
            if spec.type == "randint" and isinstance(value, float) and value.is_integer():
                value = int(value)
            out[name] = value
    return {name: out[name] for name in space if name in out}


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
