"""The walk: seed specs, frame counts, exact keyframes, a seamless C2 loop, seed sequences."""

import numpy as np
import pytest
import torch

from irep3d.errors import UsageError
from irep3d.walk import (
    MAX_SEED,
    frame_count,
    interpolate_at,
    interpolate_ws,
    parse_psi,
    parse_seeds,
    parse_span,
    parse_translate,
    phases,
    seed_sequences,
    sweep,
    view_matrices,
)


@pytest.mark.parametrize(
    "spec,expected",
    [
        ("3,17,42", [3, 17, 42]),
        ("100-103", [100, 101, 102, 103]),
        ("1,5-7,9", [1, 5, 6, 7, 9]),
        (" 1 , 5 - 6 ,1 ", [1, 5, 6, 1]),
        ("7", [7]),
        ("4-4", [4]),
        (f"{MAX_SEED}", [MAX_SEED]),
        ("42,3", [42, 3]),
    ],
)
def test_parse_seeds(spec, expected):
    assert parse_seeds(spec) == expected


@pytest.mark.parametrize(
    "spec", ["", " ", "x", "3,,4", "3,", "-5", "1.5", "5-", "9-3", f"{MAX_SEED + 1}", "0-4294967295", "1;2"]
)
def test_parse_seeds_rejects(spec):
    with pytest.raises(UsageError, match="comma-separated seeds and ranges like 3,17,42 or 100-115"):
        parse_seeds(spec)


def test_frame_count():
    assert frame_count(5, 12, loop=True) == 60
    assert frame_count(5, 12, loop=False) == 49
    assert frame_count(1, 12, loop=False) == 1
    assert frame_count(1, 12, loop=True) == 12
    with pytest.raises(UsageError):
        frame_count(0, 12, loop=True)
    with pytest.raises(UsageError):
        frame_count(3, 0, loop=True)


