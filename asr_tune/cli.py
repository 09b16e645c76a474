"""The ``asr-tune`` command line: thin wrappers over the Python API, no logic of its own.

Usage::

    asr-tune corpus synth --out data/synth
    asr-tune corpus synth --mode digits --out data/synth_digits --utterances 3000
    asr-tune corpus digits --src ../shared/data/fsdd --out data/fsdd_digits --test-speakers yweweler --dev-speakers lucas
    asr-tune train configs/synth_tiny.yaml [--set optim.lr=2e-3 ...] [--skip-bad-utterances]
    asr-tune evaluate runs/synth_tiny/checkpoints/best.ckpt --data data/synth/test.jsonl
    asr-tune loso configs/fsdd_digits.yaml --src ../shared/data/fsdd --out runs/loso [--speakers lucas]
    asr-tune search configs/synth_asha.yaml [--searcher tpe] [--address ADDR] [--num-samples 8]
    asr-tune resume runs/search/synth_asha
    asr-tune quantize CKPT --calib data/synth/dev.jsonl --data data/synth/test.jsonl
    asr-tune submit configs/synth_asha.yaml --address http://HEAD:8265
    asr-tune report runs/search/synth_asha --out results/report

Every user error (bad config key, bad audio, infeasible resources...) prints one ``error:`` line and
exits with status 2.
"""
from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys
import warnings
from typing import Callable, Sequence

from asr_tune.errors import AsrTuneError

# Modules that add their own subcommands with ``register(subparsers)``.
COMMAND_MODULES = (
    "asr_tune.tuning.commands",
    "asr_tune.quant.commands",
    "asr_tune.service.commands",
    "asr_tune.report.commands",
)


def _cmd_train(args: argparse.Namespace) -> int:
    from asr_tune.config import load_config
    from asr_tune.training.run import train

    extra = ["data.skip_bad_utterances=true"] if args.skip_bad_utterances else []
    cfg = load_config(args.config, [*args.set, *extra])
    result = train(cfg, evaluate_test=not args.no_test)
    best = (f"best val WER {result.best_val_wer:.2f}%" if result.metric == "val_wer"
            else f"best {result.metric} {result.best_score:.4f}")
    print(f"{best} after {result.epochs} epochs ({result.n_params / 1e6:.2f}M params, {result.wall_s:.0f} s)")
    if result.test:
        print(f"test WER {result.test['wer']:.2f}% on {result.test['n_utts']} utterances "
              f"({cfg.data.test})")
    print(f"best checkpoint: {result.best_checkpoint}")
    return 0


def _cmd_loso(args: argparse.Namespace) -> int:
    from asr_tune.config import load_config
    from asr_tune.training.loso import CorpusSizes, run_loso

    cfg = load_config(args.config, args.set)
    result = run_loso(cfg, args.src, args.out, speakers=args.speakers,
                      dev_speakers_per_fold=args.dev_speakers_per_fold,
                      sizes=CorpusSizes(args.n_train, args.n_dev, args.n_test, args.seed),
                      config_path=args.config)
    print(result.table())
    print(f"wrote {result.out_dir}/loso.json")
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from asr_tune.scoring import evaluate

    kwargs = {} if args.batch_seconds is None else {"batch_seconds": args.batch_seconds}
    stats = evaluate(args.checkpoint, args.data, out_json=args.out,
                     skip_bad_utterances=args.skip_bad_utterances, **kwargs)
    print(f"WER {stats.wer:.2f}%  (S={stats.substitutions} D={stats.deletions} I={stats.insertions} "
          f"N={stats.n_words}, {stats.n_utts} utterances)")
    if args.out:
        print(f"wrote {args.out}")
    return 0


def _cmd_synth(args: argparse.Namespace) -> int:
    from asr_tune.data.synth import build_synth_corpus

    paths = build_synth_corpus(args.out, n_utterances=args.utterances, seed=args.seed,
                               sample_rate=args.sample_rate, mode=args.mode)
    print(json.dumps({k: str(v) for k, v in paths.items()}, indent=2))
    return 0


def _cmd_digits(args: argparse.Namespace) -> int:
    from asr_tune.data.digits import build_digit_corpus

    paths = build_digit_corpus(args.src, args.out, test_speakers=tuple(args.test_speakers),
                               dev_speakers=None if args.dev_speakers is None else tuple(args.dev_speakers),
                               n_train=args.n_train, n_dev=args.n_dev, n_test=args.n_test, seed=args.seed)
    print(json.dumps({k: str(v) for k, v in paths.items()}, indent=2))
    return 0


