"""Submit and manage ``asr-tune search`` runs as Ray Jobs on a (remote) Ray head node.

A thin layer over :class:`ray.job_submission.JobSubmissionClient` that

* validates the config locally (``load_config``) before any network traffic;
* ships the config (and, with ``working_dir=True``, the local ``asr_tune`` source) as the job's
  runtime-env ``working_dir`` and runs ``asr-tune search <config> --address auto --storage ...``
  (inside a job ``RAY_ADDRESS`` is the cluster's GCS address, so ``auto`` attaches to that cluster);
* sends Ray's token-auth header (``Authorization: Bearer <token>``) read from ``--token-file``,
  ``RAY_AUTH_TOKEN``, ``RAY_AUTH_TOKEN_PATH`` or ``~/.ray/auth_token``;
* turns every failure a user can cause (no address, unreachable head, wrong port, missing or wrong
  token, unknown job id) into a one-line :class:`~asr_tune.errors.ServiceError`;
* enriches a job's status with the Tune experiment it writes (``<storage>/<name>``, recorded in the
  job's metadata at submit time): trial counts by state, best metric so far, failing trials' errors.

Address/token resolution, the connection check and error translation live in
:mod:`asr_tune.service.client`, reading the experiment state in :mod:`asr_tune.service.experiment`;
their public names are re-exported here.

Usage::

    from asr_tune.service import jobs
    res = jobs.submit("configs/ci_search_tiny.yaml", address="http://127.0.0.1:8265",
                      token_file="~/.ray/auth_token", num_samples=4)
    print(res.job_id, res.dashboard_url)
    st = jobs.status(res.job_id, address="http://127.0.0.1:8265")
    print(st.status, st.experiment and st.experiment.best)
    print(jobs.logs(res.job_id, address="http://127.0.0.1:8265"))
    for chunk in jobs.logs(res.job_id, follow=True, address="http://127.0.0.1:8265"):
        print(chunk, end="")
    jobs.stop(res.job_id, address="http://127.0.0.1:8265")
    for job in jobs.list_jobs(address="http://127.0.0.1:8265"):
        print(job.job_id, job.status, job.name)

``address`` and the token default to ``RAY_ADDRESS`` (or ``RAY_API_SERVER_ADDRESS``) and
``RAY_AUTH_TOKEN`` / ``RAY_AUTH_TOKEN_PATH`` / ``~/.ray/auth_token``.
"""
from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Literal, Sequence, overload

import yaml

from asr_tune.errors import ServiceError
from asr_tune.service.client import (  # also re-exported from here
    ADDRESS_ENV_VARS, CONNECT_TIMEOUT_S, DEFAULT_TOKEN_FILE, READ_TIMEOUT_S, TOKEN_ENV_VAR,
    TOKEN_PATH_ENV_VAR, Connection, Token, connect, first_line, quiet_ray_logs, resolve_address,
    resolve_token, translate_errors)
from asr_tune.service.experiment import (  # also re-exported from here
    ExperimentSummary, TrialError, read_experiment)

__all__ = [
    "LOG_TAIL_LINES", "METADATA_TAG", "TERMINAL", "JobStatus", "JobSummary", "SubmitResult",
    "build_entrypoint", "list_jobs", "logs", "status", "stop", "submit", "submit_entrypoint",
    "wait",
    # from client.py
    "ADDRESS_ENV_VARS", "CONNECT_TIMEOUT_S", "DEFAULT_TOKEN_FILE", "READ_TIMEOUT_S",
    "TOKEN_ENV_VAR", "TOKEN_PATH_ENV_VAR", "Connection", "Token", "connect", "quiet_ray_logs",
    "resolve_address", "resolve_token",
    # from experiment.py
    "ExperimentSummary", "TrialError", "read_experiment"]

METADATA_TAG = "asr_tune"
TERMINAL = ("SUCCEEDED", "FAILED", "STOPPED")
LOG_TAIL_LINES = 20


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class SubmitResult:
    """What ``submit`` returns: the Ray submission id and where to watch it."""

    job_id: str
    dashboard_url: str
    name: str = ""
    storage: str = ""
    entrypoint: str = ""


