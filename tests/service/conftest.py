"""Fixtures for the job-service tests: a real, isolated Ray head started with cluster/start_head.sh.

The head gets its own ``--temp-dir`` under /tmp (short: Unix socket paths are limited to 107
bytes), the GCS on ``--port 0`` (Ray picks a free port), free ports for the dashboard / Ray Client /
dashboard agent, its own worker-port range and a fresh token file. It is stopped with
``start_head.sh stop --temp-dir DIR``, which only kills that head's processes (never the
machine-wide ``ray stop``), so other Ray instances on the machine survive.

Usage::

    .venv/bin/python -m pytest tests/service -q            # all (slow ones start one head)
    .venv/bin/python -m pytest tests/service -q -m "not slow"
"""
from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

REPO = Path(__file__).resolve().parents[2]
CLUSTER = REPO / "cluster"
VENV_BIN = Path(sys.executable).parent
RAY_ENV_VARS = ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN",
                "RAY_AUTH_TOKEN_PATH")


@dataclass
class Head:
    url: str
    token_file: Path
    temp_dir: Path
    work: Path  # scratch dir for configs / storage / the isolated HOME of CLI calls


def clean_env(home: Path, **extra: str) -> dict[str, str]:
    """The test process's environment without any Ray address/token, with an isolated HOME
    (so a ~/.ray/auth_token left by another local Ray cannot leak into a test)."""
    env = {k: v for k, v in os.environ.items() if k not in RAY_ENV_VARS}
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env["HOME"] = str(home)
    env.update(extra)
    return env


def run_cli(*args: str, home: Path, timeout: float = 120, **env: str) -> subprocess.CompletedProcess[str]:
    """``python -m asr_tune ARGS`` in a clean environment; output captured as text."""
    return subprocess.run([sys.executable, "-m", "asr_tune", *args], cwd=REPO, env=clean_env(home, **env),
                          capture_output=True, text=True, timeout=timeout)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stop_head(temp_dir: Path, home: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(CLUSTER / "start_head.sh"), "stop", "--temp-dir", str(temp_dir)],
                          env=clean_env(home), capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="session")
def ray_head() -> Iterator[Head]:
    """A Ray head on loopback with token auth, for the whole test session; stopped at the end."""
    if shutil.which("setsid") is None or shutil.which("ps") is None:
        pytest.skip("needs setsid and ps (Linux)")
    work = Path(tempfile.mkdtemp(prefix="asrt-"))
    temp_dir, home = work / "ray", work / "home"
    home.mkdir()
    token_file = work / "token"
    for _attempt in range(2):  # a free port can be taken between free_port() and `ray start`
        dash_port = free_port()
        low = random.randrange(20000, 29000, 200)
        cmd = ["bash", str(CLUSTER / "start_head.sh"), "--temp-dir", str(temp_dir),
               "--dashboard-host", "127.0.0.1", "--dashboard-port", str(dash_port),
               "--port", "0", "--client-port", str(free_port()),
               "--agent-port", str(free_port()), "--token-file", str(token_file), "--num-cpus", "2",
               "--", f"--min-worker-port={low}", f"--max-worker-port={low + 199}"]
        proc = subprocess.run(cmd, env=clean_env(home, RAY_BIN=str(VENV_BIN / "ray")), capture_output=True,
                              text=True, timeout=180)
        if proc.returncode == 0:
            break
    head = Head(url=f"http://127.0.0.1:{dash_port}", token_file=token_file, temp_dir=temp_dir, work=work)
    try:
        assert proc.returncode == 0, f"start_head.sh failed:\n{proc.stdout}\n{proc.stderr}"
        assert token_file.read_text().strip(), "start_head.sh did not create the token file"
        yield head
    finally:
        stop_head(temp_dir, home)
        shutil.rmtree(work, ignore_errors=True)


class Cli:
    """Runs ``python -m asr_tune`` with a clean env and an isolated HOME (see ``run_cli``)."""

    def __init__(self, home: Path) -> None:
        self.home = home

    def __call__(self, *args: str, timeout: float = 120, **env: str) -> subprocess.CompletedProcess[str]:
        return run_cli(*args, home=self.home, timeout=timeout, **env)


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    home = tmp_path / "home"
    home.mkdir()
    return Cli(home)
