"""The explorer's HTTP side: one page and a small JSON API over the library (see README.md).

The server only parses, calls the library and answers: walks are `WalkCache`s, options
come from `irep3d.options` (`maps_options`, `describe_options`), scene settings and
presets from `irep3d.presets`, rendering a clip is `maps_engine.render_clips` (what
`irep3d maps` runs), adding it to a release is `irep3d.release.append_clip`. Bad input is
an HTTP 400 with `{"error": "one line"}`, never a stack trace.

Safety: requests whose `Host` is not the address served, or whose `Origin` is another
site's, are refused (403): a page elsewhere cannot drive the explorer, not even through DNS
rebinding. Files are written only under the `--out` folder, under names that cannot leave
it.

Tabs: a page names itself in the header `X-Irep3d-Tab`; each tab has one current walk
(a new one cancels the old), and a tab that closes (`POST /api/tab/close`) or stops asking
for `TAB_TIMEOUT` seconds has its computation dropped.

Send to NDI: a tab's walk goes out as an NDI source through `irep3d live`'s own code
(`irep3d.live.model.ModelFeed` over the tab's `WalkCache`, sent by
`irep3d.live.stage.NdiStream`): at the walk's fps, looping, each frame `WalkCache.frame`,
the preview's. The stream belongs to the tab and follows it: a channel change shows at
once, a new walk of the tab is sent from then on (see `Explorer.follow_ndi`), and it stops
when the tab turns it off or closes, or the explorer stops. A tab that sends is never
dropped for being quiet (a hidden tab's timers are slowed; the show must go on).
"""

from __future__ import annotations

import io
import ipaddress
import math
import shlex
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from ..errors import Irep3dError, OptionError, UsageError
from ..network_thread import run_on_network, single_threaded
from .engine import DEFAULT_BUDGET, WalkCache

__all__ = ["NDI_NAME", "STATIC", "TAB_TIMEOUT", "Explorer", "create_app"]

STATIC = Path(__file__).resolve().parent / "static"
TAB_TIMEOUT = 60.0  # seconds without a request before a tab's computation is dropped
NDI_NAME = "irep3d explore"  # the NDI source's name when the page gives none
NDI_NOTICE = (
    "the NDI source {source!r} listens on every network interface (TCP 5960 and up): anyone who "
    "can reach this machine can receive it"
)
_TILE = (16, 256)


@dataclass
class _Job:
    """A clip being rendered into `--out`."""

    state: str = "running"
    done: int = 0
    total: int = 0
    error: str | None = None
    path: str = ""
    cancel: threading.Event = field(default_factory=threading.Event)


class _Cancelled(Exception):
    """Raised by a render's progress callback when the page cancelled it."""


@dataclass
class _NdiOut:
    """A tab's walk sent over NDI: the walk shown (`ModelFeed`) and its stream (`NdiStream`)."""

    name: str  # the NDI source's name, as the page gave it (receivers see `HOST (name)`)
    walk: str  # the id of the walk sent
    feed: Any  # irep3d.live.model.ModelFeed over the tab's WalkCache
    stream: Any  # irep3d.live.stage.NdiStream, started


