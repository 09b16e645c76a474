"""Reports of search experiments: read folders without Ray, tables, plots, searcher comparison.

Usage::

    asr-tune report runs/search/ci_search_tiny [more experiment dirs] [--out DIR]

    from asr_tune.report import load_experiment, make_report
    exp = load_experiment("runs/search/ci_search_tiny")
    rep = make_report(["runs/search/ci_search_tiny"], out="results/report")

Submodules: ``experiments`` (reading, on :mod:`asr_tune.tuning.folder`), ``plots`` (PNG figures),
``summary`` (``make_report``), ``compare`` (searchers side by side), ``commands`` (the CLI). The
tabular searcher benchmark that drives Ray Tune lives in :mod:`asr_tune.tuning.replay`.
Attributes are imported lazily so that ``import asr_tune.report`` stays cheap.
"""
from __future__ import annotations

from typing import Any

__all__ = ["Experiment", "TrialRecord", "load_experiment", "make_report", "print_report"]

_WHERE = {"Experiment": "experiments", "TrialRecord": "experiments", "load_experiment": "experiments",
          "make_report": "summary", "print_report": "summary"}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(f"asr_tune.report.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'asr_tune.report' has no attribute {name!r}")
