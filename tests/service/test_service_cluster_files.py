"""Fast checks of cluster/: shell syntax, option handling, and YAML structure of every manifest."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

CLUSTER = Path(__file__).resolve().parents[2] / "cluster"
SCRIPTS = sorted(CLUSTER.glob("*.sh"))
MANIFESTS = sorted(CLUSTER.glob("*.yaml"))


def test_cluster_dir_has_the_expected_files() -> None:
    names = {p.name for p in CLUSTER.iterdir()}
    assert {"start_head.sh", "start_worker.sh", "autoscaler-gpu.yaml", "kuberay-raycluster.yaml",
            "kuberay-rayjob.yaml", "README.md"} <= names


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_shell_syntax(script: Path) -> None:
    proc = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert os.access(script, os.X_OK), f"{script.name} is not executable"


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck not installed")
@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_shellcheck(script: Path) -> None:
    proc = subprocess.run(["shellcheck", "-S", "warning", str(script)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_help_and_unknown_option(script: Path) -> None:
    ok = subprocess.run(["bash", str(script), "--help"], capture_output=True, text=True, timeout=30)
    assert ok.returncode == 0 and "Usage:" in ok.stdout
    bad = subprocess.run(["bash", str(script), "--no-such-option"], capture_output=True, text=True,
                         timeout=30, env={**os.environ, "ASR_TUNE_HEAD_ADDRESS": "127.0.0.1:1"})
    assert bad.returncode == 2 and "unknown option" in bad.stderr


def test_worker_requires_address() -> None:
    env = {k: v for k, v in os.environ.items() if k != "ASR_TUNE_HEAD_ADDRESS"}
    proc = subprocess.run(["bash", str(CLUSTER / "start_worker.sh")], capture_output=True, text=True,
                          timeout=30, env=env)
    assert proc.returncode == 2 and "--address" in proc.stderr


def test_worker_requires_token(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")}
    env["HOME"] = str(tmp_path)  # no ~/.ray/auth_token
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    proc = subprocess.run(["bash", str(CLUSTER / "start_worker.sh"), "--address", "127.0.0.1:1"],
                          capture_output=True, text=True, timeout=30, env=env)
    assert proc.returncode == 2 and "token" in proc.stderr


def test_stop_with_unknown_temp_dir_is_a_no_op(tmp_path: Path) -> None:
    proc = subprocess.run(["bash", str(CLUSTER / "start_head.sh"), "stop", "--temp-dir",
                           str(tmp_path / "nothing-here")], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0 and "no running head" in proc.stderr


def _load(name: str) -> dict:
    data = yaml.safe_load((CLUSTER / name).read_text())
    assert isinstance(data, dict)
    return data


@pytest.mark.parametrize("manifest", MANIFESTS, ids=lambda p: p.name)
def test_yaml_parses(manifest: Path) -> None:
    assert isinstance(yaml.safe_load(manifest.read_text()), dict)


def test_autoscaler_yaml() -> None:
    cfg = _load("autoscaler-gpu.yaml")
    assert cfg["provider"]["type"] == "aws"
    types = cfg["available_node_types"]
    assert cfg["head_node_type"] in types
    gpu = [t for t in types.values() if t.get("resources", {}).get("GPU")]
    assert gpu and gpu[0]["max_workers"] >= 1
    assert any("asr-tune" in c for c in cfg["setup_commands"])
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        assert any("RAY_AUTH_MODE=token" in c for c in cfg[key]), key
    assert "~/.ray/auth_token" in cfg["file_mounts"]


def test_autoscaler_yaml_matches_rays_schema() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    import importlib.util

    spec = importlib.util.find_spec("ray")
    if spec is None or spec.origin is None:
        pytest.skip("ray not installed")
    schema_path = Path(spec.origin).parent / "autoscaler" / "ray-schema.json"
    jsonschema.validate(_load("autoscaler-gpu.yaml"), json.loads(schema_path.read_text()))


def _containers(group: dict) -> list[dict]:
    return group["template"]["spec"]["containers"]


def test_kuberay_raycluster() -> None:
    rc = _load("kuberay-raycluster.yaml")
    assert rc["apiVersion"] == "ray.io/v1" and rc["kind"] == "RayCluster"
    spec = rc["spec"]
    assert spec["rayVersion"].startswith("2.60")
    assert spec["authOptions"]["mode"] == "token"
    assert _containers(spec["headGroupSpec"])
    gpu_groups = [g for g in spec["workerGroupSpecs"]
                  if any("nvidia.com/gpu" in c["resources"]["limits"] for c in _containers(g))]
    assert gpu_groups and gpu_groups[0]["maxReplicas"] >= 1


def test_kuberay_rayjob() -> None:
    job = _load("kuberay-rayjob.yaml")
    assert job["apiVersion"] == "ray.io/v1" and job["kind"] == "RayJob"
    spec = job["spec"]
    assert spec["entrypoint"].startswith("asr-tune search ")
    assert "--address auto" in spec["entrypoint"] and "--storage" in spec["entrypoint"]
    cluster = spec["rayClusterSpec"]
    assert cluster["authOptions"]["mode"] == "token"
    assert any("nvidia.com/gpu" in c["resources"]["limits"]
               for g in cluster["workerGroupSpecs"] for c in _containers(g))
