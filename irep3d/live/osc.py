"""OSC control of `irep3d live`: fixed addresses in the manner of Resolume's, over UDP.

`OscControl` listens on HOST:PORT (127.0.0.1 unless told) and steers a `Player` (and, for
a model SOURCE, the walk): the addresses and what they take are `ADDRESSES`. Numbers may
come as OSC ints or floats (controllers such as TouchOSC send floats), a flag as a number
or an OSC True/False. A message with another address, or arguments of the wrong type or
out of range, is reported through `log` as one line and changes nothing; so is a packet
that is not OSC. The stream never stops for a message.

`LoopPulse` sends `/irep3d/loop` (the clip's number, from 1, and its name) to a reply
address each time a loop wraps, as Autolume's "perfect loop" pulse does, for a sequencer or
a lighting desk to lock to.
"""

from __future__ import annotations

import math
import socket
import threading
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from ..errors import Irep3dError, UsageError
from .ndi import INSTALL_HINT
from .player import MAX_SPEED, Player

__all__ = ["ADDRESSES", "MODEL_ADDRESSES", "LoopPulse", "ModelControls", "OscControl", "parse_host_port"]

PREFIX = "/irep3d/"
#: What each address takes (the README's table says the same).
ADDRESSES = {
    "/irep3d/clip": "a clip's number (1 = the first) or its name",
    "/irep3d/next": "nothing, or a flag (a button's 1; its 0 on release is ignored)",
    "/irep3d/prev": "nothing, or a flag (a button's 1; its 0 on release is ignored)",
    "/irep3d/speed": f"a number within -{MAX_SPEED:g} and {MAX_SPEED:g} (1 = the clip's rate, 0 = frozen, negative = backwards)",
    "/irep3d/position": "a number within 0 and 1 (the place in the loop)",
    "/irep3d/blackout": "a flag (1 = black, 0 = the clip), or nothing to toggle",
}
#: The addresses of a model SOURCE (a walk computed live).
MODEL_ADDRESSES = {
    "/irep3d/psi": "a number within 0 and 2 (truncation ψ: the walk is computed again)",
    "/irep3d/channels": "three channel numbers of the layer (R, G, B), or one (grey)",
    "/irep3d/seed": "one seed (the walk's keyframes become it and the seeds after it) or several",
}
LOOP_ADDRESS = "/irep3d/loop"


class ModelControls(Protocol):
    """What OSC may change of a walk computed live (`irep3d.live.model.ModelFeed`)."""

    def set_psi(self, psi: float) -> None: ...

    def set_channels(self, channels: Sequence[int]) -> None: ...

    def set_seeds(self, seeds: Sequence[int]) -> None: ...


def parse_host_port(text: str, what: str = "--osc-reply") -> tuple[str, int]:
    """`HOST:PORT` -> (host, port).

    Raises:
        UsageError: not HOST:PORT with a port in 1-65535.
    """
    host, sep, port = str(text).strip().rpartition(":")
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise UsageError(f"bad {what} {text!r}: use HOST:PORT, e.g. 127.0.0.1:9001")
    return host.strip("[]"), int(port)


def _bad(wants: str) -> UsageError:
    return UsageError(f"takes {wants}")


