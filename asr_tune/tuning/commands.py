"""CLI subcommands ``search`` and ``resume`` (see ``asr_tune.tuning.runner`` for the usage block)."""
from __future__ import annotations

import argparse


def _cmd_search(args: argparse.Namespace) -> int:
    from asr_tune.tuning.runner import search

    result = search(args.config, searcher=args.searcher, address=args.address, num_samples=args.num_samples,
                    storage=args.storage, name=args.name, overrides=args.set)
    print(result.summary())
    return 0


def _cmd_resume(args: argparse.Namespace) -> int:
    from asr_tune.tuning.runner import resume

    print(resume(args.experiment_dir, address=args.address).summary())
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("search", help="run a hyperparameter/architecture search on Ray Tune")
    s.add_argument("config")
    s.add_argument("--searcher", help="random, grid, asha, hyperband, bohb, pbt, pb2, tpe, bayesopt, rl")
    s.add_argument("--address", help="Ray cluster address (default: start a local Ray)")
    s.add_argument("--num-samples", type=int)
    s.add_argument("--storage", help="experiment storage: local dir or s3:// / gs:// URI")
    s.add_argument("--name", help="experiment name (default: <searcher>_<time>)")
    s.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    s.set_defaults(func=_cmd_search)

    r = sub.add_parser("resume", help="continue an interrupted search")
    r.add_argument("experiment_dir")
    r.add_argument("--address")
    r.set_defaults(func=_cmd_resume)
