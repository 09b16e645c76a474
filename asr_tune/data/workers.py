"""Worker subprocesses for corpus synthesis: round-robin shards of JSON tasks, results as lines.

A worker is ``python -m <module> --worker`` (for the synthetic corpus ``asr_tune.data.synth``): it
reads its tasks as one JSON list on stdin and prints ``ok <index> <n_samples>`` per rendered
utterance, or ``error <message>`` and exits non-zero. Subprocesses rather than ``multiprocessing``
avoid re-importing the caller's main module.
"""
from __future__ import annotations

import json
import os
import selectors
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Iterator

from asr_tune.errors import DataError


def worker_count(n_tasks: int) -> int:
    """How many worker subprocesses for ``n_tasks`` (1 = render in-process): up to 4 CPUs."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    if n_tasks < 200 or cpus < 2:
        return 1
    return min(cpus, 4)


def run_workers(tasks: list[dict], n_workers: int, module: str) -> Iterator[tuple[int, int]]:
    """Run ``tasks`` in ``n_workers`` subprocesses ``python -m <module> --worker`` (round-robin
    shards); yields (index, n_samples) as they finish. ``DataError`` on a worker's error."""
    pkg_root = str(Path(__file__).resolve().parents[2])
    env = dict(os.environ)
    env["PYTHONPATH"] = pkg_root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.setdefault("OMP_NUM_THREADS", "1")
    procs: list[subprocess.Popen] = []
    err_files: list = []
    sel = selectors.DefaultSelector()
    try:
        for k in range(n_workers):
            shard = tasks[k::n_workers]
            err_file = tempfile.TemporaryFile(mode="w+")
            p = subprocess.Popen([sys.executable, "-m", module, "--worker"], env=env,
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err_file,
                                 text=True)
            procs.append(p)
            err_files.append(err_file)
            feeder = threading.Thread(target=_feed, args=(p, shard), daemon=True)
            feeder.start()
            sel.register(p.stdout, selectors.EVENT_READ, p)
        open_streams = n_workers
        while open_streams:
            for key, _ in sel.select():
                line = key.fileobj.readline()
                if not line:
                    sel.unregister(key.fileobj)
                    open_streams -= 1
                    continue
                kind, _, rest = line.rstrip("\n").partition(" ")
                if kind == "ok":
                    idx, n = rest.split()
                    yield int(idx), int(n)
                elif kind == "error":
                    raise DataError(rest)
        for p, err_file in zip(procs, err_files):
            if p.wait() != 0:
                err_file.seek(0)
                err = err_file.read().strip().splitlines()
                raise DataError(f"speech synthesis worker failed (exit {p.returncode}): "
                                f"{err[-1] if err else 'no message'}")
    finally:
        sel.close()
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait()
            for stream in (p.stdin, p.stdout):
                try:
                    stream.close()
                except (OSError, ValueError):
                    pass
        for err_file in err_files:
            err_file.close()


def _feed(proc: subprocess.Popen, shard: list[dict]) -> None:
    try:
        proc.stdin.write(json.dumps(shard))
        proc.stdin.close()
    except (BrokenPipeError, OSError, ValueError):
        pass
