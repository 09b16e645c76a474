"""What a searcher factory gets (:class:`BuildContext`) and returns (:class:`SearchPlan`).

Shared by the registry (:mod:`asr_tune.tuning.registry`, the name -> factory table) and the
factories (:mod:`asr_tune.tuning.factories`); no Ray at import time.

Usage::

    plan = registry.build_search(cfg.search, max_t=cfg.trainer.max_epochs)
    tune.TuneConfig(**plan.tune_config_kwargs())
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from asr_tune.config import ParamSpec
from asr_tune.tuning import space as sp
from asr_tune.tuning.options import SearcherOptions

TIME_ATTR = "training_iteration"
DEFAULT_MODEL_CONCURRENCY = 4


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
