"""Tests for irep3d.composite: blend formulas, key, glow, ramp, HSV, pixelsort, grade, loops."""

from __future__ import annotations

import math

import pytest
import torch

from irep3d.composite import (
    BLEND_MODES,
    LUMA,
    Ramp,
    blend,
    glow,
    grade,
    hsv_to_rgb,
    key,
    luminance,
    pixelsort,
    ramp,
    rgb_to_hsv,
)
from irep3d.errors import UsageError

# --------------------------------------------------------------------------- helpers


def solid(r: float, g: float, b: float, a: float | None = None, size: int = 2) -> torch.Tensor:
    values = [r, g, b] if a is None else [r, g, b, a]
    return torch.tensor(values, dtype=torch.float32).view(1, -1, 1, 1).expand(1, -1, size, size).clone()


def grey(v: float, size: int = 2) -> torch.Tensor:
    return solid(v, v, v, size=size)


# W3C Compositing and Blending Level 1, written out independently on Python scalars.
def w3c_multiply(cb: float, cs: float) -> float:
    return cb * cs


def w3c_screen(cb: float, cs: float) -> float:
    return cb + cs - cb * cs


def w3c_hard_light(cb: float, cs: float) -> float:
    return w3c_multiply(cb, 2 * cs) if cs <= 0.5 else w3c_screen(cb, 2 * cs - 1)


def w3c_overlay(cb: float, cs: float) -> float:
    return w3c_hard_light(cs, cb)


def w3c_soft_light(cb: float, cs: float) -> float:
    if cs <= 0.5:
        return cb - (1 - 2 * cs) * cb * (1 - cb)
    d = ((16 * cb - 12) * cb + 4) * cb if cb <= 0.25 else math.sqrt(cb)
    return cb + (2 * cs - 1) * (d - cb)


W3C = {
    "normal": lambda cb, cs: cs,
    "multiply": w3c_multiply,
    "screen": w3c_screen,
    "overlay": w3c_overlay,
    "hard-light": w3c_hard_light,
    "soft-light": w3c_soft_light,
    "difference": lambda cb, cs: abs(cb - cs),
    "add": lambda cb, cs: cb + cs,
    "subtract": lambda cb, cs: cb - cs,
}

# pairs covering each branch: cs <= 0.5 / > 0.5, cb <= 0.25 / > 0.25 (soft-light's D(Cb))
PAIRS = [(0.1, 0.3), (0.2, 0.8), (0.6, 0.2), (0.7, 0.9), (0.25, 0.5), (0.9, 0.6), (0.0, 1.0)]


# --------------------------------------------------------------------------- blend


@pytest.mark.parametrize("mode", BLEND_MODES)
def test_blend_matches_w3c_formulas(mode: str) -> None:
    assert set(W3C) == set(BLEND_MODES)
    for cb, cs in PAIRS:
        out = blend(grey(cb), grey(cs), mode)
        assert out.shape == (1, 3, 2, 2)
        assert out[0, 0, 0, 0].item() == pytest.approx(W3C[mode](cb, cs), abs=1e-6), (cb, cs)


def test_soft_light_uses_both_d_branches() -> None:
    # cb <= 0.25 uses the cubic, cb > 0.25 the square root; both differ from a naive formula
    cb_small, cb_large, cs = 0.1, 0.64, 0.9
    small = blend(grey(cb_small), grey(cs), "soft-light")[0, 0, 0, 0].item()
    large = blend(grey(cb_large), grey(cs), "soft-light")[0, 0, 0, 0].item()
    assert small == pytest.approx(0.1 + 0.8 * (((1.6 - 12) * 0.1 + 4) * 0.1 - 0.1), abs=1e-6)
    assert large == pytest.approx(0.64 + 0.8 * (0.8 - 0.64), abs=1e-6)