def _search_preflight(cfg) -> None:
    from asr_tune.tuning.runner import preflight

    preflight(cfg)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="asr-tune", description=__doc__.split("\n")[0])
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train one model from a config")
    t.add_argument("config")
    t.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field by dotted path (repeatable)")
    t.add_argument("--no-test", action="store_true", help="skip the test-split evaluation")
    t.add_argument("--skip-bad-utterances", action="store_true",
                   help="skip undecodable/NaN/mis-declared audio with a warning (data.skip_bad_utterances)")
    t.set_defaults(func=_cmd_train)

    lo = sub.add_parser("loso", help="leave-one-speaker-out WER of one config on FSDD digits")
    lo.add_argument("config")
    lo.add_argument("--src", required=True, help="FSDD folder (with manifest.jsonl)")
    lo.add_argument("--out", required=True, help="folds go to OUT/<speaker>/, the summary to OUT/loso.json")
    lo.add_argument("--speakers", nargs="+", help="test speakers of the folds (default: every speaker)")
    lo.add_argument("--dev-speakers-per-fold", type=int, default=1)
    lo.add_argument("--n-train", type=int, default=1200)
    lo.add_argument("--n-dev", type=int, default=150)
    lo.add_argument("--n-test", type=int, default=300)
    lo.add_argument("--seed", type=int, default=0, help="corpus seed")
    lo.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a config field by dotted path (repeatable)")
    lo.set_defaults(func=_cmd_loso)

    e = sub.add_parser("evaluate", help="WER of a checkpoint (float or int8) on a manifest/folder")
    e.add_argument("checkpoint")
    e.add_argument("--data", required=True, help="JSONL manifest or LibriSpeech-layout folder")
    e.add_argument("--out", help="write WER details as JSON here")
    e.add_argument("--batch-seconds", type=float, default=None,
                   help="audio seconds per decoding batch (default: DECODE_BATCH_SECONDS, 60)")
    e.add_argument("--skip-bad-utterances", action="store_true")
    e.set_defaults(func=_cmd_evaluate)

    c = sub.add_parser("corpus", help="build a corpus manifest").add_subparsers(dest="corpus", required=True)
    s = c.add_parser("synth", help="the embedded synthetic corpus (eSpeak NG, offline)")
    s.add_argument("--out", required=True)
    s.add_argument("--utterances", type=int, default=1200)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--mode", choices=("sentences", "digits"), default="sentences",
                   help="sentences: digits + commands (default); digits: FSDD-shaped digit strings")
    s.add_argument("--sample-rate", type=int, default=None,
                   help="default: 16000 for sentences, 8000 for digits")
    s.set_defaults(func=_cmd_synth)
    d = c.add_parser("digits", help="connected-digit strings from isolated digits (FSDD)")
    d.add_argument("--src", required=True)
    d.add_argument("--out", required=True)
    d.add_argument("--test-speakers", nargs="+", default=["yweweler"])
    d.add_argument("--dev-speakers", nargs="+", default=None,
                   help="dev strings from these speakers only (speaker-disjoint train/dev/test); "
                        "default: dev from held-out recordings of the train speakers")
    d.add_argument("--n-train", type=int, default=3000)
    d.add_argument("--n-dev", type=int, default=300)
    d.add_argument("--n-test", type=int, default=500)
    d.add_argument("--seed", type=int, default=0)
    d.set_defaults(func=_cmd_digits)

    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as err:  # a layer not installed in this build
            if err.name != name:
                raise
            continue
        module.register(sub)
    if "submit" in sub.choices:  # the service layer cannot import tuning: hand it search's checks
        sub.choices["submit"].set_defaults(preflight=_search_preflight)
    return p


class _NoLightningTips(logging.Filter):
    """Drops Lightning's advertising lines ("💡 Tip: ... try installing litlogger/litmodels")."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "💡 Tip:" not in str(record.msg)


def configure_logging(verbose: bool = False) -> None:
    """The one logging set-up of the CLI: ``LEVEL name: message`` lines on stderr, asr-tune at INFO
    (DEBUG with ``-v``), other libraries at WARNING. Lightning ships its own console handler on the
    ``lightning`` logger; records stop there (``propagate = False``) instead of also reaching ours,
    so each Lightning line prints once, and its cloud-logger tips not at all."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("asr_tune").setLevel(logging.DEBUG if verbose else logging.INFO)
    logging.getLogger("lightning").propagate = False
    # Lightning 2.6 on torch >= 2.11 warns about its own use of a torch pytree API, on every fit
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        logger = logging.getLogger(name)  # where rank_zero_info records are made
        if not any(isinstance(f, _NoLightningTips) for f in logger.filters):
            logger.addFilter(_NoLightningTips())


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args.verbose)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return int(func(args) or 0)
    except AsrTuneError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
