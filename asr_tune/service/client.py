"""Connection to a Ray head's Jobs API: address and token resolution, a cheap reachability and
auth check, :class:`ray.job_submission.JobSubmissionClient` construction, and error translation.

* :func:`resolve_address` takes ``--address`` or ``RAY_API_SERVER_ADDRESS``/``RAY_ADDRESS`` and
  insists on the dashboard's HTTP URL (``http://HEAD:8265``);
* :func:`resolve_token` reads Ray's auth token from ``--token-file``, ``RAY_AUTH_TOKEN``,
  ``RAY_AUTH_TOKEN_PATH`` or ``~/.ray/auth_token`` (sent as ``Authorization: Bearer <token>``);
* :func:`connect` checks ``GET /api/version`` with a timeout before importing Ray, then builds the
  client;
* :func:`translate_errors` turns every failure a user can cause (unreachable head, wrong port,
  missing or wrong token, unknown job id) into a one-line :class:`~asr_tune.errors.ServiceError`.

Ray is imported only inside :func:`connect`. Used by :mod:`asr_tune.service.jobs`.
"""
from __future__ import annotations

import contextlib
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

from asr_tune.errors import ServiceError

if TYPE_CHECKING:  # pragma: no cover
    from ray.job_submission import JobSubmissionClient

ADDRESS_ENV_VARS = ("RAY_API_SERVER_ADDRESS", "RAY_ADDRESS")
TOKEN_ENV_VAR = "RAY_AUTH_TOKEN"
TOKEN_PATH_ENV_VAR = "RAY_AUTH_TOKEN_PATH"
DEFAULT_TOKEN_FILE = Path("~/.ray/auth_token")
CONNECT_TIMEOUT_S = 5.0
READ_TIMEOUT_S = 30.0
_ray_log_level: int | None = None  # see quiet_ray_logs()


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
    with _env_without(*ADDRESS_ENV_VARS), translate_errors(url, token):
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
        raise ServiceError(f"cannot talk to the Ray head at {url}: {first_line(err)}") from None
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
    return f"cannot reach the Ray head at {url}: {first_line(err)}"


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
def translate_errors(url: str, token: Token | None, job_id: str | None = None) -> Iterator[None]:
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
    return f"Ray head at {url}: {first_line(err)}"


def first_line(err: BaseException | str) -> str:
    """The first non-blank line of an error (its type name when it has no text)."""
    lines = [ln.strip() for ln in str(err).strip().splitlines() if ln.strip()]
    return lines[0] if lines else type(err).__name__
