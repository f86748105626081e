"""NDI out (and in, to check it): frames as a VJ tool on the network receives them.

Through `cyndilib` (the `live` extra, `pip install 'irep3d[live]'`), whose Linux wheel
bundles the NDI runtime (libndi, © Vizrt NDI AB, under the NDI SDK licence: see the
README). irep3d does not ship libndi; without the extra, `require_ndi` says how to get it.

Frames go out as 8-bit UYVY 4:2:2 with BT.709 limited-range coefficients, converted once,
when a frame is read (`to_uyvy`, swscale through PyAV), so the sender only hands bytes to
the NDI library: measured here (2 cores), a 2048×2048 stream at 60 frames/s costs the
sender ~40 % of one core as UYVY and all of it as RGBA, which NDI would convert itself.
NDI decodes UYVY with BT.709 at every size (checked here by sending colour bars of 148×148
to 1920×1080 and reading them back: BT.601 is off by ~40 levels on saturated colours).

The sender listens on every network interface (TCP 5960 and up): whoever reaches this
machine can receive the stream. `NDI_CONFIG_DIR` (a folder holding `ndi-config.v1.json`)
restricts discovery and the networks NDI uses, e.g. `{"ndi": {"networks": {"ips":
"127.0.0.1"}}}` for this machine alone.
"""

from __future__ import annotations

import time
from fractions import Fraction
from types import ModuleType
from typing import Any

import numpy as np

from ..errors import OutputError, UsageError

__all__ = ["NdiReceiver", "NdiSender", "black_uyvy", "from_uyvy", "require_ndi", "to_uyvy"]

INSTALL_HINT = "pip install 'irep3d[live]' (cyndilib, whose wheel carries the NDI runtime, and python-osc)"


def require_ndi() -> ModuleType:
    """The `cyndilib` module, loaded with the NDI runtime it carries.

    Raises:
        UsageError: cyndilib is not installed, or the NDI runtime cannot be loaded: one
            line naming what is missing and how to install it.
    """
    try:
        import cyndilib
    except ImportError as exc:
        missing = getattr(exc, "name", None) == "cyndilib" or "cyndilib" in str(exc)
        what = (
            "the NDI library cyndilib is not installed" if missing else f"the NDI runtime cannot load ({exc})"
        )
        raise UsageError(f"irep3d live sends NDI: {what}; {INSTALL_HINT}") from None
    except OSError as exc:  # a wheel whose libndi cannot be loaded on this system
        raise UsageError(
            f"irep3d live sends NDI: the NDI runtime cannot load ({exc}); {INSTALL_HINT}"
        ) from None
    return cyndilib


def to_uyvy(pixels: np.ndarray) -> np.ndarray:
    """8-bit RGB [H, W, 3] (W even) -> UYVY [H, 2W]: BT.709, limited range (16-235/240),
    chroma of each pixel pair, as NDI decodes it (swscale, through PyAV)."""
    import av
    from av.video.reformatter import ColorRange, Colorspace

    height, width = pixels.shape[:2]
    if width % 2:
        raise ValueError(f"UYVY needs an even width, got {width}")
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(pixels), format="rgb24")
    uyvy = frame.reformat(format="uyvy422", dst_colorspace=Colorspace.ITU709, dst_color_range=ColorRange.MPEG)
    plane = uyvy.planes[0]
    return np.frombuffer(plane, np.uint8).reshape(height, plane.line_size)[:, : 2 * width].copy()


def from_uyvy(data: np.ndarray, width: int, height: int, stride: int | None = None) -> np.ndarray:
    """UYVY bytes (rows of `stride` bytes, default 2 × width) -> 8-bit RGB [H, W, 3]
    (BT.709 limited range, the inverse of `to_uyvy`)."""
    import av
    from av.video.reformatter import ColorRange, Colorspace

    stride = 2 * width if stride is None else stride
    rows = np.asarray(data, np.uint8)[: stride * height].reshape(height, stride)[:, : 2 * width]
    frame = av.VideoFrame(width, height, "uyvy422")
    plane = frame.planes[0]
    target = np.frombuffer(plane, np.uint8).reshape(height, plane.line_size)
    target[:, : 2 * width] = rows
    rgb = frame.reformat(format="rgb24", src_colorspace=Colorspace.ITU709, src_color_range=ColorRange.MPEG)
    return rgb.to_ndarray()


def black_uyvy(width: int, height: int) -> np.ndarray:
    """A black UYVY frame [H, 2W] (Y 16, U and V 128: BT.709 limited range)."""
    frame = np.empty((height, 2 * width), np.uint8)
    frame[:, 0::2] = 128
    frame[:, 1::2] = 16
    return frame