@dataclass
class Explorer:
    """What one `irep3d explore` serves: a loaded model, where clips go, the walks of the
    open tabs and the renders started from them."""

    net: Any
    model: str
    out: Path
    device: str = "cpu"
    budget_bytes: int = DEFAULT_BUDGET
    log: Any = None  # called with one line when a tab starts or stops sending NDI (the terminal)
    walks: dict[str, WalkCache] = field(default_factory=dict)
    tabs: dict[str, tuple[str, float]] = field(default_factory=dict)  # tab -> (walk id, last seen)
    jobs: dict[str, _Job] = field(default_factory=dict)
    ndi: dict[str, _NdiOut] = field(default_factory=dict)  # tab -> its walk sent over NDI
    ndi_errors: dict[str, str] = field(default_factory=dict)  # tab -> why its stream stopped
    _ids: Any = field(default_factory=lambda: iter(range(1, 1 << 62)))
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _ndi_lock: threading.RLock = field(default_factory=threading.RLock)  # one NDI change at a time

    def new_id(self, prefix: str) -> str:
        with self._lock:
            return f"{prefix}{next(self._ids)}"

    def seen(self, tab: str | None) -> None:
        """Note that `tab` asked now; drop the walks of tabs gone quiet (but of those sending
        NDI: a performance outlasts a browser's slowed timers)."""
        now = time.monotonic()
        with self._lock:
            if tab and tab in self.tabs:
                self.tabs[tab] = (self.tabs[tab][0], now)
            quiet = [
                t for t, (_, last) in self.tabs.items() if now - last > TAB_TIMEOUT and t not in self.ndi
            ]
        for t in quiet:
            self.close_tab(t)

    def close_tab(self, tab: str) -> None:
        """The tab is gone: stop its NDI stream, drop its walk."""
        self.stop_ndi(tab)
        self.ndi_errors.pop(tab, None)
        self._drop_walk(tab)

    def _drop_walk(self, tab: str) -> None:
        with self._lock:
            walk_id, _ = self.tabs.pop(tab, (None, 0.0))
            cache = self.walks.pop(walk_id, None) if walk_id else None
        if cache is not None:
            cache.cancel()

    def set_walk(self, tab: str, cache: WalkCache) -> str:
        """Make `cache` the tab's walk (its previous one is cancelled and dropped); the tab's
        NDI stream, if it sends, follows it."""
        walk_id = self.new_id("w")
        self._drop_walk(tab)
        with self._lock:
            self.walks[walk_id] = cache
            self.tabs[tab] = (walk_id, time.monotonic())
        cache.start()
        self.follow_ndi(tab, walk_id, cache)
        return walk_id

    def tab_of_walk(self, walk_id: str) -> str:
        """The tab whose current walk `walk_id` is (KeyError when none)."""
        with self._lock:
            for tab, (current, _) in self.tabs.items():
                if current == walk_id:
                    return tab
        raise KeyError(walk_id)

    # ------------------------------------------------------------------ Send to NDI

    def send_ndi(self, walk_id: str, name: str, channels: list[int]) -> _NdiOut:
        """Send walk `walk_id` (its tab's current walk) as the NDI source `name`, showing
        `channels`. A tab that sends already changes what it sends: the channels at once; a
        new name opens the source again under it. (It sends this walk already: a tab's new
        walk is followed by `set_walk`, through `follow_ndi`.)

        Raises:
            UsageError: no NDI runtime (as `irep3d live` says it), no name, a name another
                tab sends under, channels outside the layer.
            OutputError: the NDI source cannot start.
        """
        from ..colour import check_channels
        from ..live.ndi import require_ndi

        require_ndi()
        if not name.strip():
            raise UsageError(f"give the NDI source a name, e.g. {NDI_NAME}")
        cache, tab = self.walk(walk_id), self.tab_of_walk(walk_id)
        channels = check_channels(channels, cache.channels, cache.layer)
        with self._ndi_lock:
            taken = next((t for t, out in self.ndi.items() if out.name == name and t != tab), None)
            if taken is not None:
                raise UsageError(f"another tab sends as the NDI source {name!r}: give this one another name")
            out = self.ndi.get(tab)
            if out is not None and out.name != name:  # a source's name is fixed: open it again
                self.stop_ndi(tab)
                out = None
            if out is None:
                self.ndi_errors.pop(tab, None)
                out = self.ndi[tab] = self._start_ndi(name, walk_id, cache, channels)
            else:  # it sends this walk already (`set_walk` moved it here)
                out.feed.set_channels(channels)
            return out

    def ndi_status(self, walk_id: str) -> dict[str, Any]:
        """What the tab of walk `walk_id` sends over NDI now (`{"sending": false}` when
        nothing; with `"error"` when its stream stopped by itself, said once)."""
        tab = self.tab_of_walk(walk_id)
        with self._ndi_lock:
            out = self.ndi.get(tab)
            if out is not None and not out.stream.player.running:  # the walk failed: it stopped
                error = out.stream.player.error or out.feed.error
                self.stop_ndi(tab)
                said = " ".join(f"NDI stopped: {error}".split()) if error else "NDI stopped"
                self.ndi_errors[tab] = said
                out = None
            if out is None:
                return {"sending": False, "error": self.ndi_errors.pop(tab, None)}
            status = out.stream.status()
            player = status.player
            width, height = out.feed.frame_size
            return {
                "sending": True,
                "name": out.name,
                "source": out.stream.sender.source_name,
                "walk": out.walk,
                "channels": list(out.feed.channels),
                "width": width,
                "height": height,
                "fps": out.stream.player.fps,
                "fps_out": player.fps_out,
                "sent": player.sent,
                "dropped": player.dropped,
                "receivers": status.receivers,
                "error": None,
            }

    def follow_ndi(self, tab: str, walk_id: str, cache: WalkCache) -> None:
        """The tab walked again (`cache`, its walk `walk_id`): if it sends, send the new walk
        from now on, as a VJ expects of a live preview, with the channels sent now where the
        new layer has them, else its first three (or its first: the page's choice too, until
        it sends its own). Frames of the same size and rate: the stream goes on
        (`ModelFeed.show`: the old walk plays until the new one has a frame); else the NDI
        source is opened again under its name at the new size (an NDI source's size is fixed
        while it is open; receivers reconnect by themselves)."""
        from ..live.sources import output_size

        with self._ndi_lock:
            out = self.ndi.get(tab)
            if out is None:
                return
            channels = list(out.feed.channels)
            if max(channels) >= cache.channels:
                channels = [0, 1, 2] if cache.channels >= 3 else [0]
            size = output_size(int(cache.width), int(cache.height))
            if size == tuple(out.feed.frame_size) and float(cache.fps) == out.stream.player.fps:
                out.feed.show(cache, channels)
                out.walk = walk_id
                return
            self.stop_ndi(tab)
            try:
                self.ndi[tab] = self._start_ndi(out.name, walk_id, cache, channels)
            except Irep3dError as exc:  # the walk stands; the page hears of it when it asks
                self.ndi_errors[tab] = str(exc)

    def _start_ndi(self, name: str, walk_id: str, cache: WalkCache, channels: list[int]) -> _NdiOut:
        from ..live.model import ModelFeed
        from ..live.stage import NdiStream

        feed = ModelFeed(cache, channels, self.budget_bytes)
        stream = NdiStream(feed, name, float(cache.fps))
        stream.start()
        if self.log is not None:
            self.log(
                f"NDI: sending {walk_id} ({cache.layer}); "
                + NDI_NOTICE.format(source=stream.sender.source_name)
            )
        return _NdiOut(name, walk_id, feed, stream)

    def stop_ndi(self, tab: str) -> _NdiOut | None:
        """Stop the tab's NDI stream (the source closes; the walk goes on); what it was."""
        with self._ndi_lock:
            out = self.ndi.pop(tab, None)
            if out is not None:
                out.stream.close()  # not the feed: the walk is the tab's, its computation goes on
                if self.log is not None:
                    self.log(f"NDI: {out.name!r} stopped")
            return out

    def close(self) -> None:
        """Stop every NDI stream and every walk (the server is stopping): the walks' threads
        end within a batch."""
        with self._ndi_lock:
            for tab in list(self.ndi):
                self.stop_ndi(tab)
        with self._lock:
            caches = list(self.walks.values())
            self.walks.clear()
            self.tabs.clear()
        for cache in caches:
            cache.cancel()
        for cache in caches:
            cache.wait(60)

    def walk(self, walk_id: str) -> WalkCache:
        cache = self.walks.get(walk_id)
        if cache is None:
            raise KeyError(walk_id)
        return cache


