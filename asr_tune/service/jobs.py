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
import json
import logging
import os
import sys
import shlex
import shutil
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Literal, Sequence, overload

import yaml

from asr_tune.errors import ServiceError

if TYPE_CHECKING:  # pragma: no cover
    from ray.job_submission import JobSubmissionClient

ADDRESS_ENV_VARS = ("RAY_API_SERVER_ADDRESS", "RAY_ADDRESS")
TOKEN_ENV_VAR = "RAY_AUTH_TOKEN"
TOKEN_PATH_ENV_VAR = "RAY_AUTH_TOKEN_PATH"
DEFAULT_TOKEN_FILE = Path("~/.ray/auth_token")
METADATA_TAG = "asr_tune"
CONNECT_TIMEOUT_S = 5.0
READ_TIMEOUT_S = 30.0
TERMINAL = ("SUCCEEDED", "FAILED", "STOPPED")
LOG_TAIL_LINES = 20
_ray_log_level: int | None = None  # see quiet_ray_logs()


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
class TrialError:
    trial: str
    message: str  # last line of the trial's error.txt (the exception)
    path: str = ""


@dataclass
class ExperimentSummary:
    """State of the Tune experiment a job writes under ``<storage>/<name>``."""

    path: str
    metric: str = "val_wer"
    mode: str = "min"
    counts: dict[str, int] = field(default_factory=dict)  # trial status -> number of trials
    best: float | None = None
    best_trial: str | None = None
    errors: list[TrialError] = field(default_factory=list)

    @property
    def num_trials(self) -> int:
        return sum(self.counts.values())


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


# --------------------------------------------------------------------------- address and token


def resolve_address(address: str | None = None) -> str:
    """The dashboard's HTTP URL from ``address``, else RAY_API_SERVER_ADDRESS/RAY_ADDRESS."""
    source = "--address"
    if not address:
        for var in ADDRESS_ENV_VARS:
            if os.environ.get(var):
                address, source = os.environ[var], var
                break
    if not address:
        raise ServiceError("no Ray head address: pass --address http://HEAD:8265 or set RAY_ADDRESS")
    address = address.strip().rstrip("/")
    if address == "auto" or address.startswith("ray://"):
        raise ServiceError(f"{source}={address!r} is not a dashboard address: use http://HEAD:8265 "
                           "(the Ray dashboard / Jobs API of the head node)")
    if "://" not in address:
        address = f"http://{address}"
    if not address.startswith(("http://", "https://")):
        raise ServiceError(f"{source}={address!r}: expected http://HOST:PORT of the Ray dashboard")
    return address


@dataclass(frozen=True)
class Token:
    value: str
    source: str  # for messages: where the token came from


def resolve_token(token_file: str | os.PathLike[str] | None = None) -> Token | None:
    """The auth token: ``token_file``, else RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH, ~/.ray/auth_token."""
    if token_file:
        return _read_token_file(Path(token_file).expanduser(), f"--token-file {token_file}", True)
    if os.environ.get(TOKEN_ENV_VAR, "").strip():
        return Token(os.environ[TOKEN_ENV_VAR].strip(), TOKEN_ENV_VAR)
    if os.environ.get(TOKEN_PATH_ENV_VAR):
        path = os.environ[TOKEN_PATH_ENV_VAR]
        return _read_token_file(Path(path).expanduser(), f"{TOKEN_PATH_ENV_VAR}={path}", True)
    return _read_token_file(DEFAULT_TOKEN_FILE.expanduser(), str(DEFAULT_TOKEN_FILE), False)


def _read_token_file(path: Path, source: str, required: bool) -> Token | None:
    try:
        value = path.read_text().strip()
    except OSError as err:
        if not required:
            return None
        raise ServiceError(f"{source}: cannot read token file ({err.strerror or err})") from None
    if not value:
        if not required:
            return None
        raise ServiceError(f"{source}: token file is empty")
    return Token(value, source)


def _auth_headers(token: Token | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token.value}"} if token else {}


# --------------------------------------------------------------------------- connection


@dataclass
class Connection:
    """A checked JobSubmissionClient plus what error messages need to know."""

    client: "JobSubmissionClient"
    address: str
    token: Token | None