@dataclass
class JobStatus:
    job_id: str
    status: str
    entrypoint: str = ""
    message: str = ""
    start_time: float | None = None  # seconds since the epoch
    end_time: float | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    dashboard_url: str = ""
    experiment: ExperimentSummary | None = None
    experiment_note: str = ""  # why the experiment could not be read, if it could not
    failure: str = ""  # for FAILED jobs: failing trials' errors or the tail of the job's logs

    @property
    def name(self) -> str:
        return self.metadata.get("name", "")


@dataclass
class JobSummary:
    job_id: str
    status: str
    name: str = ""
    entrypoint: str = ""
    start_time: float | None = None
    end_time: float | None = None


def _with(conn: Connection, job_id: str | None = None) -> contextlib.AbstractContextManager[None]:
    return translate_errors(conn.address, conn.token, job_id)


def _job_page(address: str, job_id: str) -> str:
    return f"{address}/#/jobs/{job_id}"


# --------------------------------------------------------------------------- submit


def submit(config_path: str | os.PathLike[str], address: str | None = None, searcher: str | None = None,
           name: str | None = None, num_samples: int | None = None, working_dir: bool = False,
           extra_args: Sequence[str] = (), *, storage: str | None = None,
           token_file: str | os.PathLike[str] | None = None,
           overrides: Sequence[str] = (), preflight: Callable[[Any], Any] | None = None) -> SubmitResult:
    """Validate ``config_path`` locally, then submit ``asr-tune search`` on it as a Ray Job.

    ``name``/``storage`` default to the config's ``search.name`` (else ``<config stem>-<time>``)
    and ``search.storage``; a relative local storage path is made absolute against the current
    directory (on a multi-node cluster use shared storage such as ``s3://bucket/path``). Both are
    written into the shipped config and the job's metadata so that :func:`status` finds the run.
    ``overrides`` (``"optim.lr=1e-3"``) are validated here and forwarded as ``--set``.
    ``preflight(cfg)`` (the CLI passes ``search``'s own checks of searcher against space) runs on
    the validated config before anything is contacted.
    """
    from asr_tune.config import load_config, parse_override

    checked: dict[str, Any] = dict(parse_override(o) for o in overrides)
    if num_samples is not None:
        checked["search.num_samples"] = num_samples
    if searcher:
        checked["search.searcher"] = searcher
    config_path = Path(config_path)
    cfg = load_config(config_path, overrides=checked or None)  # ConfigError before any network
    if preflight is not None:
        preflight(cfg)  # SearchError before any network
    extra_args = [arg for o in overrides for arg in ("--set", o)] + list(extra_args)
    run_name = name or cfg.search.name or f"{config_path.stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    run_storage = _absolute_storage(storage or cfg.search.storage)
    entrypoint = build_entrypoint(config_path.name, run_storage, run_name, searcher, num_samples,
                                  extra_args, use_module=working_dir)
    metadata = {METADATA_TAG: "1", "name": run_name, "storage": run_storage,
                "config": config_path.name, "metric": cfg.search.metric, "mode": cfg.search.mode}
    conn = connect(address, token_file)
    with tempfile.TemporaryDirectory(prefix="asr-tune-job-") as tmp:
        _stage_working_dir(Path(tmp), config_path, run_name, run_storage, include_package=working_dir)
        return _submit(conn, entrypoint, metadata, {"working_dir": tmp})


def submit_entrypoint(entrypoint: str, address: str | None = None,
                      token_file: str | os.PathLike[str] | None = None,
                      metadata: dict[str, str] | None = None,
                      runtime_env: dict[str, Any] | None = None) -> SubmitResult:
    """Submit any shell command as a job (same address/token/error handling as :func:`submit`).

    With ``metadata={"asr_tune": "1", "name": ..., "storage": ...}`` :func:`status` reads the
    Tune experiment under ``<storage>/<name>`` as it does for ``submit``.
    """
    return _submit(connect(address, token_file), entrypoint, dict(metadata or {}), runtime_env)


def _submit(conn: Connection, entrypoint: str, metadata: dict[str, str],
            runtime_env: dict[str, Any] | None) -> SubmitResult:
    with _with(conn):
        job_id = conn.client.submit_job(entrypoint=entrypoint, runtime_env=runtime_env,
                                        metadata={k: str(v) for k, v in metadata.items()})
    return SubmitResult(job_id=job_id, dashboard_url=_job_page(conn.address, job_id),
                        name=metadata.get("name", ""), storage=metadata.get("storage", ""),
                        entrypoint=entrypoint)