# --------------------------------------------------------------------------- safety


class _SameSite:
    """ASGI middleware: refuse requests for another host (DNS rebinding) or from another
    origin. `hosts` are the Host headers accepted; with `any_address` (serving on every
    interface), also any `IP:port` of the served port, which no rebound name can be."""

    def __init__(self, app: ASGIApp, hosts: set[str], port: int, any_address: bool = False) -> None:
        self.app, self.hosts, self.port, self.any_address = app, hosts, port, any_address

    def _ours(self, host: str) -> bool:
        if host in self.hosts:
            return True
        if not self.any_address:
            return False
        name, _, port = host.rpartition(":")
        try:
            ipaddress.ip_address(name.strip("[]"))
        except ValueError:
            return False
        return port == str(self.port)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
            host, origin = headers.get("host", ""), headers.get("origin")
            problem = None
            if not self._ours(host):
                problem = (
                    f"this explorer answers requests for {sorted(self.hosts)[0]}, not {host or 'no host'}"
                )
            elif origin is not None and not (origin.startswith("http://") and self._ours(origin[7:])):
                problem = f"requests from {origin} are refused: only the explorer's own page may use it"
            if problem is not None:
                await JSONResponse({"error": problem}, status_code=403)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _hosts(host: str, port: int) -> set[str]:
    """The Host headers a page served from `host:port` sends."""
    names = {f"[{host}]" if ":" in host else host}
    if host in ("127.0.0.1", "localhost", "::1", "0.0.0.0", "::"):
        names |= {"127.0.0.1", "localhost", "[::1]"}
    if host in ("0.0.0.0", "::"):
        names |= {socket.gethostname(), socket.getfqdn()}
    return {f"{name}:{port}" for name in names}


