"""Shared helpers for the benchmark scripts: machine info, JSON output, small table printing, and
the training benchmarks' plumbing (quiet steps, the synthetic corpus, a config on it).

Every benchmark writes ``machine_info()`` next to its numbers, so a result file says where and
with what it was measured (CPU model, cores, GPU if any, library versions, date, git commit).
``asr_tune`` is imported only inside the functions that need it.

Usage::

    python benchmarks/common.py                  # print this machine's info as JSON

    from benchmarks.common import machine_info, write_json, print_table   # from the repo root
    from common import machine_info        # inside a script run as `python benchmarks/x.py`
    info = machine_info()
    write_json("results/x/result.json", {"machine": info, "rows": rows})
    print_table(rows, ["name", "value"], title="My benchmark")
"""
from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import json
import logging
import os
import platform
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

REPO = Path(__file__).resolve().parents[1]


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


SIMD_FLAGS = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16",
              "avx_vnni", "amx_bf16", "amx_int8")


def _cpu_flags() -> list[str]:
    """The SIMD flags that move int8 and speed ratios (from /proc/cpuinfo)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                have = set(line.split(":", 1)[1].split())
                return [f for f in SIMD_FLAGS if f in have]
    except OSError:
        pass
    return []


def _usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _memory_gb() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 1)
    except (OSError, ValueError, IndexError):
        pass
    return None


def _version(module: str) -> str | None:
    try:
        from importlib.metadata import version

        return version(module)
    except Exception:
        return None


def _gpus() -> list[dict[str, Any]]:
    """Visible CUDA devices via torch (if importable); empty on CPU-only machines."""
    try:
        import torch

        if not torch.cuda.is_available():
            return []
        out = []
        for i in range(torch.cuda.device_count()):
            p = torch.cuda.get_device_properties(i)
            out.append({"index": i, "name": p.name, "memory_gb": round(p.total_memory / 2**30, 1)})
        return out
    except Exception:
        return []


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                             text=True, timeout=5, check=False)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def machine_info() -> dict[str, Any]:
    """Where a benchmark ran: CPU, cores, memory, GPUs, Python/torch/ray/lightning versions, date."""
    return {
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "hostname": platform.node(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_model": _cpu_model(),
        "cpu_flags": _cpu_flags(),
        "cpu_cores_usable": _usable_cores(),
        "cpu_cores_total": os.cpu_count(),
        "memory_gb": _memory_gb(),
        "gpus": _gpus(),
        "torch_threads": _torch_threads(),
        "versions": {name: _version(name) for name in
                     ("torch", "ray", "lightning", "hyperopt", "hpbandster", "ConfigSpace",
                      "bayesian-optimization", "numpy", "pandas", "onnxruntime", "asr-tune")},
        "git_commit": _git_commit(),
        "argv": list(sys.argv),
    }


def _torch_threads() -> int | None:
    try:
        import torch

        return int(torch.get_num_threads())
    except Exception:
        return None


def machine_line(info: dict[str, Any] | None = None) -> str:
    """A one-line summary for printed output."""
    i = info or machine_info()
    gpu = ", ".join(g["name"] for g in i.get("gpus") or []) or "no GPU"
    v = i.get("versions", {})
    flags = "/".join(f for f in i.get("cpu_flags") or [] if f.startswith(("avx512_vnni", "avx2", "amx")))
    return (f"{i['cpu_model']} ({i['cpu_cores_usable']} usable cores, {flags or 'no AVX2'}), {gpu}; torch {v.get('torch')}, "
            f"ray {v.get('ray')}, lightning {v.get('lightning')}; {i['date']}")


def _jsonable(obj: Any) -> Any:
    if hasattr(obj, "item") and callable(obj.item) and getattr(obj, "ndim", 1) == 0:
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serializable: {type(obj).__name__}")


def _finite(obj: Any) -> Any:
    """NaN/inf floats -> None, recursively (strict JSON)."""
    if isinstance(obj, float):
        return obj if obj == obj and obj not in (float("inf"), float("-inf")) else None
    if isinstance(obj, dict):
        return {str(k): _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def write_json(path: str | Path, data: Any) -> Path:
    """Write ``data`` as indented JSON (numpy scalars and Paths converted), creating parent dirs."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(_finite(data), indent=1, default=_jsonable) + "\n")
    return p


