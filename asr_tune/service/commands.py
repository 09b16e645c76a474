"""CLI subcommands for the job service: ``submit``, ``status``, ``logs``, ``stop``, ``jobs``.

``asr_tune/cli.py`` calls :func:`register` on its subparsers; each subcommand sets
``func(args) -> int`` (the exit code). Errors are raised as ``ServiceError``/``ConfigError`` and
printed by the main CLI as one ``error: <message>`` line (exit 2).

Usage::

    export RAY_ADDRESS=http://127.0.0.1:8265          # the head's dashboard / Jobs API
    asr-tune submit configs/ci_search_tiny.yaml --token-file ~/.ray/auth_token --num-samples 4
    asr-tune submit configs/search.yaml --searcher tpe --name lr-sweep --working-dir \\
        --storage s3://bucket/asr-runs --set optim.lr=1e-3 --search-args="--set model.num_layers=4"
    asr-tune status                                  # the newest asr-tune job
    asr-tune status raysubmit_4Ck8mT2vQe1bLzJx --wait --timeout 600   # exit 0 iff it SUCCEEDED
    asr-tune logs raysubmit_4Ck8mT2vQe1bLzJx --follow
    asr-tune stop raysubmit_4Ck8mT2vQe1bLzJx
    asr-tune jobs --json
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import logging
import sys
import time
from typing import Any

from asr_tune.errors import ServiceError

_ADDRESS_HELP = ("Ray dashboard / Jobs API of the head, e.g. http://127.0.0.1:8265 "
                 "(default: $RAY_API_SERVER_ADDRESS, then $RAY_ADDRESS)")
_TOKEN_HELP = ("file holding the cluster's auth token (default: $RAY_AUTH_TOKEN, "
               "$RAY_AUTH_TOKEN_PATH, then ~/.ray/auth_token)")


def register(subparsers: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Add ``submit``, ``status``, ``logs``, ``stop`` and ``jobs`` to the main CLI."""
    _add_submit(subparsers)
    _add_status(subparsers)
    _add_logs(subparsers)
    _add_stop(subparsers)
    _add_jobs(subparsers)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--address", default=None, help=_ADDRESS_HELP)
    p.add_argument("--token-file", default=None, metavar="FILE", help=_TOKEN_HELP)


def _add_submit(sub: Any) -> None:
    p = sub.add_parser("submit", help="run `asr-tune search CONFIG` as a Ray Job on a head node",
                       description="Validate CONFIG locally, then submit `asr-tune search` as a Ray Job.")
    p.add_argument("config", help="experiment YAML (validated here before contacting the cluster)")
    _common(p)
    p.add_argument("--searcher", default=None, help="override search.searcher")
    p.add_argument("--name", default=None, help="experiment name (default: search.name or CONFIG-TIME)")
    p.add_argument("--num-samples", type=int, default=None, help="override search.num_samples")
    p.add_argument("--storage", default=None,
                   help="experiment storage (default: search.storage); shared, e.g. s3://bucket/path, "
                        "on multi-node clusters")
    p.add_argument("--working-dir", action="store_true",
                   help="also ship the local asr_tune source (runs `python -m asr_tune search`)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="config override forwarded to `asr-tune search --set` (repeatable; "
                        "validated here first)")
    p.add_argument("--search-args", default="", metavar="'ARGS'",
                   help="further arguments for `asr-tune search`, as one shell-quoted string")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=cmd_submit)


def _add_status(sub: Any) -> None:
    p = sub.add_parser("status", help="a job's state and its experiment's trials / best metric")
    p.add_argument("job_id", nargs="?", default=None, metavar="JOB",
                   help="submission id (default: the newest asr-tune job)")
    _common(p)
    p.add_argument("--wait", action="store_true", help="wait until the job ends; exit 0 iff SUCCEEDED")
    p.add_argument("--timeout", type=float, default=3600.0, help="seconds --wait waits (default 3600)")
    p.add_argument("--json", action="store_true", help="print the status as JSON")
    p.set_defaults(func=cmd_status)


def _add_logs(sub: Any) -> None:
    p = sub.add_parser("logs", help="a job's driver output")
    p.add_argument("job_id", metavar="JOB", help="submission id")
    _common(p)
    p.add_argument("--follow", "-f", action="store_true", help="stream until the job ends")
    p.set_defaults(func=cmd_logs)


def _add_stop(sub: Any) -> None:
    p = sub.add_parser("stop", help="stop a running job")
    p.add_argument("job_id", metavar="JOB", help="submission id")
    _common(p)
    p.set_defaults(func=cmd_stop)


def _add_jobs(sub: Any) -> None:
    p = sub.add_parser("jobs", help="list the jobs on the head")
    _common(p)
    p.add_argument("--json", action="store_true", help="print the list as JSON")
    p.set_defaults(func=cmd_jobs)


# --------------------------------------------------------------------------- handlers


def cmd_submit(args: argparse.Namespace) -> int:
    from asr_tune.service import jobs

    _quiet_ray()
    res = jobs.submit(args.config, address=args.address, searcher=args.searcher, name=args.name,
                      num_samples=args.num_samples, working_dir=args.working_dir,
                      extra_args=_search_args(args), storage=args.storage, token_file=args.token_file,
                      overrides=list(args.set), preflight=getattr(args, "preflight", None))
    if args.json:
        print(json.dumps(dataclasses.asdict(res)))
        return 0
    print(f"job id:     {res.job_id}")
    print(f"dashboard:  {res.dashboard_url}")
    print(f"experiment: {res.storage}/{res.name}")
    print(f"follow:     asr-tune logs {res.job_id} --follow")
    return 0