# --------------------------------------------------------------------------- helpers


def _error(message: str, status: int = 400) -> JSONResponse:
    return JSONResponse({"error": " ".join(str(message).split())}, status_code=status)


def _png(pixels: np.ndarray, headers: dict[str, str] | None = None) -> Response:
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels)).save(buffer, format="PNG", compress_level=1)
    return Response(
        buffer.getvalue(), media_type="image/png", headers={"Cache-Control": "no-store", **(headers or {})}
    )


def _channels(text: str | None, cache: WalkCache) -> list[int]:
    """`a,b,c` (or one index) -> channel indices, checked against the layer."""
    from ..colour import check_channels

    try:
        picked = [int(v) for v in (text or "").split(",") if v.strip()]
    except ValueError:
        raise UsageError(f"channels must be 3 indices (or 1) like 12,40,3, not {text!r}") from None
    if len(picked) not in (1, 3):
        raise UsageError(f"give 3 channels (R, G, B) or 1 (grey), not {len(picked)}")
    check_channels(picked, cache.channels, cache.layer)
    return picked


def _name(value: Any, what: str = "clip name") -> str:
    """A name that stays one file or folder inside `--out`: the rule of a release's clip
    names (`irep3d.release.check_clip_name`: letters, digits, `.`, `-`, `_`, no folders)."""
    from ..release.file import check_clip_name

    return check_clip_name(value, what)


def _inside(out: Path, name: str) -> Path:
    path = (out / name).resolve()
    if not path.is_relative_to(out.resolve()):
        raise UsageError(f"{name!r} would be written outside {out}")
    return path


def _walk_values(options: dict[str, Any]) -> dict[str, Any]:
    """The page's option values (by `describe_options` name) as `maps_options` takes them."""
    from ..options import OPTIONS

    if not isinstance(options, dict):
        raise UsageError("options must be an object of option name -> value")
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise UsageError(f"unknown option {unknown[0]!r}; valid: {', '.join(OPTIONS)}")
    values = {}
    for name, value in options.items():
        if value is None or value == "":
            continue
        values[name] = value
    return values


def _command(explorer: Explorer, walk: dict[str, Any], channels: list[int], name: str) -> str:
    """The `irep3d maps` line that renders this clip: the flags of the options the page set
    (as it typed them), each from its declaration (`irep3d.cli.maps.option_flags`)."""
    from ..cli.maps import option_flags
    from ..options import OPTIONS, MapsOptions

    defaults = MapsOptions()
    words = ["irep3d", "maps", explorer.model, "--layer", walk["layer"]]
    words += ["--channels", ",".join(map(str, channels)), "--seeds", walk["seeds"]]
    for key, value in walk["options"].items():
        option, flags = OPTIONS[key], option_flags(key)
        if option.cli_type is bool:
            on, _, off = flags[0].partition("/")
            if bool(value) != getattr(defaults, key):
                words.append(on if value else off)
            continue
        if str(value) != str(getattr(defaults, key)):
            words += [flags[0], str(value)]
    words += ["--out", str(explorer.out), "--name", name]
    return shlex.join(words)


# --------------------------------------------------------------------------- routes


