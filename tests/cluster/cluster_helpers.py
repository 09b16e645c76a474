"""Helpers and the ``local_cluster`` fixture of the multi-node tests (imported as
``cluster_helpers``: tests/cluster is on sys.path; ``conftest.py`` re-exports the fixture).

The fixture is a real 3-node Ray cluster on this machine, started with ``cluster/local_cluster.sh
up`` (head + 2 workers x 2 declared GPUs, token auth, own temp dirs and ports) and always stopped
with ``local_cluster.sh down`` (never the machine-wide ``ray stop``).

Usage::

    .venv/bin/python -m pytest tests/cluster -q
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "cluster" / "local_cluster.sh"
VENV_BIN = Path(sys.executable).parent
RAY_ENV_VARS = ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN",
                "RAY_AUTH_TOKEN_PATH")
WORKERS, GPUS_PER_WORKER, CPUS_PER_WORKER = 2, 2, 2
# a killed node is declared dead after ~3 missed 1 s health checks instead of ~15 s (every Ray
# process of the cluster reads RAY_<setting> from its environment)
FAST_NODE_LOSS = {"RAY_health_check_period_ms": "1000", "RAY_health_check_timeout_ms": "1000",
                  "RAY_health_check_failure_threshold": "3"}


def clean_env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in RAY_ENV_VARS}
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env["HOME"] = str(home)
    env.update(extra)
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class LocalCluster:
    dir: Path
    url: str
    token_file: Path
    work: Path
    home: Path

    def script(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["bash", str(SCRIPT), *args, "--dir", str(self.dir)], capture_output=True,
                              text=True, timeout=timeout, env=clean_env(self.home, RAY_BIN=str(VENV_BIN / "ray")))

    def cli(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "asr_tune", *args, "--address", self.url, "--token-file",
                               str(self.token_file)], cwd=self.work, env=clean_env(self.home),
                              capture_output=True, text=True, timeout=timeout)

    def api(self, path: str, token: bool = True) -> Any:
        headers = {"Authorization": f"Bearer {self.token_file.read_text().strip()}"} if token else {}
        with urllib.request.urlopen(urllib.request.Request(self.url + path, headers=headers), timeout=30) as r:
            return json.loads(r.read().decode())

    def raylet_node_id(self, node: str) -> str:
        """The Ray node id of ``node`` (``w1``...), from its raylet's command line."""
        ps = subprocess.run(["ps", "-ww", "-eo", "args="], capture_output=True, text=True).stdout
        for line in ps.splitlines():
            args = line.split()
            if args and args[0].endswith("/raylet") and f"--temp_dir={self.dir / node}" in args:
                return next(a.split("=", 1)[1] for a in args if a.startswith("--node_id="))
        raise AssertionError(f"no raylet for {node}")


@pytest.fixture(scope="module")
def local_cluster() -> Iterator[LocalCluster]:
    if shutil.which("setsid") is None or shutil.which("ps") is None:
        pytest.skip("needs setsid and ps (Linux)")
    root = Path(tempfile.mkdtemp(prefix="alc-", dir="/tmp"))  # short: Unix socket paths <= 107 bytes
    home, work = root / "home", root / "work"
    home.mkdir()
    work.mkdir()
    cluster = LocalCluster(root / "c", "", root / "c" / "token", work, home)
    try:
        for _attempt in range(2):  # a free port can be taken between free_port() and `ray start`
            port = free_port()
            proc = subprocess.run(
                ["bash", str(SCRIPT), "up", "--dir", str(cluster.dir), "--workers", str(WORKERS),
                 "--gpus-per-worker", str(GPUS_PER_WORKER), "--cpus-per-worker", str(CPUS_PER_WORKER),
                 "--head-cpus", "1", "--dashboard-port", str(port)],
                capture_output=True, text=True, timeout=240,
                env=clean_env(home, RAY_BIN=str(VENV_BIN / "ray"), **FAST_NODE_LOSS))
            if proc.returncode == 0:
                break
        assert proc.returncode == 0, f"local_cluster.sh up failed:\n{proc.stdout}\n{proc.stderr}"
        cluster.url = f"http://127.0.0.1:{port}"
        yield cluster
    finally:
        cluster.script("down")
        shutil.rmtree(root, ignore_errors=True)


def read_results(trial_dir: Path) -> list[dict[str, Any]]:
    """A trial's reports so far (result.json: one JSON object a line; the last may be partial)."""
    out = []
    path = trial_dir / "result.json"
    if not path.is_file():
        return out
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            pass
    return out


def poll(predicate: Any, timeout: float, every: float = 0.3, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