class NdiSender:
    """An NDI source named `name` sending UYVY frames of `width`×`height` at `fps`.

    Frames are handed over asynchronously (`write_video_async`): NDI compresses one frame
    while the next is prepared; the sender paces nothing itself (the player does).
    """

    def __init__(self, name: str, width: int, height: int, fps: float) -> None:
        if not name.strip():
            raise UsageError("--ndi needs a name for the NDI source, e.g. --ndi irep3d")
        if width % 2:
            raise ValueError(f"UYVY needs an even width, got {width}")
        self.name, self.width, self.height = name, width, height
        ndi = require_ndi()
        frame = ndi.VideoSendFrame()
        frame.set_resolution(width, height)
        frame.set_fourcc(ndi.FourCC.UYVY)
        frame.set_frame_rate(Fraction(fps).limit_denominator(1001))
        self._sender = ndi.Sender(name, clock_video=False)
        self._sender.set_video_frame(frame)
        self._open = False

    def open(self) -> NdiSender:
        """Start the source (it is announced, and listens, from now on)."""
        try:
            self._sender.open()
        except Exception as exc:  # cyndilib raises plain exceptions
            raise OutputError(f"cannot start the NDI source {self.name!r}: {exc}") from None
        self._open = True
        return self

    @property
    def source_name(self) -> str:
        """The full NDI name receivers see: `HOST (name)`."""
        source = self._sender.source
        return source.name if source is not None else self.name

    def connections(self) -> int:
        """How many receivers are connected now."""
        return int(self._sender.get_num_connections(0)) if self._open else 0

    def send(self, uyvy: np.ndarray) -> None:
        """Send one UYVY frame [H, 2W] (its bytes are copied before this returns)."""
        self._sender.write_video_async(uyvy.reshape(-1))

    def close(self) -> None:
        """Stop the source; safe to call twice."""
        if self._open:
            self._open = False
            self._sender.close()

    def __enter__(self) -> NdiSender:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()


class NdiReceiver:
    """A receiver of the NDI source whose name ends in `(name)`, through NDI's frame
    synchroniser polled by the caller (`latest`): every frame a sender sends at up to
    ~100 frames/s is seen, once each (by its timestamp).

    For checks and benchmarks of a stream on this machine: `rgb=True` asks NDI for RGBA
    (what a VJ tool shows), else frames stay UYVY (the cheapest to receive).
    """

    def __init__(self, name: str, timeout: float = 15.0, rgb: bool = True) -> None:
        ndi = require_ndi()
        self.rgb = rgb
        self._finder = ndi.Finder()
        self._finder.open()
        source = None
        deadline = time.monotonic() + timeout
        while source is None and time.monotonic() < deadline:
            self._finder.wait_for_sources(0.2)
            for found in self._finder.get_source_names():
                if found.endswith(f"({name})"):
                    source = self._finder.get_source(found)
        if source is None:
            self._finder.close()
            raise OutputError(f"no NDI source named {name!r} was found within {timeout:g} s")
        self.source_name = source.name
        color = ndi.RecvColorFormat.RGBX_RGBA if rgb else ndi.RecvColorFormat.UYVY_RGBA
        self._receiver = ndi.Receiver(color_format=color, bandwidth=ndi.RecvBandwidth.highest)
        self._frame = ndi.VideoFrameSync()
        self._receiver.frame_sync.set_video_frame(self._frame)
        self._receiver.set_source(source)
        self._last: float | None = None

    def poll(self) -> float | None:
        """The timestamp of the newest frame if it is one not seen before, else None (its
        pixels are not copied: for counting frames)."""
        self._receiver.frame_sync.capture_video()
        frame = self._frame
        if not frame.xres:
            return None
        stamp = frame.get_timestamp_posix()
        if stamp == self._last:
            return None
        self._last = stamp
        return stamp

    def latest(self) -> tuple[float, np.ndarray] | None:
        """The newest frame, (timestamp, pixels), if it is one not returned before, else
        None. Pixels are RGB [H, W, 3] (`rgb`), else UYVY [H, 2W]."""
        stamp = self.poll()
        if stamp is None:
            return None
        frame = self._frame
        width, height, stride = frame.xres, frame.yres, frame.get_line_stride()
        data = frame.get_array()
        if self.rgb:
            rows = data[: stride * height].reshape(height, stride)[:, : 4 * width]
            return stamp, rows.reshape(height, width, 4)[..., :3].copy()
        return stamp, data[: stride * height].reshape(height, stride)[:, : 2 * width].copy()

    def close(self) -> None:
        """Disconnect and stop looking for sources."""
        self._receiver.disconnect()
        self._finder.close()

    def __enter__(self) -> NdiReceiver:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