def connect(address: str | None = None, token_file: str | os.PathLike[str] | None = None) -> Connection:
    """Check that ``address`` is a reachable Ray dashboard that accepts our token, then connect."""
    url = resolve_address(address)
    token = resolve_token(token_file)
    _preflight(url, token)
    with _env_without(*ADDRESS_ENV_VARS), _translate(url, token):
        from ray.job_submission import JobSubmissionClient

        _apply_ray_log_level()

        # JobSubmissionClient lets RAY_ADDRESS override its argument: hide it while resolving.
        client = JobSubmissionClient(url, headers=_auth_headers(token))
    return Connection(client, url, token)


def quiet_ray_logs(level: int = logging.WARNING) -> None:
    """Raise the level of Ray's job-client loggers (package uploads etc.; default WARNING).

    Applied when Ray is first used: Ray resets its child loggers when it is imported, and this
    module imports Ray only after the cheap reachability/auth check."""
    global _ray_log_level
    _ray_log_level = level
    if "ray" in sys.modules:
        _apply_ray_log_level()


def _apply_ray_log_level() -> None:
    if _ray_log_level is None:
        return
    for name in ("ray.dashboard", "ray._private", "ray.job_submission"):
        logging.getLogger(name).setLevel(_ray_log_level)


def _preflight(url: str, token: Token | None) -> str:
    """GET /api/version with a timeout and turn every failure into one line; returns Ray's version."""
    import requests

    try:
        resp = requests.get(f"{url}/api/version", headers=_auth_headers(token),
                            timeout=(CONNECT_TIMEOUT_S, READ_TIMEOUT_S))
    except requests.exceptions.ConnectTimeout:
        raise ServiceError(f"cannot reach the Ray head at {url}: no answer within "
                           f"{CONNECT_TIMEOUT_S:.0f} s (wrong host, or a firewall?)") from None
    except requests.exceptions.ReadTimeout:
        raise ServiceError(f"the Ray head at {url} accepted the connection but did not answer "
                           f"within {READ_TIMEOUT_S:.0f} s") from None
    except requests.exceptions.SSLError:
        raise ServiceError(f"TLS handshake with {url} failed (use http:// unless the dashboard "
                           "is behind an HTTPS proxy)") from None
    except requests.exceptions.ConnectionError as err:
        raise ServiceError(_connection_error_message(url, err)) from None
    except requests.exceptions.RequestException as err:
        raise ServiceError(f"cannot talk to the Ray head at {url}: {_first_line(err)}") from None
    _check_auth_status(url, resp.status_code, token)
    try:
        version = resp.json()["ray_version"] if resp.status_code == 200 else None
    except (ValueError, KeyError, TypeError):
        version = None
    if not version:
        raise ServiceError(f"{url} is not a Ray dashboard (GET /api/version answered HTTP "
                           f"{resp.status_code}): use the dashboard port (default 8265), "
                           "not the GCS (6379) or Ray Client (10001) port")
    return str(version)


def _connection_error_message(url: str, err: Exception) -> str:
    text = str(err)
    if "refused" in text.lower():
        return (f"cannot reach the Ray head at {url}: connection refused (is the head running, "
                "and is this the dashboard port, default 8265?)")
    if "resolve" in text.lower() or "name or service" in text.lower():
        return f"cannot reach the Ray head at {url}: unknown host"
    if "reset" in text.lower() or "aborted" in text.lower() or "badstatusline" in text.lower():
        return (f"{url} is not a Ray dashboard (the connection was dropped): use the dashboard "
                "port (default 8265), not the GCS (6379) or Ray Client (10001) port")
    return f"cannot reach the Ray head at {url}: {_first_line(err)}"


def _check_auth_status(url: str, status: int, token: Token | None) -> None:
    if status == 401:
        raise ServiceError(f"the Ray head at {url} requires an authentication token (token auth "
                           "is on): pass --token-file FILE or set RAY_AUTH_TOKEN")
    if status == 403:
        where = token.source if token else "the request"
        raise ServiceError(f"the Ray head at {url} rejected the authentication token from "
                           f"{where}: it is not this cluster's token")


@contextlib.contextmanager
def _env_without(*names: str) -> Iterator[None]:
    saved = {n: os.environ.pop(n) for n in names if n in os.environ}
    try:
        yield
    finally:
        os.environ.update(saved)