def test_hard_light_is_overlay_with_swapped_layers() -> None:
    g = torch.Generator().manual_seed(0)
    a = torch.rand(2, 3, 5, 5, generator=g)
    b = torch.rand(2, 3, 5, 5, generator=g)
    torch.testing.assert_close(blend(a, b, "hard-light"), blend(b, a, "overlay"))


def test_blend_overlay_family_clamps_inputs() -> None:
    out = blend(grey(1.7), grey(0.3), "overlay")
    assert out[0, 0, 0, 0].item() == pytest.approx(w3c_overlay(1.0, 0.3), abs=1e-6)
    # the unclamped modes keep HDR values
    assert blend(grey(1.7), grey(0.3), "add")[0, 0, 0, 0].item() == pytest.approx(2.0)


@pytest.mark.parametrize("mode", BLEND_MODES)
def test_blend_opacity(mode: str) -> None:
    g = torch.Generator().manual_seed(1)
    base = torch.rand(2, 3, 4, 4, generator=g)
    top = torch.rand(2, 3, 4, 4, generator=g)
    torch.testing.assert_close(blend(base, top, mode, opacity=0.0), base)
    full = blend(base, top, mode, opacity=1.0)
    half = blend(base, top, mode, opacity=0.5)
    torch.testing.assert_close(half, 0.5 * (base + full))


def test_blend_respects_top_alpha_and_keeps_base_channels() -> None:
    base = grey(0.2)
    top = solid(1.0, 1.0, 1.0, 0.25)
    out = blend(base, top, "normal")
    assert out.shape == (1, 3, 2, 2)
    assert out[0, 0, 0, 0].item() == pytest.approx(0.2 + 0.25 * 0.8)
    out = blend(base, top, "normal", opacity=0.5)
    assert out[0, 0, 0, 0].item() == pytest.approx(0.2 + 0.125 * 0.8)
    # transparent top: base unchanged, whatever the mode
    torch.testing.assert_close(blend(base, solid(0.9, 0.1, 0.5, 0.0), "multiply"), base)


def test_blend_rgba_base_source_over() -> None:
    base = solid(0.4, 0.4, 0.4, 0.5)
    top = solid(1.0, 0.0, 0.5, 0.5)
    out = blend(base, top, "multiply")
    assert out.shape == (1, 4, 2, 2)
    a_o = 0.5 + 0.5 * 0.5
    assert out[0, 3, 0, 0].item() == pytest.approx(a_o)
    for ch, cs in enumerate((1.0, 0.0, 0.5)):
        cs_prime = 0.5 * cs + 0.5 * (0.4 * cs)
        expected = (0.5 * cs_prime + 0.5 * 0.5 * 0.4) / a_o
        assert out[0, ch, 0, 0].item() == pytest.approx(expected, abs=1e-6)
    # opaque RGBA base behaves like the RGB base
    rgb = blend(grey(0.4), top, "screen")
    rgba = blend(solid(0.4, 0.4, 0.4, 1.0), top, "screen")
    torch.testing.assert_close(rgba[:, :3], rgb)
    assert torch.all(rgba[:, 3] == 1.0)


def test_blend_top_batch_of_one_broadcasts() -> None:
    base = torch.rand(3, 3, 4, 4)
    top = torch.rand(1, 3, 4, 4)
    out = blend(base, top, "screen")
    torch.testing.assert_close(out[1:2], blend(base[1:2], top, "screen"))


def test_blend_errors() -> None:
    with pytest.raises(UsageError, match="normal, add, multiply"):
        blend(grey(0.1), grey(0.2), "dodge")
    with pytest.raises(UsageError, match="opacity"):
        blend(grey(0.1), grey(0.2), "normal", opacity=1.5)
    with pytest.raises(UsageError, match="same size"):
        blend(grey(0.1, size=2), grey(0.2, size=3), "normal")
    with pytest.raises(ValueError, match="C = 3 or 4"):  # a caller's bug: clips are RGB(A)
        blend(torch.rand(1, 2, 4, 4), grey(0.2), "normal")


# --------------------------------------------------------------------------- colour


