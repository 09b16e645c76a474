"""CLI subcommand ``report``: tables + PNG figures for one or several experiment folders.

Usage::

    asr-tune report runs/search/ci_search_tiny                      # -> runs/search/ci_search_tiny/report
    asr-tune report runs/search/asha runs/search/random --out results/report
    asr-tune report runs/search/asha --label "ASHA, 3 seeds" --top 20

Reads only files (trial ``result.json``/``progress.csv``, ``asr_tune_search.json``, ``best/``,
``int8/``): Ray need not be running. See ``asr_tune.report.summary`` for the files written.
"""
from __future__ import annotations

import argparse

from asr_tune.errors import AsrTuneError


class ReportError(AsrTuneError):
    """A folder that is not an experiment (printed as one ``error:`` line by the CLI)."""


def _cmd_report(args: argparse.Namespace) -> int:
    from asr_tune.report.summary import make_report, print_report

    try:
        report = make_report(args.experiment_dirs, out=args.out, labels=args.label or None)
    except ValueError as err:
        raise ReportError(str(err)) from None
    print_report(report, max_trials=args.top)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    r = sub.add_parser("report", help="tables and plots of one or several search experiments",
                       description="Tables (printed, CSV, JSON) and PNG plots of search experiments: "
                                   "best val WER vs compute per searcher, trials stopped early, "
                                   "the best config, float vs int8 when int8 reports exist.")
    r.add_argument("experiment_dirs", nargs="+", metavar="EXPERIMENT_DIR",
                   help="experiment folder(s) written by `asr-tune search` (or any Ray Tune run)")
    r.add_argument("--out", help="output folder (default: FIRST_EXPERIMENT_DIR/report)")
    r.add_argument("--label", action="append", default=[],
                   help="legend label per experiment, in order (repeatable; default: name (searcher))")
    r.add_argument("--top", type=int, default=10, help="trials printed per experiment (default 10)")
    r.set_defaults(func=_cmd_report)