def create_app(explorer: Explorer, host: str = "127.0.0.1", port: int = 8765) -> Starlette:
    """The Starlette app serving `explorer` at http://host:port/ (see the module)."""
    from ..generator import layer_table
    from ..keyframes import parse_keyframes
    from ..options import describe_options, maps_options
    from ..presets import DEFAULT_PRESET, describe_settings, load_presets

    walk_requests: dict[str, dict[str, Any]] = {}  # walk id -> what the page asked for

    def tab_of(request: Request) -> str:
        tab = request.headers.get("x-irep3d-tab") or request.query_params.get("tab") or "default"
        explorer.seen(tab)
        return tab

    def walk_of(request: Request) -> tuple[str, WalkCache]:
        tab_of(request)
        walk_id = request.path_params["walk"]
        try:
            return walk_id, explorer.walk(walk_id)
        except KeyError:
            raise _Gone(
                f"no walk {walk_id!r} here (it was replaced or its tab closed): start a new one"
            ) from None

    def page(request: Request) -> Response:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})

    def model(request: Request) -> Response:
        net = explorer.net
        return JSONResponse(
            {
                "model": explorer.model,
                "architecture": getattr(net, "architecture", ""),
                "resolution": int(net.img_resolution),
                "device": explorer.device,
                "out": str(explorer.out),
            }
        )

    def layers(request: Request) -> Response:
        return JSONResponse(
            [vars(r) for r in layer_table(explorer.net)]  # as `irep3d layers --json`
        )

    def options(request: Request) -> Response:
        presets = [
            {"name": name, "description": preset.description, "values": _jsonable(preset)}
            for name, preset in load_presets().items()
        ]
        return JSONResponse(
            {
                "walk": describe_options(),
                "scene": describe_settings(),
                "presets": presets,
                "default_preset": DEFAULT_PRESET,
            }
        )

    async def new_walk(request: Request) -> Response:
        tab = tab_of(request)
        body = await _json(request)
        layer = body.get("layer")
        seeds_text = str(body.get("seeds") or "0-3").strip()
        values = _walk_values(body.get("options") or {})
        opts = maps_options(**values)
        try:
            seeds = parse_keyframes(seeds_text, opts.ws)
        except UsageError as exc:  # the page marks its seeds field
            raise OptionError("seeds", str(exc), str(exc)) from None
        if not isinstance(layer, str):
            raise UsageError("choose a layer")
        cache = WalkCache(explorer.net, explorer.model, layer, seeds, opts, explorer.budget_bytes)
        walk_id = explorer.set_walk(tab, cache)
        walk_requests[walk_id] = {"layer": layer, "seeds": seeds_text, "options": values}
        sheet = {"columns": math.ceil(math.sqrt(cache.channels)), "gap": _tile_gap()}
        return JSONResponse({"walk": walk_id, **cache.describe(), "sheet": sheet})

    def walk_status(request: Request) -> Response:
        _, cache = walk_of(request)
        if cache.error is not None:
            return _error(f"the walk stopped: {cache.error}", 500)
        return JSONResponse(
            {
                "done": cache.done,
                "total": cache.total,
                "figures_final": cache.figures_final,
                "finished": cache.finished,
            }
        )

    def frame(request: Request) -> Response:
        _, cache = walk_of(request)
        index = int(request.path_params["index"])
        if not 0 <= index < cache.total:
            raise UsageError(f"frame {index} is outside the walk's 0-{cache.total - 1}")
        channels = _channels(request.query_params.get("channels"), cache)
        shown = cache.nearest(index)
        if shown is None:
            return _error("no frame is computed yet", 404)
        pixels = cache.frame(shown, channels)
        return _png(pixels, {"X-Irep3d-Frame": str(shown)})

    def sheet(request: Request) -> Response:
        from ..sheet import sheet_image

        _, cache = walk_of(request)
        index = int(request.path_params["index"])
        tile = int(request.query_params.get("tile", "64"))
        if not _TILE[0] <= tile <= _TILE[1]:
            raise UsageError(f"tile must be {_TILE[0]}-{_TILE[1]} px, not {tile}")
        shown = cache.nearest(index)
        with single_threaded():  # beside the walk's passes (irep3d.network_thread)
            acts = cache.layer_frame(shown) if shown is not None else None
            if acts is None:
                return _error("no frame is computed yet", 404)
            image = sheet_image(acts, tile, labels=False)
        return _png(np.asarray(image), {"X-Irep3d-Frame": str(shown)})

    def auto(request: Request) -> Response:
        _, cache = walk_of(request)
        return JSONResponse({"channels": cache.auto_channels()})

    def command(request: Request) -> Response:
        walk_id, cache = walk_of(request)
        channels = _channels(request.query_params.get("channels"), cache)
        name = _name(request.query_params.get("name") or f"{cache.layer}_c{'-'.join(map(str, channels))}")
        return JSONResponse({"command": _command(explorer, walk_requests[walk_id], channels, name)})

    async def render(request: Request) -> Response:
        _, cache = walk_of(request)
        body = await _json(request)
        channels = _channels(",".join(map(str, body.get("channels") or [])), cache)
        name = _name(body.get("name"))
        _inside(explorer.out, name)
        job_id = explorer.new_id("j")
        job = _Job(total=cache.total, path=str(explorer.out / name))
        explorer.jobs[job_id] = job
        threading.Thread(
            target=_render_job,
            args=(explorer, job, cache, channels, name),
            name=f"irep3d-{job_id}",
            daemon=True,
        ).start()
        return JSONResponse({"job": job_id})

    def job_status(request: Request) -> Response:
        job = explorer.jobs.get(request.path_params["job"])
        if job is None:
            raise UsageError(f"no render job {request.path_params['job']!r}")
        return JSONResponse(
            {"state": job.state, "done": job.done, "total": job.total, "error": job.error, "path": job.path}
        )

    def job_cancel(request: Request) -> Response:
        job = explorer.jobs.get(request.path_params["job"])
        if job is None:
            raise UsageError(f"no render job {request.path_params['job']!r}")
        job.cancel.set()
        return JSONResponse({"state": job.state})

    async def release(request: Request) -> Response:
        from ..release import append_clip

        walk_id, cache = walk_of(request)
        body = await _json(request)
        channels = _channels(",".join(map(str, body.get("channels") or [])), cache)
        name = _name(body.get("name"))
        file_name = body.get("release") or "release.toml"
        if not isinstance(file_name, str) or not file_name.endswith(".toml"):
            raise UsageError(f"a release file ends in .toml, not {file_name!r}")
        path = _inside(explorer.out, _name(file_name, "release file name"))
        asked = walk_requests[walk_id]
        entry = {"name": name, "layer": cache.layer, "channels": channels, "seeds": asked["seeds"]}
        entry.update(_release_values(asked["options"], cache.options, path))
        table = append_clip(path, entry, model=explorer.model)
        return JSONResponse({"path": str(path), "table": table})

    async def ndi(request: Request) -> Response:
        walk_id, cache = walk_of(request)
        body = await _json(request)
        on = body.get("on")
        if not isinstance(on, bool):
            raise UsageError(f"on must be true (send) or false (stop), not {on!r}")
        if not on:
            out = await run_in_threadpool(explorer.stop_ndi, explorer.tab_of_walk(walk_id))
            return JSONResponse({"sending": False, "name": out.name if out is not None else None})
        name = body.get("name", NDI_NAME)
        if not isinstance(name, str):
            raise UsageError(f"the NDI source's name is text, like {NDI_NAME!r}, not {name!r}")
        channels = _channels(",".join(map(str, body.get("channels") or [])), cache)
        await run_in_threadpool(explorer.send_ndi, walk_id, name.strip(), channels)
        answer = explorer.ndi_status(walk_id)
        answer["notice"] = NDI_NOTICE.format(source=answer.get("source"))
        return JSONResponse(answer)

    def ndi_status(request: Request) -> Response:
        walk_id, _ = walk_of(request)
        return JSONResponse(explorer.ndi_status(walk_id))

    def close(request: Request) -> Response:
        explorer.close_tab(
            request.query_params.get("tab") or request.headers.get("x-irep3d-tab") or "default"
        )
        return JSONResponse({"closed": True})

    routes = [
        Route("/", page),
        Route("/api/model", model),
        Route("/api/layers", layers),
        Route("/api/options", options),
        Route("/api/walk", new_walk, methods=["POST"]),
        Route("/api/walk/{walk}", walk_status),
        Route("/api/walk/{walk}/frame/{index:int}.png", frame),
        Route("/api/walk/{walk}/channels/{index:int}.png", sheet),
        Route("/api/walk/{walk}/auto", auto, methods=["POST"]),
        Route("/api/walk/{walk}/command", command),
        Route("/api/walk/{walk}/render", render, methods=["POST"]),
        Route("/api/walk/{walk}/release", release, methods=["POST"]),
        Route("/api/walk/{walk}/ndi", ndi, methods=["POST"]),
        Route("/api/walk/{walk}/ndi", ndi_status, methods=["GET"]),
        Route("/api/jobs/{job}", job_status),
        Route("/api/jobs/{job}/cancel", job_cancel, methods=["POST"]),
        Route("/api/tab/close", close, methods=["POST"]),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    app = Starlette(
        routes=routes,
        middleware=[
            Middleware(_SameSite, hosts=_hosts(host, port), port=port, any_address=host in ("0.0.0.0", "::"))
        ],
        exception_handlers={Irep3dError: _irep3d_error, Exception: _unexpected},
    )
    return app


class _Gone(Irep3dError):
    """A walk the server no longer has (replaced, or its tab closed): HTTP 410."""


async def _irep3d_error(request: Request, exc: Exception) -> Response:
    """One line, in the CLI's words; for a walk option, its name too (the page marks the field)."""
    response = _error(str(exc), 410 if isinstance(exc, _Gone) else 400)
    if isinstance(exc, OptionError):
        from ..options import OPTIONS

        name = next((n for n, o in OPTIONS.items() if (o.key or n) == exc.key), exc.key)
        response = JSONResponse({"error": " ".join(str(exc).split()), "option": name}, status_code=400)
    return response


async def _unexpected(request: Request, exc: Exception) -> Response:
    """Anything else is the server's fault: one line, no stack trace in the page."""
    if isinstance(exc, KeyError | ValueError | TypeError):
        return _error(f"bad request: {exc}")
    return _error(f"the explorer failed: {type(exc).__name__}: {exc}", 500)


async def _json(request: Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        raise UsageError("the request body must be JSON") from None
    if not isinstance(body, dict):
        raise UsageError("the request body must be a JSON object")
    return body


def _tile_gap() -> int:
    from ..sheet import TILE_GAP

    return TILE_GAP


def _jsonable(preset: Any) -> dict[str, Any]:
    """A preset's values as JSON (tuples as lists)."""
    from dataclasses import asdict

    return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(preset).items()}


def _release_values(options: dict[str, Any], walked: Any, path: Path) -> dict[str, Any]:
    """The walk's options as a `[[clips]]` table of the release file `path` holds them, so
    that `irep3d release` makes the clip the page shows: the options the page set, under
    their keys (`class`, not class_idx), typed as their flags read them (`typed_value`: a
    form's "15" is 15), files by their absolute path; and every option the file's
    `[walk]`/`[pack]` would set otherwise, at the page's value."""
    from ..options import OPTIONS, MapsOptions, typed_value
    from ..release import load_release

    values = {}
    for name, value in options.items():
        option = OPTIONS[name]
        value = str(Path(str(value)).expanduser().resolve()) if option.path else typed_value(name, value)
        values[option.key or name] = value
    if not path.is_file():
        return values
    file_options, defaults = load_release(path).options, MapsOptions()
    for name, option in OPTIONS.items():
        key = option.key or name
        if key in values or getattr(file_options, name) == getattr(walked, name):
            continue
        if getattr(defaults, name) is None:
            raise UsageError(
                f"{path.name} sets {key} for every clip, and this clip has none: add it to another release file"
            )
        values[key] = typed_value(name, getattr(defaults, name))
    return values


def _render_job(explorer: Explorer, job: _Job, cache: WalkCache, channels: list[int], name: str) -> None:
    """Render the clip as `irep3d maps` does (`render_clips`), reporting into `job`."""
    from ..maps_engine import render_clips
    from ..options import ClipJob

    def progress(stage: str, done: int, total: int) -> None:
        if job.cancel.is_set():
            raise _Cancelled
        if stage == "write":
            job.done, job.total = done, total or job.total

    try:
        clip = ClipJob(name=name, layer=cache.layer, channels=channels, seeds=list(cache.seeds))
        # On the network thread (`irep3d.network_thread`): the walks wait for it.
        run_on_network(
            lambda: render_clips(
                explorer.net, explorer.model, [clip], explorer.out, cache.options, progress=progress
            )
        )
        job.state = "done"
    except _Cancelled:
        job.state = "cancelled"
    except Irep3dError as exc:
        job.state, job.error = "error", str(exc)
    except Exception as exc:  # the page shows one line; the server keeps serving
        job.state, job.error = "error", f"{type(exc).__name__}: {exc}"
