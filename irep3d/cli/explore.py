"""`irep3d explore MODEL`: a local web page to browse a network's layers and channels live."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ._common import DeviceOpt, ModelArg, console, err_console, reports_errors

#: Hosts that only this machine reaches.
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def explore(
    model: ModelArg,
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Where clips and release files made from the page go.")
    ] = Path("out/explore"),
    port: Annotated[int, typer.Option("--port", help="Port to serve the page on.")] = 8765,
    host: Annotated[
        str,
        typer.Option(
            "--host",
            help="Address to serve on. The default is this machine only; from another machine, "
            "tunnel: ssh -L 8765:127.0.0.1:8765 THIS-HOST.",
        ),
    ] = "127.0.0.1",
    device: DeviceOpt = "auto",
    cache_gb: Annotated[
        float, typer.Option("--cache-gb", help="Memory for one walk's frames, in GiB (see README: explorer).")
    ] = 4.0,
    open_browser: Annotated[bool, typer.Option("--open", help="Open the page in a browser.")] = False,
) -> None:
    """Serve a page to explore a network: solo a layer, pick any three channels, watch the exact
    loop, see it in 3D, then render it or add it to a release."""
    import uvicorn

    from ..errors import UsageError
    from ..explore.engine import warm_up
    from ..explore.server import Explorer, create_app
    from ..generator import load_generator, pick_device
    from ..network_thread import run_on_network

    if not 1 <= port <= 65535:
        raise UsageError(f"--port must be 1-65535, not {port}")
    if not 0.05 <= cache_gb <= 1024:
        raise UsageError(f"--cache-gb must be from 0.05 to 1024, not {cache_gb}")
    _check_address(host, port)
    dev = pick_device(device)
    net = run_on_network(lambda: load_generator(model, dev))  # the thread every pass runs on
    warm_up(net)
    explorer = Explorer(net, model, out.expanduser().resolve(), str(dev), int(cache_gb * (1 << 30)))
    explorer.log = lambda line: console.print(line, markup=False, soft_wrap=True)
    app = create_app(explorer, host, port)
    config = uvicorn.Config(app, host=host, port=port, log_level="critical", lifespan="off")
    server = uvicorn.Server(config)
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else shown}:{port}/"
    if host not in LOOPBACK:
        err_console.print(
            f"[bold yellow]warning:[/] serving on {host}: anyone on that network can use this explorer "
            "and write into --out",
            markup=True,
        )
    console.print(f"irep3d explorer for {model} on {dev}: {url}  (Ctrl-C stops it)", soft_wrap=True)
    if open_browser:
        import webbrowser

        webbrowser.open(url)
    try:
        server.run()
    except KeyboardInterrupt:  # Ctrl-C is how an explorer ends: a clean stop, not an interruption
        pass
    except SystemExit:  # uvicorn could not bind after all (taken since the check above)
        raise UsageError(
            f"cannot serve on {host}:{port}: the address is in use; give another --port"
        ) from None
    finally:
        explorer.close()
    console.print("explorer stopped")


def _check_address(host: str, port: int) -> None:
    """Refuse, in one line, an address this machine cannot serve on (a port in use)."""
    import socket

    from ..errors import UsageError

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise UsageError(f"--host {host}: {exc.strerror or exc}") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            raise UsageError(
                f"cannot serve on {host}:{port}: {exc.strerror or exc}; give another --port"
            ) from None


def register(app: typer.Typer) -> None:
    """Add this group's commands to the app."""
    app.command()(reports_errors(explore))


__all__ = ["register"]