def test_luminance_weights() -> None:
    x = torch.eye(3).view(3, 3, 1, 1)
    assert luminance(x).flatten().tolist() == pytest.approx(list(LUMA))
    assert luminance(grey(0.5)).shape == (1, 1, 2, 2)


def test_hsv_round_trip_and_known_values() -> None:
    g = torch.Generator().manual_seed(2)
    x = torch.rand(2, 4, 8, 8, generator=g)
    torch.testing.assert_close(hsv_to_rgb(rgb_to_hsv(x)), x, atol=1e-5, rtol=0)
    hsv = rgb_to_hsv(torch.tensor([[1.0, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0]]).T.reshape(1, 3, 1, 4))
    assert hsv[0, 0, 0].tolist() == pytest.approx([0.0, 1 / 3, 2 / 3, 1 / 6])
    assert hsv[0, 1, 0].tolist() == pytest.approx([1.0] * 4)
    assert rgb_to_hsv(grey(0.3))[0, :, 0, 0].tolist() == pytest.approx([0.0, 0.0, 0.3])
    # hue wraps
    torch.testing.assert_close(hsv_to_rgb(solid(1.25, 0.5, 0.8)), hsv_to_rgb(solid(0.25, 0.5, 0.8)))


# --------------------------------------------------------------------------- key


def test_key_luminance_window() -> None:
    levels = torch.tensor([0.1, 0.29, 0.3, 0.5, 0.6, 0.62, 0.8])
    x = levels.view(1, 1, 1, -1).expand(1, 3, 1, -1).clone()
    out = key(x, low=0.3, high=0.6, softness=0.05)
    assert out.shape == (1, 4, 1, 7)
    torch.testing.assert_close(out[:, :3], x)
    alpha = out[0, 3, 0].tolist()
    assert alpha[0] == 0.0 and alpha[6] == 0.0  # outside
    assert alpha[2] == 1.0 and alpha[3] == 1.0 and alpha[4] == 1.0  # inside
    assert 0.0 < alpha[1] < 1.0 and 0.0 < alpha[5] < 1.0  # soft edges
    hard = key(x, low=0.3, high=0.6, softness=0.0)[0, 3, 0].tolist()
    assert hard == [0.0, 0.0, 1.0, 1.0, 1.0, 0.0, 0.0]


def test_key_hsv_hue_wraps_around() -> None:
    hsv = torch.stack([torch.tensor([0.98, 0.02, 0.5, 0.08]), torch.ones(4), torch.full((4,), 0.8)])
    colours = hsv_to_rgb(hsv.view(1, 3, 1, 4))
    alpha = key(colours, by="hsv", hue=0.02, hue_width=0.1, softness=0.02)[0, 3, 0].tolist()
    assert alpha[0] == pytest.approx(1.0)  # 0.98 is 0.04 from 0.02 across the wrap
    assert alpha[1] == pytest.approx(1.0)
    assert alpha[2] == 0.0
    assert 0.0 < alpha[3] < 1.0  # 0.06 from the centre: in the soft edge (0.05..0.07)
    # value range and saturation minimum
    assert key(colours, by="hsv", low=0.0, high=0.5, softness=0.0)[0, 3].max() == 0.0
    assert key(grey(0.5), by="hsv", sat_min=0.5, softness=0.0)[0, 3].max() == 0.0


def test_key_multiplies_existing_alpha_and_errors() -> None:
    out = key(solid(0.5, 0.5, 0.5, 0.4), low=0.0, high=1.0)
    assert out[0, 3, 0, 0].item() == pytest.approx(0.4)
    with pytest.raises(UsageError, match="luminance, hsv"):
        key(grey(0.5), by="rgb")
    with pytest.raises(UsageError, match="low <= high"):
        key(grey(0.5), low=0.8, high=0.2)


# --------------------------------------------------------------------------- glow