def build_entrypoint(config_name: str, storage: str, name: str, searcher: str | None = None,
                     num_samples: int | None = None, extra_args: Sequence[str] = (),
                     use_module: bool = False) -> str:
    """The shell command the job runs (inside a job RAY_ADDRESS is set, so ``--address auto``)."""
    cmd = ["python", "-m", "asr_tune"] if use_module else ["asr-tune"]
    cmd += ["search", config_name, "--address", "auto", "--storage", storage, "--name", name]
    if searcher:
        cmd += ["--searcher", searcher]
    if num_samples is not None:
        cmd += ["--num-samples", str(num_samples)]
    cmd += list(extra_args)
    return shlex.join(cmd)


def _absolute_storage(storage: str) -> str:
    if "://" in storage:
        return storage.rstrip("/")
    return str(Path(storage).expanduser().resolve())


def _stage_working_dir(tmp: Path, config_path: Path, name: str, storage: str,
                       include_package: bool) -> None:
    """Write the config (with search.name/storage pinned) and optionally the asr_tune source."""
    from asr_tune.config import load_yaml_file

    raw = load_yaml_file(config_path)  # UTF-8, no duplicate keys, not empty (as load_config)
    search = raw.setdefault("search", {})
    search["name"], search["storage"] = name, storage
    (tmp / config_path.name).write_text(yaml.safe_dump(raw, sort_keys=False))
    if include_package:
        import asr_tune

        src = Path(asr_tune.__file__).resolve().parent
        shutil.copytree(src, tmp / "asr_tune", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))


# --------------------------------------------------------------------------- status / logs / stop / list


def status(job_id: str | None = None, address: str | None = None,
           token_file: str | os.PathLike[str] | None = None, read_experiment: bool = True) -> JobStatus:
    """A job's state (the newest asr-tune job when ``job_id`` is None), with its experiment's state."""
    conn = connect(address, token_file)
    if job_id is None:
        job_id = _latest_job_id(conn)
    with _with(conn, job_id):
        info = conn.client.get_job_info(job_id)
    st = _job_status_from_info(conn.address, job_id, info)
    if read_experiment and st.metadata.get("storage") and st.metadata.get("name"):
        st.experiment, st.experiment_note = _try_read_experiment(st.metadata)
    if st.status == "FAILED":
        st.failure = _failure_detail(conn, job_id, st)
    return st


def _latest_job_id(conn: Connection) -> str:
    jobs = [j for j in _list(conn) if j.name]
    if not jobs:
        raise ServiceError(f"no asr-tune jobs on the Ray head at {conn.address}")
    return jobs[-1].job_id


def _job_status_from_info(address: str, job_id: str, info: Any) -> JobStatus:
    return JobStatus(
        job_id=info.submission_id or job_id, status=_status_name(info.status),
        entrypoint=info.entrypoint or "", message=info.message or "",
        start_time=info.start_time / 1000 if info.start_time else None,
        end_time=info.end_time / 1000 if info.end_time else None,
        metadata=dict(info.metadata or {}), dashboard_url=_job_page(address, info.submission_id or job_id))


def _status_name(value: Any) -> str:
    return str(getattr(value, "value", value))


def _failure_detail(conn: Connection, job_id: str, st: JobStatus) -> str:
    if st.experiment and st.experiment.errors:
        return "\n".join(f"trial {e.trial}: {e.message}" for e in st.experiment.errors)
    try:
        text = _get_logs(conn, job_id)
    except ServiceError:
        return st.message
    tail = text.rstrip().splitlines()[-LOG_TAIL_LINES:]
    return "\n".join(tail) or st.message


@overload
def logs(job_id: str, follow: Literal[False] = False, address: str | None = None,
         token_file: str | os.PathLike[str] | None = None) -> str: ...
@overload
def logs(job_id: str, follow: Literal[True], address: str | None = None,
         token_file: str | os.PathLike[str] | None = None) -> Iterator[str]: ...