@contextlib.contextmanager
def _translate(url: str, token: Token | None, job_id: str | None = None) -> Iterator[None]:
    """Map Ray / requests / aiohttp exceptions raised inside the block to one-line ServiceErrors."""
    import requests

    try:
        yield
    except ServiceError:
        raise
    except requests.exceptions.ConnectionError as err:
        raise ServiceError(_connection_error_message(url, err)) from None
    except ConnectionError as err:  # JobSubmissionClient's own "Failed to connect to Ray at ..."
        raise ServiceError(_connection_error_message(url, err)) from None
    except Exception as err:  # noqa: BLE001 - every remaining failure becomes one line
        raise ServiceError(_ray_error_message(url, token, job_id, err)) from None


def _ray_error_message(url: str, token: Token | None, job_id: str | None, err: Exception) -> str:
    text = str(err)
    status = getattr(err, "status", None)  # aiohttp.WSServerHandshakeError
    if type(err).__name__ == "AuthenticationError" or status in (401, 403):
        missing = status == 401 or "required" in text.lower() or "missing" in text.lower()
        try:
            _check_auth_status(url, 401 if missing else 403, token)
        except ServiceError as auth_err:
            return str(auth_err)
    if job_id is not None and ("404" in text or "does not exist" in text or status == 404):
        return f"no job '{job_id}' on the Ray head at {url} (list them with: asr-tune jobs)"
    return f"Ray head at {url}: {_first_line(err)}"


def _first_line(err: BaseException | str) -> str:
    lines = [ln.strip() for ln in str(err).strip().splitlines() if ln.strip()]
    return lines[0] if lines else type(err).__name__


def _with(conn: Connection, job_id: str | None = None) -> contextlib.AbstractContextManager[None]:
    return _translate(conn.address, conn.token, job_id)


def _job_page(address: str, job_id: str) -> str:
    return f"{address}/#/jobs/{job_id}"


# --------------------------------------------------------------------------- submit


def submit(config_path: str | os.PathLike[str], address: str | None = None, searcher: str | None = None,
           name: str | None = None, num_samples: int | None = None, working_dir: bool = False,
           extra_args: Sequence[str] = (), *, storage: str | None = None,
           token_file: str | os.PathLike[str] | None = None,
           overrides: Sequence[str] = ()) -> SubmitResult:
    """Validate ``config_path`` locally, then submit ``asr-tune search`` on it as a Ray Job.

    ``name``/``storage`` default to the config's ``search.name`` (else ``<config stem>-<time>``)
    and ``search.storage``; a relative local storage path is made absolute against the current
    directory (on a multi-node cluster use shared storage such as ``s3://bucket/path``). Both are
    written into the shipped config and the job's metadata so that :func:`status` finds the run.
    ``overrides`` (``"optim.lr=1e-3"``) are validated here and forwarded as ``--set``.
    """
    from asr_tune.config import load_config, parse_override

    checked: dict[str, Any] = dict(parse_override(o) for o in overrides)
    if num_samples is not None:
        checked["search.num_samples"] = num_samples
    if searcher:
        checked["search.searcher"] = searcher
    config_path = Path(config_path)
    cfg = load_config(config_path, overrides=checked or None)  # ConfigError before any network
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
    raw = yaml.safe_load(config_path.read_text()) or {}
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
        return None, f"experiment state at {path} not readable here: {_first_line(err)}"
    if summary is None:
        return None, f"no experiment state at {path} yet (or not reachable from this machine)"
    return summary, ""


def read_experiment(path: str, metric: str = "val_wer", mode: str = "min") -> ExperimentSummary | None:
    """Summarize a Tune experiment dir (local path or URI); None when it does not exist (yet).

    Reads the newest ``experiment_state-*.json`` Tune writes (trial status, per-trial metric
    min/max) and each trial dir's ``error.txt``; without a state file, falls back to the trial
    dirs' ``result.json``.
    """
    fs = _ExperimentFS.open(path)
    if fs is None:
        return None
    summary = ExperimentSummary(path=path, metric=metric, mode=mode)
    states = sorted(n for n in fs.files("") if n.startswith("experiment_state-") and n.endswith(".json"))
    trials = _trials_from_state(fs.read(states[-1])) if states else _trials_from_dirs(fs, metric)
    counts: Counter[str] = Counter()
    for trial in trials:
        counts[trial["status"]] += 1
        _update_best(summary, trial, metric, mode)
    summary.counts = dict(sorted(counts.items()))
    summary.errors = _trial_errors(fs, trials)
    return summary