def test_glow_adds_energy_only_where_bright() -> None:
    x = torch.full((1, 3, 48, 48), 0.1)
    x[:, :, 4:8, 4:8] = 1.0
    out = glow(x, threshold=0.8, radius=4.0, intensity=1.0)
    assert out.shape == x.shape
    assert torch.all(out >= x - 1e-7)
    assert out.sum() > x.sum()
    assert out[0, 0, 9, 6] > x[0, 0, 9, 6]  # light spills next to the bright square
    # dark flat area far from the bright square: unchanged
    torch.testing.assert_close(out[:, :, 24:, 24:], x[:, :, 24:, 24:], rtol=0, atol=0)
    # nothing above the threshold: identity
    flat = torch.full((1, 3, 16, 16), 0.5)
    torch.testing.assert_close(glow(flat, threshold=0.8), flat, rtol=0, atol=0)


def test_glow_keeps_alpha_and_handles_large_radius() -> None:
    x = torch.rand(1, 4, 5, 6)
    out = glow(x, threshold=0.3, radius=20.0)  # kernel wider than the frame: still reflect
    torch.testing.assert_close(out[:, 3], x[:, 3])
    assert torch.isfinite(out).all()
    # a constant bright frame blurs to itself (reflect padding, normalised kernel)
    c = torch.ones(1, 3, 8, 8)
    torch.testing.assert_close(glow(c, threshold=0.5, radius=3.0, intensity=1.0), c * 1.5)
    with pytest.raises(UsageError, match="radius"):
        glow(x, radius=-1.0)


# --------------------------------------------------------------------------- ramp


BW_RED = Ramp.from_dict({"stops": [[0.0, [0, 0, 0]], [0.5, [1, 0, 0]], [1.0, [1, 1, 1]]]})


def test_ramp_interpolates_stops() -> None:
    x = torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0]).view(1, 1, 1, 5).expand(1, 3, 1, 5)
    out = ramp(x, BW_RED)
    expected = torch.tensor([[0, 0, 0], [0.5, 0, 0], [1, 0, 0], [1, 0.5, 0.5], [1, 1, 1]]).T
    torch.testing.assert_close(out[0, :, 0], expected)


def test_ramp_cycle_repeats() -> None:
    x = torch.tensor([0.25, 0.75, 0.125, 0.625]).view(1, 1, 1, 4).expand(1, 3, 1, 4)
    out = ramp(x, BW_RED, cycle=2.0)
    torch.testing.assert_close(out[0, :, 0, 0], out[0, :, 0, 1])
    torch.testing.assert_close(out[0, :, 0, 2], out[0, :, 0, 3])
    torch.testing.assert_close(out[0, :, 0, 0], torch.tensor([1.0, 0, 0]))
    # offset shifts along the ramp; alpha kept
    rgba = torch.cat([x, torch.full((1, 1, 1, 4), 0.3)], dim=1)
    shifted = ramp(rgba, BW_RED, offset=0.5)
    assert shifted.shape == (1, 4, 1, 4)
    torch.testing.assert_close(shifted[0, :3, 0, 2], torch.tensor([1.0, 0.25, 0.25]))
    assert torch.all(shifted[:, 3] == 0.3)


def test_ramp_from_dict_forms_and_errors() -> None:
    r = Ramp.from_dict({"positions": [0.0, 1.0], "colours": [[0, 0, 1], [1, 1, 0]]})
    assert r.positions == (0.0, 1.0) and r.colours == ((0.0, 0.0, 1.0), (1.0, 1.0, 0.0))
    for bad in (
        {"stops": [[0.0, [0, 0, 0]]]},
        {"stops": [[0.6, [0, 0, 0]], [0.4, [1, 1, 1]]]},
        {"stops": [[0.0, [0, 0, 0]], [1.5, [1, 1, 1]]]},
        {"stops": [[0.0, [0, 0]], [1.0, [1, 1, 1]]]},
        {"stops": [["a", [0, 0, 0]], [1.0, [1, 1, 1]]]},
        {"colours": [[0, 0, 0]]},
    ):
        with pytest.raises(UsageError):
            Ramp.from_dict(bad)
    with pytest.raises(UsageError, match="cycle"):
        ramp(grey(0.5), BW_RED, cycle=0.0)