def logs(job_id: str, follow: bool = False, address: str | None = None,
         token_file: str | os.PathLike[str] | None = None) -> str | Iterator[str]:
    """The job's driver output so far, or (``follow=True``) an iterator of chunks until it ends."""
    conn = connect(address, token_file)
    if not follow:
        return _get_logs(conn, job_id)
    with _with(conn, job_id):
        conn.client.get_job_status(job_id)  # unknown job id -> one line, before streaming
    return _follow_logs(conn, job_id)


def _get_logs(conn: Connection, job_id: str) -> str:
    with _with(conn, job_id):
        return conn.client.get_job_logs(job_id)


def _follow_logs(conn: Connection, job_id: str) -> Iterator[str]:
    """Drive the client's async ``tail_job_logs`` websocket iterator from synchronous code."""
    loop = asyncio.new_event_loop()
    agen = conn.client.tail_job_logs(job_id)
    try:
        while True:
            with _with(conn, job_id):
                try:
                    chunk = loop.run_until_complete(agen.__anext__())
                except StopAsyncIteration:
                    return
            yield chunk
    finally:
        aclose = getattr(agen, "aclose", None)  # an async generator; typed as AsyncIterator
        if aclose is not None:
            with contextlib.suppress(Exception):
                loop.run_until_complete(aclose())
        loop.close()


def stop(job_id: str, address: str | None = None, token_file: str | os.PathLike[str] | None = None,
         wait_s: float = 30.0) -> str:
    """Ask Ray to stop the job and wait (up to ``wait_s``) for it to end; returns its final status."""
    conn = connect(address, token_file)
    with _with(conn, job_id):
        current = _status_name(conn.client.get_job_status(job_id))
        if current in TERMINAL:
            return current
        conn.client.stop_job(job_id)
    deadline = time.monotonic() + wait_s
    while True:
        with _with(conn, job_id):
            current = _status_name(conn.client.get_job_status(job_id))
        if current in TERMINAL or time.monotonic() > deadline:
            return current
        time.sleep(0.5)


def list_jobs(address: str | None = None, token_file: str | os.PathLike[str] | None = None
              ) -> list[JobSummary]:
    """All jobs submitted to the head (oldest first); asr-tune jobs carry their run name."""
    return _list(connect(address, token_file))


def _list(conn: Connection) -> list[JobSummary]:
    with _with(conn):
        infos = conn.client.list_jobs()
    out = [JobSummary(job_id=i.submission_id or i.job_id or "?", status=_status_name(i.status),
                      name=(i.metadata or {}).get("name", "") if (i.metadata or {}).get(METADATA_TAG)
                      else "", entrypoint=i.entrypoint or "",
                      start_time=i.start_time / 1000 if i.start_time else None,
                      end_time=i.end_time / 1000 if i.end_time else None)
           for i in infos if i.submission_id]  # jobs without submission id are plain drivers
    return sorted(out, key=lambda j: j.start_time or 0.0)


def wait(job_id: str, address: str | None = None, token_file: str | os.PathLike[str] | None = None,
         timeout_s: float = 600.0, poll_s: float = 1.0) -> str:
    """Poll until the job reaches a terminal state; returns it (raises ServiceError on timeout)."""
    conn = connect(address, token_file)
    deadline = time.monotonic() + timeout_s
    while True:
        with _with(conn, job_id):
            current = _status_name(conn.client.get_job_status(job_id))
        if current in TERMINAL:
            return current
        if time.monotonic() > deadline:
            raise ServiceError(f"job {job_id} still {current} after {timeout_s:.0f} s")
        time.sleep(poll_s)


# --------------------------------------------------------------------------- experiment state


def _try_read_experiment(metadata: dict[str, str]) -> tuple[ExperimentSummary | None, str]:
    path = f"{metadata['storage'].rstrip('/')}/{metadata['name']}"
    try:
        summary = read_experiment(path, metadata.get("metric", "val_wer"), metadata.get("mode", "min"))
    except Exception as err:  # noqa: BLE001 - an unreadable experiment must not hide the job status
        return None, f"experiment state at {path} not readable here: {first_line(err)}"
    if summary is None:
        return None, f"no experiment state at {path} yet (or not reachable from this machine)"
    return summary, ""
