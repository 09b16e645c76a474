"""Typed per-searcher options (``search.options.<name>``) and their parsing.

Each registered searcher (see :mod:`asr_tune.tuning.registry`) has a pydantic model here; unknown
keys are rejected and errors name the searcher and the key. A model's ``check`` cross-checks the
options against the run (``max_t``, ``num_samples``) once ``registry.build_search`` knows them.
Which model belongs to which searcher is recorded in the registry table only, so parsing
(``registry.parse_options`` / ``registry.parse_all_options``) lives there; this module imports
nothing of the registry.
"""
from __future__ import annotations

from typing import Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from asr_tune.errors import SearchError


class BuildContext(Protocol):
    """What option checks read of ``asr_tune.tuning.plan.BuildContext`` (no import: plan imports us)."""

    name: str
    max_t: int
    num_samples: int


class SearcherOptions(BaseModel):
    """Base of the per-searcher option models (``search.options.<name>``)."""

    model_config = ConfigDict(extra="forbid")

    def check(self, ctx: BuildContext) -> None:
        """Cross-checks against the run (``max_t``, ``num_samples``); raise ``SearchError``."""


class NoOptions(SearcherOptions):
    pass


class AshaOptions(SearcherOptions):
    grace_period: int = Field(1, ge=1, description="epochs before a trial can be stopped")
    reduction_factor: float = Field(3.0, gt=1)
    brackets: int = Field(1, ge=1)

    def check(self, ctx: BuildContext) -> None:
        _at_most(ctx, "grace_period", self.grace_period, ctx.max_t)


class HyperBandOptions(SearcherOptions):
    reduction_factor: float = Field(3.0, gt=1)


class BohbOptions(SearcherOptions):
    reduction_factor: float = Field(3.0, gt=1)
    max_concurrent: int = Field(0, ge=0, description="0 = the run's cap")


class PerturbationOptions(SearcherOptions):
    """Shared by PBT and PB2: perturb every ``perturbation_interval`` iterations of a population."""

    perturbation_interval: int | None = Field(None, ge=1, description="default max_t // 4")
    quantile_fraction: float = Field(0.25, ge=0.0, le=0.5)

    def check(self, ctx: BuildContext) -> None:
        _below(ctx, "perturbation_interval", interval(self, ctx.max_t), ctx.max_t)
        _population(ctx)


class PbtOptions(PerturbationOptions):
    resample_probability: float = Field(0.25, ge=0.0, le=1.0)
    synch: bool = False


class Pb2Options(PerturbationOptions):
    synch: bool = False


class TpeOptions(SearcherOptions):
    n_initial_points: int = Field(10, ge=1, description="random suggestions before TPE")
    gamma: float = Field(0.25, gt=0.0, lt=1.0)
    max_concurrent: int = Field(0, ge=0, description="0 = the run's cap")


class BayesOptOptions(SearcherOptions):
    random_search_steps: int = Field(10, ge=1)
    utility: Literal["ucb", "ei", "poi"] = "ucb"
    kappa: float = Field(2.576, ge=0.0)
    xi: float = Field(0.0, ge=0.0)
    max_concurrent: int = Field(0, ge=0, description="0 = the run's cap")


class RlOptions(SearcherOptions):
    lr: float = Field(0.2, gt=0.0, le=100.0)
    baseline_decay: float = Field(0.9, ge=0.0, lt=1.0)
    entropy_coef: float = Field(0.01, ge=0.0)
    bins: int = Field(8, ge=2, le=1000, description="randint/quniform grids with more values get a "
                      "Gaussian policy (uniform/loguniform always do)")
    max_concurrent: int = Field(0, ge=0, description="0 = the run's cap")


def interval(opts: PerturbationOptions, max_t: int) -> int:
    """PBT/PB2 perturbation interval: the option, else ``max_t // 4`` (at least 1)."""
    return opts.perturbation_interval or max(1, max_t // 4)


def _at_most(ctx: BuildContext, key: str, value: float, bound: float) -> None:
    if value > bound:
        raise SearchError(f"search.options.{ctx.name}.{key}={value} must be <= max_t={bound}")


def _below(ctx: BuildContext, key: str, value: float, bound: float) -> None:
    if value >= bound:
        raise SearchError(f"search.options.{ctx.name}.{key}={value} must be < max_t={bound} "
                          "(otherwise no trial is ever perturbed)")


def _population(ctx: BuildContext) -> None:
    if ctx.num_samples < 2:
        raise SearchError(f"searcher '{ctx.name}' needs a population: search.num_samples="
                          f"{ctx.num_samples} must be >= 2")


# ----------------------------------------------------------------------------- errors


def format_option_error(name: str, model: type[SearcherOptions], err: ValidationError) -> str:
    msgs = []
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"])
        if e["type"] == "extra_forbidden":
            valid = ", ".join(model.model_fields) or "none"
            msgs.append(f"search.options.{name}: unknown key '{key}' (valid keys: {valid})")
        else:
            msgs.append(f"search.options.{name}.{key}: {e['msg']} (got {e.get('input')!r})")
    return "; ".join(msgs)
