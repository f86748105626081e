"""Step "composite": the artist's compositing operations on EXR clip frames.

Every operation is a function of one batch of frames, vectorised on torch tensors (CPU or
CUDA, whatever device the frames are on), and frame-local: frame i of the result depends
only on frame i of the input. A seamless loop therefore stays seamless (the last frame
still leads into the first), and an operation on a batch equals the operation per frame.

Frames are float32 [B, C, H, W], C = 3 (RGB) or 4 (RGBA, straight, i.e. not premultiplied,
alpha). Where an operation touches colour only, alpha passes through untouched.

Colour space: the clips hold linear float data (activations mapped to colour, not
display-encoded sRGB), and every formula here is applied to the stored values as they
are; no transfer function is added or removed. Values are usually in 0..1 but may be
outside it, and nothing is clamped unless stated:

- `blend`: the separable blend functions of W3C Compositing and Blending Level 1 (§9.1,
  https://www.w3.org/TR/compositing-1/#blending), per channel, then source-over (§5.1)
  with the top layer's alpha times `opacity`. `normal`, `multiply`, `screen`,
  `difference`, and our `add` (Cb + Cs) and `subtract` (Cb − Cs) take any values;
  `overlay`, `soft-light` and `hard-light` are only defined on [0, 1] (soft-light's
  square root, the 0.5 pivot), so both inputs are clamped to [0, 1] for those three.
- `luminance` weights RGB with Rec.709/sRGB primaries (`LUMA`), correct for linear data.
- `rgb_to_hsv` / `hsv_to_rgb`: hexcone HSV, every component in [0, 1], hue wrapping.

Upscaling to any size is not here: it is `irep3d.resize.resize` (bicubic with
antialiasing), the same filter `irep3d maps --size` uses.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from .errors import UsageError

__all__ = [
    "BLEND_MODES",
    "LUMA",
    "Ramp",
    "blend",
    "glow",
    "grade",
    "hsv_to_rgb",
    "key",
    "luminance",
    "pixelsort",
    "ramp",
    "rgb_to_hsv",
]

#: Rec.709 (= sRGB primaries) luminance weights for linear RGB.
LUMA = (0.2126, 0.7152, 0.0722)

BLEND_MODES: tuple[str, ...] = (
    "normal",
    "add",
    "multiply",
    "screen",
    "overlay",
    "soft-light",
    "hard-light",
    "difference",
    "subtract",
)

KEY_BY = ("luminance", "hsv")
SORT_AXES = ("row", "column")
SORT_BY = ("luminance", "hue")

_EPS = 1e-12


# --------------------------------------------------------------------------- helpers


def _check_frames(x: torch.Tensor, name: str = "frames") -> None:
    """Raise TypeError/ValueError unless x is a floating [B, 3|4, H, W] tensor.

    Frames come from `read_exr` (always RGB or RGBA floats), so a wrong tensor is a bug of
    the calling code, not something a user can cause.
    """
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor [B, C, H, W] with C = 3 or 4")
    if x.ndim != 4 or x.shape[1] not in (3, 4):
        raise ValueError(f"{name} must have shape [B, C, H, W] with C = 3 or 4, got {tuple(x.shape)}")


def _split(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """RGB [B, 3, H, W] and alpha [B, 1, H, W] (None for RGB frames)."""
    return x[:, :3], (x[:, 3:4] if x.shape[1] == 4 else None)


def _join(rgb: torch.Tensor, alpha: torch.Tensor | None) -> torch.Tensor:
    return rgb if alpha is None else torch.cat([rgb, alpha], dim=1)


def _smoothstep(edge0: float, edge1: float, v: torch.Tensor) -> torch.Tensor:
    """0 below edge0, 1 above edge1, Hermite in between; a hard step at edge0 if the edges meet."""
    if edge1 <= edge0:
        return (v >= edge0).to(v.dtype)
    t = ((v - edge0) / (edge1 - edge0)).clamp(0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _window(v: torch.Tensor, low: float, high: float, softness: float) -> torch.Tensor:
    """1 on [low, high], fading to 0 over `softness` outside it on both sides."""
    if softness <= 0:
        return ((v >= low) & (v <= high)).to(v.dtype)
    return _smoothstep(low - softness, low, v) * (1.0 - _smoothstep(high, high + softness, v))


def _wrap01(t: torch.Tensor) -> torch.Tensor:
    """t modulo 1 in [0, 1), except that positive whole numbers give 1 (the end of a cycle)."""
    w = t - torch.floor(t)
    return torch.where((w == 0) & (t > 0), torch.ones_like(w), w)


# --------------------------------------------------------------------------- colour


def luminance(x: torch.Tensor) -> torch.Tensor:
    """Rec.709 luminance of linear RGB(A) frames (alpha ignored).

    Shape:
        x: [B, 3|4, H, W] -> [B, 1, H, W]
    """
    _check_frames(x)
    w = torch.tensor(LUMA, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x[:, :3] * w).sum(dim=1, keepdim=True)


def rgb_to_hsv(x: torch.Tensor) -> torch.Tensor:
    """RGB(A) to HSV(A): hue in [0, 1) (0 = red, 1/3 = green, 2/3 = blue), S, V = max(R, G, B).

    Greys get hue 0 and saturation 0; alpha passes through.

    Shape:
        x: [B, 3|4, H, W] -> same
    """
    _check_frames(x)
    rgb, alpha = _split(x)
    r, g, b = rgb.unbind(dim=1)
    maxc = rgb.amax(dim=1)
    minc = rgb.amin(dim=1)
    delta = maxc - minc
    safe = torch.where(delta > 0, delta, torch.ones_like(delta))
    h = torch.where(
        maxc == r,
        torch.remainder((g - b) / safe, 6.0),
        torch.where(maxc == g, (b - r) / safe + 2.0, (r - g) / safe + 4.0),
    )
    h = torch.where(delta > 0, h / 6.0, torch.zeros_like(h))
    h = torch.where(h >= 1.0, h - 1.0, h)
    s = torch.where(
        maxc > 0, delta / torch.where(maxc > 0, maxc, torch.ones_like(maxc)), torch.zeros_like(maxc)
    )
    return _join(torch.stack([h, s, maxc], dim=1), alpha)


def hsv_to_rgb(x: torch.Tensor) -> torch.Tensor:
    """HSV(A) to RGB(A), the inverse of `rgb_to_hsv`; hue wraps (h and h + 1 are the same).

    Shape:
        x: [B, 3|4, H, W] -> same
    """
    _check_frames(x)
    hsv, alpha = _split(x)
    h, s, v = hsv[:, 0:1], hsv[:, 1:2], hsv[:, 2:3]
    n = torch.tensor([5.0, 3.0, 1.0], dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    k = torch.remainder(n + h * 6.0, 6.0)
    rgb = v - v * s * torch.clamp(torch.minimum(k, 4.0 - k), 0.0, 1.0)
    return _join(rgb, alpha)


# --------------------------------------------------------------------------- blend


def _blend_function(cb: torch.Tensor, cs: torch.Tensor, mode: str) -> torch.Tensor:
    """B(Cb, Cs) of W3C Compositing and Blending Level 1, per channel (plus add/subtract)."""
    if mode == "normal":
        return cs
    if mode == "add":
        return cb + cs
    if mode == "subtract":
        return cb - cs
    if mode == "multiply":
        return cb * cs
    if mode == "screen":
        return cb + cs - cb * cs
    if mode == "difference":
        return (cb - cs).abs()
    cb = cb.clamp(0.0, 1.0)
    cs = cs.clamp(0.0, 1.0)
    if mode == "overlay":  # HardLight(Cs, Cb): the roles swapped
        cb, cs = cs, cb
    if mode in ("overlay", "hard-light"):
        # Cs <= 0.5: Multiply(Cb, 2 Cs); else Screen(Cb, 2 Cs - 1)
        s2 = 2.0 * cs
        return torch.where(cs <= 0.5, cb * s2, cb + (s2 - 1.0) - cb * (s2 - 1.0))
    # soft-light
    d = torch.where(cb <= 0.25, ((16.0 * cb - 12.0) * cb + 4.0) * cb, torch.sqrt(cb))
    return torch.where(
        cs <= 0.5,
        cb - (1.0 - 2.0 * cs) * cb * (1.0 - cb),
        cb + (2.0 * cs - 1.0) * (d - cb),
    )


def blend(base: torch.Tensor, top: torch.Tensor, mode: str, opacity: float = 1.0) -> torch.Tensor:
    """Blend `top` over `base` with a W3C blend mode, then composite source-over.

    With αs = top alpha (1 for RGB) · opacity and αb = base alpha (1 for RGB), following
    W3C Compositing Level 1 §5.1 and §9.1 in straight alpha:
    Cs' = (1 − αb)·Cs + αb·B(Cb, Cs); αo = αs + αb·(1 − αs);
    Co = (αs·Cs' + αb·(1 − αs)·Cb) / αo. For an RGB base this is (1 − αs)·Cb + αs·B(Cb, Cs).
    The result has base's channel count (an RGBA base gets αo).

    Args:
        base: the backdrop, Cb.
        top: the source, Cs; its batch may be 1 (one layer over every frame).
        mode: one of `BLEND_MODES`; `add` is Cb + Cs and `subtract` is Cb − Cs (unclamped).
        opacity: in [0, 1]; 0 gives base, 1 the full mode result.

    Shape:
        base: [B, 3|4, H, W], top: [B or 1, 3|4, H, W] -> [B, C_base, H, W]
    """
    _check_frames(base, "base")
    _check_frames(top, "top")
    if mode not in BLEND_MODES:
        raise UsageError(f"unknown blend mode {mode!r}; valid: {', '.join(BLEND_MODES)}")
    if not 0.0 <= opacity <= 1.0:
        raise UsageError(f"blend opacity must be in [0, 1], got {opacity}")
    if top.shape[-2:] != base.shape[-2:] or top.shape[0] not in (1, base.shape[0]):
        raise UsageError(
            f"blend layers must have the same size and batch (or a top batch of 1), "
            f"got base {tuple(base.shape)} and top {tuple(top.shape)}"
        )
    cb, ab = _split(base)
    cs, a_top = _split(top.to(device=base.device, dtype=base.dtype))
    mixed = _blend_function(cb, cs, mode)
    a_s = (a_top * opacity) if a_top is not None else torch.full_like(cb[:, :1], opacity)
    if ab is None:
        return cb + a_s * (mixed - cb)
    cs_prime = (1.0 - ab) * cs + ab * mixed
    a_o = a_s + ab * (1.0 - a_s)
    co = a_s * cs_prime + ab * (1.0 - a_s) * cb
    c = torch.where(a_o > 0, co / torch.where(a_o > 0, a_o, torch.ones_like(a_o)), torch.zeros_like(co))
    return torch.cat([c, a_o], dim=1)


# --------------------------------------------------------------------------- key and glow


def key(
    x: torch.Tensor,
    *,
    by: str = "luminance",
    low: float = 0.0,
    high: float = 1.0,
    softness: float = 0.05,
    hue: float | None = None,
    hue_width: float = 0.1,
    sat_min: float = 0.0,
) -> torch.Tensor:
    """Colour-range cut-out: RGBA whose alpha keeps the pixels inside a range.

    Alpha is 1 inside the range and falls to 0 over `softness` outside it (smoothstep
    edges; softness 0 = hard edges). An RGBA input's alpha is multiplied by the key.

    Args:
        by: "luminance" (range [low, high] on Rec.709 luminance) or "hsv": value (V) in
            [low, high], saturation >= sat_min, and if `hue` is given, hue within
            `hue_width` / 2 of `hue` around the colour wheel (both in [0, 1), wrapping:
            0.98 is 0.04 from 0.02).
        low, high: the range kept, low <= high.
        softness: width of the soft edge, >= 0.
        hue: hue centre in [0, 1) or None for any hue (by="hsv" only).
        hue_width: full width of the kept hue band, in [0, 1].
        sat_min: smallest saturation kept, in [0, 1].

    Shape:
        x: [B, 3|4, H, W] -> [B, 4, H, W]
    """
    _check_frames(x)
    if by not in KEY_BY:
        raise UsageError(f"unknown key mode {by!r}; valid: {', '.join(KEY_BY)}")
    if high < low:
        raise UsageError(f"key range needs low <= high, got low={low}, high={high}")
    if softness < 0:
        raise UsageError(f"key softness must be 0 or more, got {softness}")
    if not 0.0 <= hue_width <= 1.0:
        raise UsageError(f"key hue_width must be in [0, 1], got {hue_width}")
    rgb, alpha = _split(x)
    if by == "luminance":
        a = _window(luminance(x), low, high, softness)
    else:
        hsv = rgb_to_hsv(rgb)
        a = _window(hsv[:, 2:3], low, high, softness)
        a = a * _smoothstep(sat_min - softness, sat_min, hsv[:, 1:2])
        if hue is not None:
            dist = torch.remainder(hsv[:, 0:1] - hue, 1.0)
            dist = torch.minimum(dist, 1.0 - dist)
            a = a * _window(dist, -1.0, hue_width / 2.0, softness)
    if alpha is not None:
        a = a * alpha
    return torch.cat([rgb, a], dim=1)


def _reflect_index(n: int, pad: int, device: torch.device) -> torch.Tensor:
    """Indices of a reflect-padded axis (edge not repeated), for any pad, even pad >= n."""
    idx = torch.arange(-pad, n + pad, device=device)
    if n == 1:
        return torch.zeros_like(idx)
    period = 2 * (n - 1)
    m = torch.remainder(idx, period)
    return torch.where(m >= n, period - m, m)


def _gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur (kernel radius ceil(3 sigma), reflect padding), per channel."""
    if sigma <= 0:
        return x
    r = max(1, math.ceil(3.0 * sigma))
    t = torch.arange(-r, r + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    c = x.shape[1]
    h, w = x.shape[-2:]
    x = x.index_select(3, _reflect_index(w, r, x.device))
    x = F.conv2d(x, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    x = x.index_select(2, _reflect_index(h, r, x.device))
    return F.conv2d(x, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def glow(
    x: torch.Tensor, *, threshold: float = 0.8, radius: float = 8.0, intensity: float = 1.0
) -> torch.Tensor:
    """Bloom: blur the bright parts and add them back, x + intensity · blur(bright).

    The bright pass is soft: each pixel's colour scaled by max(L − threshold, 0) / L
    (L = luminance), so light fades in from the threshold instead of switching on.
    The blur is a separable Gaussian with sigma = radius / 2, truncated at 3 sigma, with
    reflect padding at the frame edges (a looping clip is periodic in time, not in space).
    Pixels farther than 1.5 · radius from any pixel above the threshold are unchanged.

    Args:
        threshold: luminance above which pixels glow.
        radius: blur radius in pixels, >= 0 (0 = no blur).
        intensity: gain of the glow added back, >= 0.

    Shape:
        x: [B, 3|4, H, W] -> same (alpha untouched)
    """
    _check_frames(x)
    if radius < 0:
        raise UsageError(f"glow radius must be 0 or more, got {radius}")
    if intensity < 0:
        raise UsageError(f"glow intensity must be 0 or more, got {intensity}")
    rgb, alpha = _split(x)
    lum = luminance(x)
    gain = (lum - threshold).clamp_min(0.0) / lum.clamp_min(_EPS)
    bright = rgb * torch.where(lum > threshold, gain, torch.zeros_like(gain))
    return _join(rgb + intensity * _gaussian_blur(bright, radius / 2.0), alpha)


# --------------------------------------------------------------------------- ramp


@dataclass(frozen=True)
class Ramp:
    """A colour ramp: stops at sorted positions in [0, 1], linear RGB between them.

    Two stops at the same position make a hard edge.
    """

    positions: tuple[float, ...]
    colours: tuple[tuple[float, float, float], ...]

    def __post_init__(self) -> None:
        if len(self.positions) < 2 or len(self.positions) != len(self.colours):
            raise UsageError(
                f"a ramp needs 2 or more stops with one colour each, "
                f"got {len(self.positions)} positions and {len(self.colours)} colours"
            )
        if any(not 0.0 <= p <= 1.0 for p in self.positions):
            raise UsageError(f"ramp positions must be in [0, 1], got {list(self.positions)}")
        if any(b < a for a, b in zip(self.positions, self.positions[1:], strict=False)):
            raise UsageError(f"ramp positions must be sorted ascending, got {list(self.positions)}")
        if any(len(c) != 3 for c in self.colours):
            raise UsageError("ramp colours must be [r, g, b] triples")

    @staticmethod
    def from_dict(d: Mapping[str, Any]) -> Ramp:
        """A ramp from a TOML table.

        Either `stops = [[0.0, [0, 0, 0]], [1.0, [1, 1, 1]]]` (position, colour pairs) or
        `positions = [0.0, 1.0]` with `colours = [[0, 0, 0], [1, 1, 1]]`.

        Raises:
            UsageError: neither form, malformed stops, fewer than 2 stops, positions
                unsorted or outside [0, 1].
        """
        try:
            if "stops" in d:
                positions = tuple(float(s[0]) for s in d["stops"])
                colours = tuple(tuple(float(v) for v in s[1]) for s in d["stops"])
                if any(len(s) != 2 for s in d["stops"]):
                    raise ValueError
            elif "positions" in d and "colours" in d:
                positions = tuple(float(p) for p in d["positions"])
                colours = tuple(tuple(float(v) for v in c) for c in d["colours"])
            else:
                raise UsageError(
                    "a ramp table needs `stops = [[pos, [r, g, b]], ...]` or `positions` and `colours`"
                )
        except (TypeError, ValueError, IndexError, KeyError):
            raise UsageError(
                "malformed ramp: stops are [position, [r, g, b]] with numbers, e.g. [0.5, [1, 0, 0]]"
            ) from None
        return Ramp(positions, colours)  # type: ignore[arg-type]


def ramp(
    x: torch.Tensor,
    ramp: Ramp,
    cycle: float = 1.0,
    offset: float = 0.0,
    low: float = 0.0,
    high: float = 1.0,
) -> torch.Tensor:
    """Gradient map: luminance through a colour ramp, repeated `cycle` times over [low, high].

    t = clamp((L − low) / (high − low), 0, 1) · cycle + offset, wrapped into the ramp's
    [0, 1] (a whole number of cycles ends on the ramp's last colour, so L = high with
    cycle 1 is the last stop), then RGB interpolated linearly between the stops around t;
    t before the first stop takes its colour, after the last stop the last colour.

    Args:
        ramp: the colour ramp.
        cycle: how many times the ramp repeats over [low, high], > 0.
        offset: shift along the ramp (1 = a whole ramp).
        low, high: the luminance range mapped, low < high.

    Shape:
        x: [B, 3|4, H, W] -> same (alpha kept)
    """
    _check_frames(x)
    if not high > low:
        raise UsageError(f"ramp range needs low < high, got low={low}, high={high}")
    if not cycle > 0:
        raise UsageError(f"ramp cycle must be more than 0, got {cycle}")
    _, alpha = _split(x)
    u = ((luminance(x) - low) / (high - low)).clamp(0.0, 1.0)
    t = _wrap01(u * cycle + offset)  # [B, 1, H, W]
    pos = torch.tensor(ramp.positions, dtype=x.dtype, device=x.device)
    col = torch.tensor(ramp.colours, dtype=x.dtype, device=x.device)  # [N, 3]
    flat = t.reshape(-1).contiguous()
    hi = torch.searchsorted(pos, flat, right=True).clamp(1, len(pos) - 1)
    lo = hi - 1
    span = pos[hi] - pos[lo]
    w = torch.where(span > 0, (flat - pos[lo]) / torch.where(span > 0, span, torch.ones_like(span)), 1.0)
    w = w.clamp(0.0, 1.0).unsqueeze(1)
    rgb = col[lo] + w * (col[hi] - col[lo])  # [B*H*W, 3]
    b, _, h, wd = t.shape
    rgb = rgb.view(b, h, wd, 3).permute(0, 3, 1, 2)
    return _join(rgb.contiguous(), alpha)


# --------------------------------------------------------------------------- pixelsort


def pixelsort(
    x: torch.Tensor,
    *,
    axis: str = "row",
    low: float = 0.25,
    high: float = 0.8,
    by: str = "luminance",
    reverse: bool = False,
) -> torch.Tensor:
    """Pixel sorting: sort the pixels inside luminance intervals along rows or columns.

    Pixels whose luminance is in [low, high] form intervals: the maximal runs of them along
    the axis. Each interval is sorted by luminance or hue (ascending, or descending with
    `reverse`); pixels outside every interval stay where they are, and whole pixels (all
    channels, alpha included) move together. Fully vectorised: each pixel gets a segment
    id (a cumsum that starts a new segment at every interval start and at every pixel
    outside), and two stable sorts (by value, then by segment id) order the pixels by
    (segment, value). Ties keep their order, so the result is deterministic.

    Args:
        axis: "row" (sort along width) or "column" (along height).
        low, high: the luminance range that forms intervals, low <= high.
        by: the sort key, "luminance" or "hue".
        reverse: sort descending.

    Shape:
        x: [B, 3|4, H, W] -> same
    """
    _check_frames(x)
    if axis not in SORT_AXES:
        raise UsageError(f"unknown pixelsort axis {axis!r}; valid: {', '.join(SORT_AXES)}")
    if by not in SORT_BY:
        raise UsageError(f"unknown pixelsort key {by!r}; valid: {', '.join(SORT_BY)}")
    if high < low:
        raise UsageError(f"pixelsort range needs low <= high, got low={low}, high={high}")
    if axis == "column":
        return pixelsort(x.transpose(2, 3), axis="row", low=low, high=high, by=by, reverse=reverse).transpose(
            2, 3
        )
    lum = luminance(x)[:, 0]  # [B, H, W]
    value = lum if by == "luminance" else rgb_to_hsv(x[:, :3])[:, 0]
    if reverse:
        value = -value
    inside = (lum >= low) & (lum <= high)
    before = F.pad(inside, (1, 0), value=False)[..., :-1]
    starts = ~inside | (inside & ~before)
    segment = torch.cumsum(starts.to(torch.int64), dim=-1)  # non-decreasing along the row
    order = torch.sort(value, dim=-1, stable=True).indices
    seg_sorted = torch.gather(segment, -1, order)
    order = torch.gather(order, -1, torch.sort(seg_sorted, dim=-1, stable=True).indices)
    index = order.unsqueeze(1).expand(-1, x.shape[1], -1, -1)
    return torch.gather(x, 3, index)


# --------------------------------------------------------------------------- grade


def grade(
    x: torch.Tensor,
    *,
    exposure: float = 0.0,
    gamma: float = 1.0,
    levels: tuple[float, float, float, float] = (0.0, 1.0, 0.0, 1.0),
) -> torch.Tensor:
    """Grade colour: exposure, then levels, then gamma (alpha untouched, nothing clamped above).

    y = x · 2^exposure; y = out_lo + (y − in_lo) / (in_hi − in_lo) · (out_hi − out_lo);
    then, unless gamma is 1, y = max(y, 0)^(1 / gamma) (gamma > 1 brightens midtones).
    The defaults are the identity.

    Args:
        exposure: in stops (+1 doubles).
        gamma: > 0.
        levels: (in_lo, in_hi, out_lo, out_hi), in_lo != in_hi.

    Shape:
        x: [B, 3|4, H, W] -> same
    """
    _check_frames(x)
    if not gamma > 0:
        raise UsageError(f"grade gamma must be more than 0, got {gamma}")
    if len(levels) != 4:
        raise UsageError(f"grade levels are (in_lo, in_hi, out_lo, out_hi), got {levels}")
    in_lo, in_hi, out_lo, out_hi = (float(v) for v in levels)
    if in_hi == in_lo:
        raise UsageError(f"grade levels need in_lo != in_hi, got {levels}")
    rgb, alpha = _split(x)
    y = rgb * (2.0**exposure)
    if (in_lo, in_hi, out_lo, out_hi) != (0.0, 1.0, 0.0, 1.0):
        y = out_lo + (y - in_lo) * ((out_hi - out_lo) / (in_hi - in_lo))
    if gamma != 1.0:
        y = y.clamp_min(0.0) ** (1.0 / gamma)
    return _join(y, alpha)