# --------------------------------------------------------------------------- pixelsort


def row_frame(values: list[float]) -> torch.Tensor:
    v = torch.tensor(values).view(1, 1, 1, -1)
    return torch.cat([v, v * 0.5, torch.arange(len(values), dtype=torch.float32).view(1, 1, 1, -1)], dim=1)


def test_pixelsort_sorts_inside_intervals_only() -> None:
    lum_like = [0.1, 0.7, 0.5, 0.6, 0.05, 0.9, 0.4, 0.3, 0.95]
    x = torch.tensor(lum_like).view(1, 1, 1, -1).expand(1, 3, 1, -1).clone()
    out = pixelsort(x, low=0.25, high=0.8)
    assert out[0, 0, 0].tolist() == pytest.approx([0.1, 0.5, 0.6, 0.7, 0.05, 0.9, 0.3, 0.4, 0.95])
    desc = pixelsort(x, low=0.25, high=0.8, reverse=True)
    assert desc[0, 0, 0].tolist() == pytest.approx([0.1, 0.7, 0.6, 0.5, 0.05, 0.9, 0.4, 0.3, 0.95])


def test_pixelsort_is_a_permutation_per_row_and_deterministic() -> None:
    g = torch.Generator().manual_seed(3)
    x = torch.rand(2, 4, 16, 32, generator=g)
    out = pixelsort(x, low=0.3, high=0.7)
    # whole pixels move: the multiset of pixels of each row is unchanged
    for b in range(2):
        for r in range(16):
            a = sorted(map(tuple, x[b, :, r].T.tolist()))
            c = sorted(map(tuple, out[b, :, r].T.tolist()))
            assert a == c
    lum_in, lum_out = luminance(x)[:, 0], luminance(out)[:, 0]
    outside = (lum_in < 0.3) | (lum_in > 0.7)
    assert torch.equal(lum_out[outside], lum_in[outside])
    # inside each interval the luminance is non-decreasing
    inside = ~outside
    step_ok = (lum_out[..., 1:] >= lum_out[..., :-1]) | ~(inside[..., 1:] & inside[..., :-1])
    assert step_ok.all()
    assert torch.equal(out, pixelsort(x, low=0.3, high=0.7))
    # ties keep their order (stable): equal-luminance pixels are not shuffled
    ties = row_frame([0.5, 0.4, 0.5, 0.4, 0.5, 0.5])  # channel 2 numbers the pixels
    ties[:, 2] = ties[:, 0]
    ties = torch.cat([ties, torch.arange(6.0).view(1, 1, 1, 6)], dim=1)
    order = pixelsort(ties, low=0.0, high=1.0)[0, 3, 0].tolist()
    assert order == [1.0, 3.0, 0.0, 2.0, 4.0, 5.0]


def test_pixelsort_columns_and_hue() -> None:
    g = torch.Generator().manual_seed(4)
    x = torch.rand(1, 3, 12, 7, generator=g)
    cols = pixelsort(x, axis="column", low=0.2, high=0.9)
    rows_of_t = pixelsort(x.transpose(2, 3), axis="row", low=0.2, high=0.9).transpose(2, 3)
    torch.testing.assert_close(cols, rows_of_t)
    assert not torch.equal(cols, pixelsort(x, axis="row", low=0.2, high=0.9))
    by_hue = pixelsort(x, by="hue", low=0.0, high=10.0)  # whole rows are one interval
    hue = rgb_to_hsv(by_hue)[:, 0]
    assert (hue[..., 1:] >= hue[..., :-1]).all()
    with pytest.raises(UsageError, match="row, column"):
        pixelsort(x, axis="diagonal")
    with pytest.raises(UsageError, match="luminance, hue"):
        pixelsort(x, by="value")


# --------------------------------------------------------------------------- grade