def _search_args(args: argparse.Namespace) -> tuple[str, ...]:
    import shlex

    try:
        return tuple(shlex.split(args.search_args or ""))
    except ValueError as err:
        raise ServiceError(f"--search-args {args.search_args!r}: {err}") from None


def cmd_status(args: argparse.Namespace) -> int:
    from asr_tune.service import jobs

    _quiet_ray()
    job_id = args.job_id
    if args.wait:
        if job_id is None:
            job_id = jobs.status(None, address=args.address, token_file=args.token_file,
                                 read_experiment=False).job_id
        jobs.wait(job_id, address=args.address, token_file=args.token_file, timeout_s=args.timeout)
    st = jobs.status(job_id, address=args.address, token_file=args.token_file)
    if args.json:
        print(json.dumps(dataclasses.asdict(st), default=str))
    else:
        _print_status(st)
    return 0 if not args.wait or st.status == "SUCCEEDED" else 1


def cmd_logs(args: argparse.Namespace) -> int:
    from asr_tune.service import jobs

    _quiet_ray()
    if not args.follow:
        sys.stdout.write(jobs.logs(args.job_id, address=args.address, token_file=args.token_file))
        return 0
    try:
        for chunk in jobs.logs(args.job_id, follow=True, address=args.address, token_file=args.token_file):
            sys.stdout.write(chunk)
            sys.stdout.flush()
    except KeyboardInterrupt:
        return 130
    return 0


def cmd_stop(args: argparse.Namespace) -> int:
    from asr_tune.service import jobs

    _quiet_ray()
    final = jobs.stop(args.job_id, address=args.address, token_file=args.token_file)
    print(f"{args.job_id}: {final}")
    return 0


def cmd_jobs(args: argparse.Namespace) -> int:
    from asr_tune.service import jobs

    _quiet_ray()
    listed = jobs.list_jobs(address=args.address, token_file=args.token_file)
    if args.json:
        print(json.dumps([dataclasses.asdict(j) for j in listed]))
        return 0
    from rich.table import Table

    table = Table(title="Ray jobs", show_lines=False)
    for col in ("job", "status", "name", "started", "duration", "entrypoint"):
        table.add_column(col, overflow="fold", no_wrap=col in ("job", "status"))
    for j in listed:
        table.add_row(j.job_id, _styled(j.status), j.name or "-", _fmt_time(j.start_time),
                      _fmt_duration(j.start_time, j.end_time), j.entrypoint)
    _console().print(table if listed else "no jobs")
    return 0


# --------------------------------------------------------------------------- printing


def _print_status(st: Any) -> None:
    from rich.table import Table

    console = _console()
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")
    table.add_row("job", st.job_id)
    table.add_row("status", _styled(st.status))
    if st.name:
        table.add_row("experiment", f"{st.metadata.get('storage', '')}/{st.name}")
    table.add_row("started", _fmt_time(st.start_time))
    table.add_row("duration", _fmt_duration(st.start_time, st.end_time))
    table.add_row("entrypoint", st.entrypoint)
    if st.message:
        table.add_row("message", st.message.strip().splitlines()[0])
    table.add_row("dashboard", st.dashboard_url)
    exp = st.experiment
    if exp is not None:
        counts = ", ".join(f"{n} {s}" for s, n in exp.counts.items()) or "none yet"
        table.add_row("trials", f"{exp.num_trials} ({counts})")
        best = "-" if exp.best is None else f"{exp.best:.4g} (trial {exp.best_trial})"
        table.add_row(f"best {exp.metric}", best)
    elif st.experiment_note:
        table.add_row("trials", st.experiment_note)
    console.print(table)
    if exp is not None and exp.trials:
        console.print(_placement_table(exp.trials))
    if exp is not None and exp.errors:
        console.print("[bold red]failed trials:[/]")
        for err in exp.errors:
            console.print(f"  {err.trial}: {err.message}", markup=False, highlight=False)
    if st.failure and not (exp and exp.errors):
        console.print("[bold red]job failed; last log lines:[/]")
        console.print(st.failure, markup=False, highlight=False)


def _placement_table(trials: list[Any]) -> Any:
    """Per trial: state, last epoch, the node and GPU ids of its last report, retries."""
    from rich.table import Table

    table = Table(title="trials", title_justify="left", box=None, pad_edge=False)
    for col in ("trial", "status", "epoch", "node", "gpu ids", "CUDA_VISIBLE_DEVICES", "device", "retries"):
        table.add_column(col, no_wrap=True)
    for t in trials:
        node = "/".join(n[:12] for n in t.node_id.split("/")) if t.node_id else "-"
        table.add_row(t.trial, t.status, "-" if t.epoch is None else str(t.epoch), node, t.gpu_ids or "-",
                      t.cuda_visible_devices or "-", t.accelerator or "-", str(t.retries))
    return table


def _console() -> Any:
    from rich.console import Console

    return Console(soft_wrap=False, width=None if sys.stdout.isatty() else 160)


def _styled(status: str) -> str:
    color = {"SUCCEEDED": "green", "FAILED": "red", "STOPPED": "yellow", "RUNNING": "cyan"}.get(status)
    return f"[{color}]{status}[/]" if color else status


def _fmt_time(ts: float | None) -> str:
    return dt.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S") if ts else "-"


def _fmt_duration(start: float | None, end: float | None) -> str:
    if not start:
        return "-"
    secs = int((end or time.time()) - start)
    return f"{secs // 3600}:{secs % 3600 // 60:02d}:{secs % 60:02d}"


def _quiet_ray() -> None:
    """Hide Ray's INFO chatter (package uploads, address guessing) from CLI output."""
    from asr_tune.service import jobs

    jobs.quiet_ray_logs(logging.WARNING)


__all__ = ["register", "ServiceError"]