def _trials_from_state(text: str) -> list[dict[str, Any]]:
    trials = []
    for entry in json.loads(text).get("trial_data", []):
        state = json.loads(entry[0]) if isinstance(entry[0], str) else entry[0]
        runtime = json.loads(entry[1]) if len(entry) > 1 and isinstance(entry[1], str) else {}
        trials.append({"id": state.get("trial_id", "?"), "status": state.get("status", "UNKNOWN"),
                       "dir": state.get("relative_logdir") or "",
                       "analysis": (runtime or {}).get("metric_analysis") or {},
                       "error_file": (runtime or {}).get("error_filename")})
    return trials


def _trials_from_dirs(fs: "_ExperimentFS", metric: str) -> list[dict[str, Any]]:
    trials = []
    for d in fs.dirs(""):
        files = fs.files(d)
        if "result.json" not in files and "params.json" not in files:
            continue
        values = []
        if "result.json" in files:
            for line in fs.read(f"{d}/result.json").splitlines():
                with contextlib.suppress(ValueError, TypeError):
                    v = json.loads(line).get(metric)
                    if isinstance(v, (int, float)):
                        values.append(float(v))
        analysis = {metric: {"min": min(values), "max": max(values)}} if values else {}
        trials.append({"id": d, "status": "ERROR" if "error.txt" in files else "REPORTED",
                       "dir": d, "analysis": analysis, "error_file": "error.txt" if "error.txt" in files else None})
    return trials


def _update_best(summary: ExperimentSummary, trial: dict[str, Any], metric: str, mode: str) -> None:
    value = (trial["analysis"].get(metric) or {}).get(mode)
    if not isinstance(value, (int, float)):
        return
    if summary.best is None or (value < summary.best if mode == "min" else value > summary.best):
        summary.best, summary.best_trial = float(value), trial["id"]


def _trial_errors(fs: "_ExperimentFS", trials: list[dict[str, Any]]) -> list[TrialError]:
    errors = []
    for trial in trials:
        if trial["status"] != "ERROR" and not trial.get("error_file"):
            continue
        rel = f"{trial['dir']}/{trial.get('error_file') or 'error.txt'}"
        try:
            text = fs.read(rel)
        except (OSError, FileNotFoundError):
            if trial["status"] == "ERROR":
                errors.append(TrialError(trial["id"], "failed (no error.txt found)", rel))
            continue
        errors.append(TrialError(trial["id"], _exception_line(text), fs.join(rel)))
    return errors


def _exception_line(text: str) -> str:
    """The exception line of a traceback (its last non-blank line)."""
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else "(empty error.txt)"


class _ExperimentFS:
    """Minimal read-only view of an experiment dir on the local disk or a pyarrow filesystem."""

    def __init__(self, root: str, pafs: Any = None) -> None:
        self.root, self.pafs = root.rstrip("/"), pafs

    @classmethod
    def open(cls, path: str) -> "_ExperimentFS | None":
        if "://" not in path:
            return cls(path) if Path(path).is_dir() else None
        import pyarrow.fs as pafs

        fs, root = pafs.FileSystem.from_uri(path)
        if fs.get_file_info(root).type != pafs.FileType.Directory:
            return None
        return cls(root, fs)

    def join(self, rel: str) -> str:
        return f"{self.root}/{rel}" if rel else self.root

    def _entries(self, rel: str) -> list[tuple[str, bool]]:
        if self.pafs is None:
            return [(p.name, p.is_dir()) for p in Path(self.join(rel)).iterdir()]
        import pyarrow.fs as pafs

        infos = self.pafs.get_file_info(pafs.FileSelector(self.join(rel), allow_not_found=True))
        return [(i.base_name, i.type == pafs.FileType.Directory) for i in infos]

    def files(self, rel: str) -> list[str]:
        return [n for n, is_dir in self._entries(rel) if not is_dir]

    def dirs(self, rel: str) -> list[str]:
        return sorted(n for n, is_dir in self._entries(rel) if is_dir)

    def read(self, rel: str) -> str:
        if self.pafs is None:
            return Path(self.join(rel)).read_text(errors="replace")
        with self.pafs.open_input_stream(self.join(rel)) as f:
            return f.read().decode(errors="replace")