def test_grade_exposure_levels_gamma() -> None:
    x = torch.rand(2, 4, 3, 3)
    torch.testing.assert_close(grade(x), x, rtol=0, atol=0)
    doubled = grade(x, exposure=1.0)
    torch.testing.assert_close(doubled[:, :3], 2 * x[:, :3])
    torch.testing.assert_close(doubled[:, 3], x[:, 3])
    lv = grade(grey(0.5), levels=(0.25, 0.75, 0.1, 0.3))
    assert lv[0, 0, 0, 0].item() == pytest.approx(0.2)
    gm = grade(grey(0.25), gamma=2.0)
    assert gm[0, 0, 0, 0].item() == pytest.approx(0.5)
    assert grade(grey(-0.5), gamma=2.0)[0, 0, 0, 0].item() == 0.0
    with pytest.raises(UsageError, match="gamma"):
        grade(x, gamma=0.0)
    with pytest.raises(UsageError, match="in_lo != in_hi"):
        grade(x, levels=(0.5, 0.5, 0.0, 1.0))


# --------------------------------------------------------------------------- loops and batches

FRAMES = 24
LOOP = Ramp.from_dict({"stops": [[0.0, [0, 0, 0.2]], [0.5, [1, 0.3, 0]], [1.0, [1, 1, 0.8]]]})

OPS = {
    "blend": lambda x: blend(x, x.flip(-1), "soft-light", opacity=0.7),
    "blend-rgba": lambda x: blend(x, torch.cat([x.flip(-2), x[:, :1]], dim=1), "overlay"),
    "key-lum": lambda x: key(x, low=0.3, high=0.7, softness=0.1),
    "key-hsv": lambda x: key(x, by="hsv", hue=0.1, hue_width=0.3, softness=0.1),
    "glow": lambda x: glow(x, threshold=0.6, radius=2.0, intensity=0.8),
    "ramp": lambda x: ramp(x, LOOP, cycle=3.0),
    "pixelsort": lambda x: pixelsort(x, low=0.3, high=0.8),
    "pixelsort-col": lambda x: pixelsort(x, axis="column", low=0.2, high=0.7, by="hue"),
    "grade": lambda x: grade(x, exposure=0.5, gamma=1.8, levels=(0.1, 0.9, 0.0, 1.0)),
}


def looping_clip(frames: int = FRAMES, size: int = 16) -> torch.Tensor:
    """A clip whose frames are a smooth periodic function of time: frame F is frame 0 again."""
    t = torch.arange(frames, dtype=torch.float32).view(-1, 1, 1, 1) * (2 * math.pi / frames)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    phase = torch.stack([3 * xx + yy, 2 * yy - xx, xx * yy * 4]).unsqueeze(0) * 2 * math.pi
    return 0.5 + 0.45 * torch.sin(t + phase)


@pytest.mark.parametrize("name", sorted(OPS))
def test_frame_local_ops_keep_a_loop_seamless(name: str) -> None:
    clip = looping_clip()
    out = OPS[name](clip)
    steps = (out[1:] - out[:-1]).abs().mean(dim=(1, 2, 3))
    wrap = (out[0] - out[-1]).abs().mean().item()
    assert steps.max() > 0
    assert wrap <= 1.25 * steps.max().item() + 1e-6, (wrap, steps.tolist())
    assert wrap >= 0.5 * steps.min().item() - 1e-6, (wrap, steps.tolist())
    # and the wrap step is exactly the step the op would make from frame F-1 to the next frame
    nxt = OPS[name](torch.cat([clip[-1:], clip[:1]]))
    torch.testing.assert_close(nxt[1], out[0])


@pytest.mark.parametrize("name", sorted(OPS))
def test_batch_equals_per_frame(name: str) -> None:
    clip = looping_clip(frames=4, size=12)
    whole = OPS[name](clip)
    per_frame = torch.cat([OPS[name](clip[i : i + 1]) for i in range(clip.shape[0])])
    torch.testing.assert_close(whole, per_frame)
