"""Which Ray cluster `--ray` means, whether its head answers, and connecting to it.

`--ray ADDRESS` (else `$IREP3D_RAY`) is `auto` (the cluster this machine belongs to),
`HOST:PORT` of a head, or `local` (a private Ray instance inside this process). Before
`ray.init` is called the head is probed with one cheap call (`reach`): a head that is gone,
or that wants a token this process lacks, is one line within seconds instead of Ray's
minutes of retries. `ray://` client addresses are refused (`irep3d farm submit` sends long
jobs to a cluster instead).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
from pathlib import Path

from ..errors import FarmError, UsageError

ENV_ADDRESS = "IREP3D_RAY"
ENV_AUTH_MODE = "RAY_AUTH_MODE"  # Ray's token authentication: token | disabled
ENV_AUTH_TOKEN = "RAY_AUTH_TOKEN"
TOKEN_SOURCES = "$RAY_AUTH_TOKEN, $RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token"
#: How long `connect` waits for a head to answer before saying it does not.
PROBE_S = 5.0
#: The cheapest call every GCS answers (an empty request), used to probe a head.
GCS_PROBE = "/ray.rpc.NodeInfoGcsService/GetClusterId"


def resolve_address(address: str | None) -> str | None:
    """The cluster to use: `--ray ADDRESS`, else `$IREP3D_RAY`, else None (run locally)."""
    value = address if address is not None else os.environ.get(ENV_ADDRESS)
    value = (value or "").strip()
    return value or None


def connect(address: str) -> None:
    """Connect to a Ray cluster: `auto` (the one this machine belongs to), `HOST:PORT`
    (its head), or `local` (a fresh private instance inside this process). A no-op when
    connected.

    `auto` and `HOST:PORT` are checked first (`reach`): a head that does not answer, or
    that wants a token this process lacks, is one line within seconds, not Ray's minutes
    of retries. `local` never looks at the recorded cluster (Ray's `ray.init()` without an
    address joins it, or hangs when it is gone).

    `ray://` client addresses are refused: a long job on a remote cluster is submitted
    with Ray's Jobs API (`irep3d farm submit`), so it survives the laptop going away.
    """
    ray = ray_module()
    if "://" in address:
        cluster_address(address)  # refuses it
    if ray.is_initialized():
        return
    if address == "local":
        _start_private(ray)
        return
    target = reach(address)
    try:
        ray.init(address=target, logging_level="WARNING", log_to_driver=False)
    except (ConnectionError, RuntimeError, ValueError, _auth_error(ray)) as exc:
        line = " ".join(str(exc).split())[:300]
        raise FarmError(f"cannot connect to the Ray cluster at {address!r}: {line}") from None


def _start_private(ray) -> None:
    """`--ray local`: a new Ray instance for this process alone (`address="local"`).

    Ray turns its token authentication on for it; where this machine has no token yet,
    Ray would write one to ~/.ray/auth_token, and every later `ray start --head` here would
    silently require it from its nodes. A token made for this process (in its environment,
    which Ray's workers inherit) keeps the instance private and leaves nothing behind.
    """
    if os.environ.get(ENV_AUTH_MODE) is None and _local_token() is None:
        os.environ[ENV_AUTH_TOKEN] = secrets.token_hex(32)
        _reset_token_cache()
    try:
        ray.init(address="local", include_dashboard=False, logging_level="WARNING", log_to_driver=False)
    except (ConnectionError, RuntimeError, ValueError, _auth_error(ray)) as exc:
        line = " ".join(str(exc).split())[:300]
        raise FarmError(f"cannot start a local Ray instance: {line}") from None


def cluster_address(address: str) -> tuple[str, str]:
    """(HOST:PORT of the head, where it came from) for `--ray auto` or `--ray HOST:PORT`.

    `auto` is, in order: `$RAY_ADDRESS` (set in the jobs Ray runs), the cluster `ray start`
    last recorded on this machine (Ray's current-cluster file), the one Ray head running
    here. Unlike Ray's own `auto`, a recorded cluster is never swapped for another head
    that happens to run here: a stale record is reported, not silently replaced.
    """
    if "://" in address:
        raise UsageError(
            f"--ray {address}: ray:// client connections are not used; submit the command to the "
            "cluster with `irep3d farm submit --address http://HEAD:8265 -- irep3d ...` instead"
        )
    if address != "auto":
        _host_port(address)
        return address, "given"
    env = os.environ.get("RAY_ADDRESS", "").strip()
    if env and env != "auto":
        if "://" in env:
            raise UsageError(f"--ray auto: $RAY_ADDRESS is {env}; set it to the head's HOST:PORT or unset it")
        _host_port(env, "$RAY_ADDRESS")
        return env, "from $RAY_ADDRESS"
    record = current_cluster_file()
    recorded = _read(record)
    if recorded:
        return recorded, f"recorded in {record} by an earlier `ray start`"
    running = _running_heads()
    if len(running) == 1:
        return running[0], "the Ray head running on this machine"
    if running:
        raise FarmError(
            f"--ray auto: {len(running)} Ray heads run on this machine ({', '.join(running)}) and "
            f"none is recorded in {record}: give --ray HOST:PORT"
        )
    raise FarmError(
        f"--ray auto: no Ray cluster on this machine (none recorded in {record}, no head running): "
        "start one with `irep3d farm up`, give --ray HOST:PORT of a head, or use --ray local"
    )


def reach(address: str, what: str = "--ray") -> str:
    """The head's HOST:PORT for `auto` or `HOST:PORT`, once it answered within `PROBE_S`
    and this process holds what it needs to authenticate to it.

    When the head asks for a token and `$RAY_AUTH_MODE` is unset, this machine's token
    ($RAY_AUTH_TOKEN, $RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token) is used, as `ray start
    --head` does (RAY_AUTH_MODE=disabled opts out). FarmError, one line saying what to do,
    when the head does not answer, or wants a token this process lacks or refuses it;
    `what` names the option or command the address came from in that line.
    """
    target, origin = cluster_address(address)
    mode = (os.environ.get(ENV_AUTH_MODE) or "").strip().lower()
    token = _local_token() if mode == "token" else None
    state = _probe(target, token)
    if state == "down":
        raise FarmError(_down_line(f"{what} {address}", target, origin))
    if state == "token":
        if token is not None:
            raise FarmError(
                f"the Ray cluster at {target} refused this process's token (from {TOKEN_SOURCES}): "
                "use the cluster's token (`ray get-auth-token` on its head prints it)"
            )
        token = _local_token() if mode == "" else None
        if token is None or _probe(target, token) != "up":
            raise FarmError(_token_line(target, mode, token is not None))
        _enable_token_mode()
    return target


def _down_line(given: str, target: str, origin: str) -> str:
    """The one line for a head that does not answer (`given`: what the user typed)."""
    if origin.startswith("recorded"):
        return (
            f"{given}: no Ray cluster answers at {target}, {origin} (it is gone): start it again "
            "with `irep3d farm up`, delete that file to forget it, give --ray HOST:PORT, or use --ray local"
        )
    where = "" if origin == "given" else f" ({origin})"
    return (
        f"{given}: no Ray cluster answers at {target}{where} within {PROBE_S:g} s: start its "
        "head with `irep3d farm up` (or check HOST:PORT and the firewall), or use --ray local"
    )


def _token_line(target: str, mode: str, refused: bool) -> str:
    """The one line for a head that wants a token this process does not have (or send)."""
    if refused:
        why = f"refused this machine's token (from {TOKEN_SOURCES})"
    elif mode not in ("", "token"):
        why = f"wants a token and RAY_AUTH_MODE={mode} here"
    else:
        why = f"wants a token and this machine has none ({TOKEN_SOURCES})"
    return (
        f"the Ray cluster at {target} uses token authentication and {why}: put the cluster's token "
        "(`ray get-auth-token` on its head prints it) in ~/.ray/auth_token or $RAY_AUTH_TOKEN and "
        "set RAY_AUTH_MODE=token; nodes started with a plain `ray start --address` need the same"
    )


def head_wants_token() -> bool:
    """Whether a head started here now (`ray start --head`) would require Ray's token:
    RAY_AUTH_MODE=token, or RAY_AUTH_MODE unset and a token on this machine (Ray's rule)."""
    mode = (os.environ.get(ENV_AUTH_MODE) or "").strip().lower()
    return mode == "token" or (mode == "" and _local_token() is not None)


def _host_port(address: str, what: str = "--ray") -> tuple[str, int]:
    """(host, port) of HOST:PORT; UsageError saying what is valid otherwise."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise UsageError(
            f"{what} {address!r}: use auto, local or HOST:PORT of the cluster's head (e.g. 10.0.0.5:6379)"
        )
    return host.strip("[]"), int(port)


def current_cluster_file() -> Path:
    """Where `ray start` records the cluster of this machine (Ray's current-cluster file):
    `$RAY_TMPDIR`, else `$TMPDIR`, else /tmp, then `ray/ray_current_cluster`."""
    try:
        from ray._common.utils import get_ray_address_file
    except ImportError:  # Ray before 2.4x kept it in ray._private.utils
        from ray._private.utils import get_ray_address_file
    return Path(get_ray_address_file(None))


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""


def _running_heads() -> list[str]:
    """The GCS addresses of the Ray nodes running on this machine (Ray's own detection)."""
    from ray._private import services

    services.find_gcs_addresses.cache_clear()
    return sorted(services.find_gcs_addresses())


def _probe(target: str, token: str | None) -> str:
    """ "up", "token" (the head refused the call: it wants a token, or another one) or
    "down" (nothing answered within PROBE_S): one cheap call to the head's GCS, made with
    `token` when given, instead of `ray.init`'s minutes of retries."""
    import grpc

    if os.environ.get("RAY_USE_TLS", "0").lower() in ("1", "true"):
        return _probe_tcp(target)
    channel = grpc.insecure_channel(target)
    try:
        call = channel.unary_unary(GCS_PROBE, request_serializer=bytes, response_deserializer=bytes)
        call(b"", timeout=PROBE_S, metadata=[("authorization", f"Bearer {token}")] if token else None)
    except grpc.RpcError as exc:
        code = exc.code()
        if code == grpc.StatusCode.UNAUTHENTICATED:
            return "token"
        if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
            return "down"
        return "up"  # something answered; let ray.init say what is wrong with it
    finally:
        channel.close()
    return "up"


def _probe_tcp(target: str) -> str:
    """ "up" when a TCP connection to the head opens within PROBE_S, else "down"."""
    host, port = _host_port(target)
    try:
        with socket.create_connection((host, port), timeout=PROBE_S):
            return "up"
    except OSError:
        return "down"


def _local_token() -> str | None:
    """This machine's Ray token ($RAY_AUTH_TOKEN, $RAY_AUTH_TOKEN_PATH, ~/.ray/auth_token),
    read afresh; None where there is none, or Ray predates token authentication."""
    try:
        from ray._raylet import AuthenticationTokenLoader
    except ImportError:
        return None
    loader = AuthenticationTokenLoader.instance()
    loader.reset_cache()
    if not loader.has_token(ignore_auth_mode=True):
        return None
    return loader.get_raw_token(ignore_auth_mode=True) or None


def _reset_token_cache() -> None:
    with contextlib.suppress(ImportError):
        from ray._raylet import AuthenticationTokenLoader

        AuthenticationTokenLoader.instance().reset_cache()


def _enable_token_mode() -> None:
    """RAY_AUTH_MODE=token for this process and its children, as Ray itself sets it."""
    os.environ[ENV_AUTH_MODE] = "token"
    with contextlib.suppress(ImportError):
        from ray._raylet import Config

        Config.initialize("")  # Ray's cached configuration reads the mode again


def _auth_error(ray) -> type[BaseException]:
    """Ray's AuthenticationError (a RayError, not a ConnectionError), where Ray has it."""
    return getattr(ray.exceptions, "AuthenticationError", ConnectionError)


def ray_module():
    try:
        import ray
    except ImportError:
        raise UsageError("--ray needs Ray: pip install 'irep3d[ray]'") from None
    return ray