def _keys(n, shape=(4, 8), seed=0):
    return torch.randn(n, *shape, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("loop", [True, False])
@pytest.mark.parametrize("n", [1, 2, 3, 5])
def test_keyframes_bitwise_exact(loop, n):
    keys = _keys(n) * 3.7 + 0.1
    k = 7
    walk = interpolate_ws(keys, k, loop)
    assert walk.shape == (frame_count(n, k, loop), *keys.shape[1:])
    assert walk.dtype == keys.dtype and walk.device == keys.device
    for i in range(n):
        if i * k < walk.shape[0]:
            assert torch.equal(walk[i * k], keys[i])


def _linear_walk(keys, k):
    """Piecewise-linear loop through the keyframes: the kinked walk a C2 spline avoids."""
    n = keys.shape[0]
    rows = []
    for f in range(n * k):
        i, r = divmod(f, k)
        u = r / k
        rows.append((1 - u) * keys[i] + u * keys[(i + 1) % n])
    return torch.stack(rows)


def _seam_and_kinks(walk, k):
    """Step-size jump at the seam, and per keyframe |accel| / mean |accel| of its neighbours."""
    w = walk.reshape(walk.shape[0], -1).double()
    steps = torch.roll(w, -1, dims=0) - w  # d[f] = w[f+1] - w[f], d[F-1] is the wrap step
    speed = steps.norm(dim=1)
    wrap = speed[-1]
    seam_jump = abs(wrap - (speed[-2] + speed[0]) / 2) / speed.mean()
    accel = (torch.roll(w, -1, 0) - 2 * w + torch.roll(w, 1, 0)).norm(dim=1)  # cyclic 2nd difference
    frames = w.shape[0]
    ratios = [
        float(accel[f] / ((accel[f - 1] + accel[(f + 1) % frames]) / 2 + 1e-12)) for f in range(0, frames, k)
    ]
    return float(seam_jump), ratios


def test_loop_seam_is_smooth_and_c2():
    keys = _keys(5, seed=1)
    k = 12
    walk = interpolate_ws(keys, k, loop=True)
    assert walk.shape[0] == 60
    seam_jump, ratios = _seam_and_kinks(walk, k)
    assert seam_jump < 0.1  # the wrap step is like its neighbours
    assert max(ratios) < 1.3 and min(ratios) > 0.7  # acceleration continuous at keyframes and seam

    # The same check must fail for a piecewise-linear walk (kinks at every keyframe).
    _, linear_ratios = _seam_and_kinks(_linear_walk(keys, k), k)
    assert min(linear_ratios) > 100


def test_velocity_continuous_at_keyframes():
    keys = _keys(5, seed=2)
    k = 50
    w = interpolate_ws(keys, k, loop=True).reshape(5 * k, -1).double()
    vel = (torch.roll(w, -1, 0) - w).norm(dim=1)
    # Relative change of speed between consecutive steps stays small everywhere, seam included.
    change = (vel - torch.roll(vel, 1, 0)).abs() / vel.mean()
    assert change.max() < 0.1


def test_periodic_spline_approximates_smooth_loop():
    # Keyframes on a circle: the spline must stay close to the circle (linear cuts corners).
    n, k = 8, 16
    angles = torch.arange(n, dtype=torch.float64) * 2 * np.pi / n
    keys = torch.stack([angles.cos(), angles.sin()], dim=1)
    walk = interpolate_ws(keys, k, loop=True)
    radius = walk.norm(dim=1)
    assert (radius - 1).abs().max() < 0.01
    assert (_linear_walk(keys, k).norm(dim=1) - 1).abs().max() > 0.05


def test_natural_spline_reproduces_lines_and_ends_on_keyframes():
    n, k = 4, 10
    base, slope = _keys(1, seed=3), _keys(1, seed=4)
    keys = base + torch.arange(n, dtype=torch.float32)[:, None, None] * slope
    walk = interpolate_ws(keys, k, loop=False)
    assert walk.shape[0] == 31
    assert torch.equal(walk[0], keys[0]) and torch.equal(walk[-1], keys[-1])
    t = torch.arange(walk.shape[0], dtype=torch.float32)[:, None, None] / k
    torch.testing.assert_close(walk, base + t * slope, atol=1e-5, rtol=0)


def test_two_seeds_loop():
    keys = _keys(2, seed=5)
    k = 8
    walk = interpolate_ws(keys, k, loop=True)
    assert walk.shape[0] == 16
    assert torch.equal(walk[0], keys[0]) and torch.equal(walk[8], keys[1])
    # Symmetric there and back: frame 8 + r mirrors frame 8 - r, and everything is finite.
    assert torch.isfinite(walk).all()
    torch.testing.assert_close(walk[8 + 3], walk[8 - 3])
    assert not torch.equal(walk[3], keys[0])


def test_one_seed_is_constant():
    keys = _keys(1)
    walk = interpolate_ws(keys, 6, loop=True)
    assert walk.shape[0] == 6
    assert all(torch.equal(row, keys[0]) for row in walk)
    assert interpolate_ws(keys, 6, loop=False).shape[0] == 1


@pytest.mark.parametrize("loop", [True, False])
def test_frames_subset_equals_full(loop):
    keys = _keys(4, seed=6)
    full = interpolate_ws(keys, 5, loop)
    subset = [7, 0, 3, full.shape[0] - 1, 5, 7]
    assert torch.equal(interpolate_ws(keys, 5, loop, frames=subset), full[subset])
    with pytest.raises(UsageError, match="out of range"):
        interpolate_ws(keys, 5, loop, frames=[full.shape[0]])


def test_dtype_preserved_and_between_frames_computed_in_float64():
    keys64 = _keys(3, seed=7).double()
    keys16 = keys64.half()
    walk16 = interpolate_ws(keys16, 4, loop=True)
    assert walk16.dtype == torch.float16
    expected = interpolate_ws(keys16.double(), 4, loop=True).half()
    assert torch.equal(walk16, expected)


def test_seed_sequences():
    seeds = parse_seeds("100-115")
    locked = seed_sequences(seeds, 3, "locked")
    assert locked == [seeds] * 3
    unique = seed_sequences(seeds, 3, "unique")
    assert unique[0] == list(range(116, 132))  # the range continues past the locked walk
    assert unique[1] == list(range(132, 148))
    assert unique[2] == list(range(148, 164))
    assert seed_sequences([MAX_SEED, 1], 2, "unique") == [[1, 3], [3, 5]]  # mod 2**32
    with pytest.raises(UsageError, match="locked, unique"):
        seed_sequences(seeds, 2, "random")
    with pytest.raises(UsageError):
        seed_sequences(seeds, 0, "locked")


@pytest.mark.parametrize("seeds", [[0], [7, 3, 7], ["w1", 4], list(range(16)), [MAX_SEED, 0, 5]])
def test_no_unique_sequence_is_the_locked_one_or_another(seeds):
    """A release with both modes walks locked and unique clips from one spec: no unique clip
    may walk the locked seeds (its clip01 would equal the locked clip01) or another's."""
    (locked,) = seed_sequences(seeds, 1, "locked")
    unique = seed_sequences(seeds, 40, "unique")
    walks = [tuple(locked), *map(tuple, unique)]
    assert len(set(walks)) == len(walks) == 41
    assert all(
        isinstance(s, str) == isinstance(k, str) for seq in unique for s, k in zip(seq, seeds, strict=True)
    )


def test_unique_sequences_need_a_seed_to_vary():
    """Keyframe-file rows stay put in every clip: rows alone would make every unique clip the
    locked one."""
    assert seed_sequences(["w0", "w1"], 2, "locked") == [["w0", "w1"]] * 2
    with pytest.raises(UsageError, match=r"keyframe-file rows .* add a seed such as 0, or use locked"):
        seed_sequences(["w0", "w1"], 2, "unique")


# --------------------------------------------------------------------------- animated controls


def seam_vs_other_steps(values) -> float:
    """How unusual the wrap-around step of a loop is: the change of step size there (step
    F-1 -> 0 against the average of its neighbours) over the largest such change anywhere
    else. Below 2 for a seamless loop (the seam is one of its ordinary places); a loop that
    jumps back gives a ratio in the hundreds."""
    w = torch.as_tensor(np.asarray(values, dtype=np.float64)).reshape(len(values), -1)
    speed = (torch.roll(w, -1, 0) - w).norm(dim=1)  # speed[f]: f -> f+1, speed[-1] is the wrap
    change = (speed - (torch.roll(speed, 1) + torch.roll(speed, -1)) / 2).abs()
    return float(change[-1] / (change[1:-2].max() + 1e-12 * speed.mean()))  # 0, -2: beside the wrap


def _ramp_psi(frames):
    """A ψ ramp start -> end that never comes back: the seam jumps (what sweep avoids)."""
    return 0.5 + 0.5 * np.asarray(frames) / frames[-1]


def test_controls_close_the_loop_like_any_other_step():
    total = 48
    phase = phases(range(total), total, loop=True)
    assert phase[0] == 0 and np.isclose(phase[-1] + 1 / total, 1)
    psi = sweep(0.5, 1.0, phase)
    assert psi[0] == 0.5 and np.isclose(psi[total // 2], 1.0)
    views = view_matrices(phase, (0.1, 0.05), turns=2)
    np.testing.assert_allclose(views[0], np.eye(3), atol=1e-12)
    mix = interpolate_at(_keys(3, seed=8), phase * 3, loop=True)
    for control in (psi, views, mix):
        assert seam_vs_other_steps(control) < 2
    # Counter-check: a ramp that does not come back fails the same seam test.
    assert seam_vs_other_steps(_ramp_psi(list(range(total)))) > 100


def test_open_walk_controls_end_where_they_start():
    phase = phases(range(9), 9, loop=False)
    assert phase[-1] == 1.0
    np.testing.assert_allclose(view_matrices(phase[[0, -1]], (0.3, 0.2), turns=1)[1], np.eye(3), atol=1e-12)
    assert sweep(0.4, 1.2, phase)[-1] == pytest.approx(0.4)


def test_view_matrices_pan_and_turn():
    quarter = view_matrices(np.array([0.25]), (0.2, 0.1), turns=0)[0]
    # At a quarter period the pan is at (x, y) = (0.2, 0.1): the point shown at the centre is -(0.2, 0.1).
    np.testing.assert_allclose(quarter @ [0.0, 0.0, 1.0], [-0.2, -0.1, 1.0], atol=1e-12)
    turn = view_matrices(np.array([0.25]), (0.0, 0.0), turns=1)[0]
    np.testing.assert_allclose(turn @ [1.0, 0.0, 1.0], [0.0, -1.0, 1.0], atol=1e-12)  # a quarter turn


def test_interpolate_at_whole_positions_is_the_walk():
    keys = _keys(4, seed=9)
    k = 5
    walk = interpolate_ws(keys, k, loop=True)
    at = interpolate_at(keys, np.arange(20) / k, loop=True)
    torch.testing.assert_close(at, walk, atol=1e-6, rtol=0)
    assert torch.equal(at[5], keys[1])
    open_walk = interpolate_ws(keys, k, loop=False)
    torch.testing.assert_close(
        interpolate_at(keys, np.arange(16) / k, loop=False), open_walk, atol=1e-6, rtol=0
    )


@pytest.mark.parametrize("text,expected", [("0.7", (0.7, None)), ("-1", (-1.0, None)), ("0.5:1.0", (0.5, 1.0)),
                                           ("2:0", (2.0, 0.0))])  # fmt: skip
def test_parse_psi(text, expected):
    assert parse_psi(text) == expected


@pytest.mark.parametrize("text", ["0.5:2.5", "-0.1:1", "a", "0.5:1:2", "nan", ""])
def test_parse_psi_rejects(text):
    with pytest.raises(UsageError, match="bad --psi"):
        parse_psi(text)


def test_parse_translate_and_span():
    assert parse_translate("0.1,-0.05") == (0.1, -0.05)
    assert parse_span("8-15") == (8, 15) and parse_span("8-") == (8, None) and parse_span("3") == (3, 3)
    for bad in ("0.1", "a,b", "1,2,3", "50,0"):
        with pytest.raises(UsageError, match="bad --translate"):
            parse_translate(bad)
    for bad in ("x", "9-3", "-3", "1-2-3"):
        with pytest.raises(UsageError, match="bad --mix-layers"):
            parse_span(bad)