def _number(value: Any) -> float | None:
    """An OSC int or float as a float (not a bool, not NaN), else None."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def _flag(value: Any) -> bool | None:
    """An OSC True/False or a number (nonzero = on) as a bool, else None."""
    if isinstance(value, bool):
        return value
    number = _number(value)
    return None if number is None else number != 0.0


def _whole(value: Any) -> int | None:
    """An OSC int, or a float with no fraction (2.0), as an int, else None."""
    number = _number(value)
    return int(number) if number is not None and number == int(number) else None


class OscControl:
    """Listen for OSC on `host`:`port` (UDP) and steer `player` (and `model`, for a walk
    computed live); bad messages go to `log` as one line each.

    Raises:
        UsageError: the port cannot be bound (in use, or a host that is not this machine's).
    """

    def __init__(
        self,
        player: Player,
        port: int,
        host: str = "127.0.0.1",
        log: Callable[[str], None] = lambda line: None,
        model: ModelControls | None = None,
    ) -> None:
        try:
            from pythonosc.osc_packet import OscPacket, ParseError  # the `live` extra
        except ImportError:
            raise UsageError(f"--osc needs python-osc: {INSTALL_HINT}") from None
        self._packet, self._parse_error = OscPacket, ParseError
        if not 1 <= port <= 65535:
            raise UsageError(f"--osc takes a UDP port within 1 and 65535, got {port}")
        self.player, self.model, self.log = player, model, log
        self._socket = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM)
        try:
            self._socket.bind((host, port))
        except OSError as exc:
            self._socket.close()
            why = "is in use" if exc.errno in (98, 48, 10048) else f"cannot be opened ({exc.strerror or exc})"
            raise UsageError(
                f"OSC port {port} on {host} {why}: choose another --osc port (or stop what holds it)"
            ) from None
        self._socket.settimeout(0.2)
        self.address = self._socket.getsockname()[:2]
        self._handlers: dict[str, Callable[[str, Sequence[Any]], None]] = {
            "/irep3d/clip": self._clip,
            "/irep3d/next": self._step,
            "/irep3d/prev": self._step,
            "/irep3d/speed": self._speed,
            "/irep3d/position": self._position,
            "/irep3d/blackout": self._blackout,
        }
        if model is not None:
            self._handlers |= {
                "/irep3d/psi": self._psi,
                "/irep3d/channels": self._channels,
                "/irep3d/seed": self._seed,
            }
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="irep3d-live-osc", daemon=True)

    def start(self) -> OscControl:
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop listening and free the port."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        self._socket.close()

    # ------------------------------------------------------------------- receiving

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, sender = self._socket.recvfrom(65536)
            except TimeoutError:
                continue
            except OSError:
                return  # closed
            self.handle(data, sender)

    def handle(self, data: bytes, sender: tuple[str, int] | None = None) -> None:
        """Act on one UDP packet (an OSC message or bundle)."""
        try:
            messages = [timed.message for timed in self._packet(data).messages]
        except self._parse_error:
            source = f" from {sender[0]}:{sender[1]}" if sender else ""
            self.log(f"OSC packet{source} is not an OSC message; ignored")
            return
        for message in messages:
            self.dispatch(message.address, list(message.params))

    def dispatch(self, address: str, args: Sequence[Any]) -> None:
        """Act on one OSC message; a bad one is logged (one line) and changes nothing."""
        handler = self._handlers.get(address)
        try:
            if handler is None:
                raise self._unknown(address)
            handler(address, args)
        except Irep3dError as exc:
            shown = " ".join(repr(a) for a in args) if args else "(no arguments)"
            self.log(f"OSC {address} {shown}: {exc}; ignored")

    def _unknown(self, address: str) -> UsageError:
        if address in MODEL_ADDRESSES:
            return UsageError("only a model SOURCE takes it (this one is a folder)")
        known = ", ".join([*ADDRESSES, *(MODEL_ADDRESSES if self.model is not None else ())])
        return UsageError(f"unknown address; irep3d takes {known}")

    # ------------------------------------------------------------------- the addresses

    def _clip(self, address: str, args: Sequence[Any]) -> None:
        if len(args) != 1:
            raise _bad(ADDRESSES[address])
        (value,) = args
        if isinstance(value, str):
            self.player.select(value)
            return
        number = _whole(value)
        if number is None:
            raise _bad(ADDRESSES[address])
        self.player.select(number - 1)

    def _step(self, address: str, args: Sequence[Any]) -> None:
        if len(args) > 1 or (args and _flag(args[0]) is None):
            raise _bad(ADDRESSES[address])
        if args and not _flag(args[0]):
            return  # a button's release
        self.player.next() if address.endswith("next") else self.player.prev()

    def _speed(self, address: str, args: Sequence[Any]) -> None:
        value = _number(args[0]) if len(args) == 1 else None
        if value is None or abs(value) > MAX_SPEED:
            raise _bad(ADDRESSES[address])
        self.player.set_speed(value)

    def _position(self, address: str, args: Sequence[Any]) -> None:
        value = _number(args[0]) if len(args) == 1 else None
        if value is None or not 0.0 <= value <= 1.0:
            raise _bad(ADDRESSES[address])
        self.player.set_position(value)

    def _blackout(self, address: str, args: Sequence[Any]) -> None:
        if len(args) > 1 or (args and _flag(args[0]) is None):
            raise _bad(ADDRESSES[address])
        self.player.set_blackout(_flag(args[0]) if args else None)

    def _psi(self, address: str, args: Sequence[Any]) -> None:
        value = _number(args[0]) if len(args) == 1 else None
        if value is None or not 0.0 <= value <= 2.0:
            raise _bad(MODEL_ADDRESSES[address])
        assert self.model is not None
        self.model.set_psi(value)

    def _channels(self, address: str, args: Sequence[Any]) -> None:
        channels = [_whole(a) for a in args]
        if len(channels) not in (1, 3) or any(c is None or c < 0 for c in channels):
            raise _bad(MODEL_ADDRESSES[address])
        assert self.model is not None
        self.model.set_channels([int(c) for c in channels if c is not None])

    def _seed(self, address: str, args: Sequence[Any]) -> None:
        seeds = [_whole(a) for a in args]
        if not seeds or any(s is None or s < 0 for s in seeds):
            raise _bad(MODEL_ADDRESSES[address])
        assert self.model is not None
        self.model.set_seeds([int(s) for s in seeds if s is not None])


class LoopPulse:
    """Sends `/irep3d/loop` (clip number from 1, clip name) to `host`:`port` over UDP: call
    it as `on_loop(clip, name)` (the player's callback). A send that fails is logged once."""

    def __init__(self, host: str, port: int, log: Callable[[str], None] = lambda line: None) -> None:
        try:
            from pythonosc.udp_client import SimpleUDPClient
        except ImportError:
            raise UsageError(f"--osc-reply needs python-osc: {INSTALL_HINT}") from None
        try:
            self._client = SimpleUDPClient(host, port)
        except OSError as exc:
            raise UsageError(f"cannot send OSC to {host}:{port}: {exc.strerror or exc}") from None
        self.target = f"{host}:{port}"
        self._log = log
        self._failed = False
        self.sent = 0

    def __call__(self, clip: int, name: str) -> None:
        try:
            self._client.send_message(LOOP_ADDRESS, [clip + 1, name])
            self.sent += 1
        except OSError as exc:
            if not self._failed:
                self._failed = True
                self._log(f"cannot send {LOOP_ADDRESS} to {self.target}: {exc.strerror or exc}")