def format_table(rows: Iterable[dict[str, Any]], columns: Sequence[str],
                 title: str | None = None) -> str:
    """A plain fixed-width text table (no dependency), floats with 3 significant decimals."""
    def cell(v: Any) -> str:
        if v is None:
            return "-"
        if isinstance(v, float):
            return f"{v:.3g}" if abs(v) < 1e4 else f"{v:.0f}"
        return str(v)

    body = [[cell(r.get(c)) for c in columns] for r in rows]
    widths = [max([len(c)] + [len(b[i]) for b in body]) for i, c in enumerate(columns)]
    lines = [title] if title else []
    lines.append("  ".join(c.ljust(w) for c, w in zip(columns, widths)))
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(v.ljust(w) for v, w in zip(b, widths)) for b in body]
    return "\n".join(lines)


def print_table(rows: Iterable[dict[str, Any]], columns: Sequence[str],
                title: str | None = None) -> None:
    print(format_table(list(rows), columns, title), flush=True)


# ---- training benchmarks ---------------------------------------------------------------------
@contextlib.contextmanager
def quiet(log_file: Path) -> Iterator[None]:
    """Send the output of a noisy step (Lightning, Ray, spawned workers) to ``log_file``.

    Redirects file descriptors 1 and 2, so child processes and C-level writes are caught too.
    """
    log_file.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(log_file, "a") as fh:
        os.dup2(fh.fileno(), 1)
        os.dup2(fh.fileno(), 2)
        try:
            with contextlib.redirect_stdout(fh), contextlib.redirect_stderr(fh):
                yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def ensure_corpus(root: Path, utterances: int, log_dir: Path) -> Path:
    """The embedded synthetic corpus of ``utterances`` utterances under ``root`` (built once)."""
    from asr_tune.data.synth import build_synth_corpus

    out = root / f"bench_synth_{utterances}"
    if not all((out / f"{s}.jsonl").exists() for s in ("train", "dev", "test")):
        print(f"building the synthetic corpus ({utterances} utterances) in {out} ...", flush=True)
        with quiet(log_dir / "corpus.log"):
            build_synth_corpus(out, n_utterances=utterances, seed=0)
    return out


def corpus_config(corpus: Path, model: Mapping[str, Any], epochs: int, threads: int,
                  overrides: Mapping[str, Any] | None = None) -> Any:
    """An ``ExperimentConfig`` training ``model`` (dotted overrides) on ``corpus`` for ``epochs``
    epochs with ``threads`` torch threads, never synthesising a corpus; plus ``overrides``."""
    from asr_tune.config import load_config

    ov: dict[str, Any] = dict(model)
    ov.update({f"data.{s}": str((corpus / f"{s}.jsonl").resolve()) for s in ("train", "dev", "test")})
    ov.update({"trainer.max_epochs": epochs, "trainer.threads": threads, "data.synth_if_missing": False})
    ov.update(overrides or {})
    return load_config(None, ov)


def print_footer(info: dict[str, Any], load_before: Sequence[float], result: dict[str, Any],
                 *written: Path) -> None:
    """The closing lines of a benchmark: machine, load average before/after, total time, files."""
    print(f"machine: {machine_line(info)}")
    print(f"load average before/after: {load_before[0]:.1f} / {result['loadavg_after'][0]:.1f}")
    print(f"total {result['total_s']:.0f} s; wrote {', '.join(str(p) for p in written)}")


def bench_parser(doc: str, quick_help: str, out_default: str) -> argparse.ArgumentParser:
    """The options every training benchmark takes: --quick, --out, --data, --utterances."""
    p = argparse.ArgumentParser(description=doc.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help=quick_help)
    p.add_argument("--out", default=out_default, help="output folder (default %(default)s)")
    p.add_argument("--data", default="data", help="where the synthetic corpus is built/reused")
    p.add_argument("--utterances", type=int, help="corpus size (overrides the mode's)")
    return p


def silence(loggers: Iterable[str]) -> None:
    """Ignore warnings and keep only errors from ``loggers`` (the measured runs are noisy)."""
    warnings.filterwarnings("ignore")
    for name in loggers:
        logging.getLogger(name).setLevel(logging.ERROR)


def save_figure(fig: Any, path: Path) -> None:
    """Lay out ``fig``, write it to ``path`` (110 dpi) and close it."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    print(json.dumps(machine_info(), indent=1))
