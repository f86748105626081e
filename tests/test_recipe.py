"""Compositing recipes over real clip folders: results, chaining, seams, errors, resume, CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from irep3d import composite as ops
from irep3d.cli import app
from irep3d.clip import Clip
from irep3d.errors import OutputError, UsageError
from irep3d.exr_clip import read_exr, write_exr
from irep3d.recipe import load_recipe, recipe_from_dict, run_recipe

ROOT = Path(__file__).resolve().parents[1]


def make_clip(folder: Path, frames: int = 8, size: int = 16, phase: float = 0.0) -> Path:
    """A seamless loop: every pixel moves on a sine of period `frames`."""
    folder.mkdir(parents=True)
    yy, xx = np.mgrid[0:size, 0:size] / size
    for f in range(frames):
        t = 2 * math.pi * f / frames
        rgb = np.stack(
            [
                0.5 + 0.4 * np.sin(t + phase + 6 * xx),
                0.5 + 0.4 * np.cos(t + 4 * yy),
                0.5 + 0.3 * np.sin(t + xx + yy),
            ],
            axis=-1,
        )
        write_exr(Clip(folder).frame_path(f + 1), rgb)
    Clip(folder).write_manifest({"name": folder.name, "frames": frames, "fps": 24, "loop": True})
    return folder


def frames_of(folder: Path) -> np.ndarray:
    return np.stack([read_exr(p)[0].astype(np.float32) for p in sorted(folder.glob(f"{folder.name}_*.exr"))])


def recipe(tmp_path: Path, steps: list[dict], inputs: dict[str, Path], **extra) -> object:
    return recipe_from_dict(
        {"inputs": {k: str(v) for k, v in inputs.items()}, "steps": steps, **extra}, tmp_path
    )


def test_blend_recipe_matches_the_operation(tmp_path):
    a, b = make_clip(tmp_path / "a"), make_clip(tmp_path / "b", phase=1.0)
    r = recipe(
        tmp_path,
        [{"op": "blend", "inputs": ["a", "b"], "mode": "soft-light", "opacity": 0.7}],
        {"a": a, "b": b},
    )
    manifest = run_recipe(r, tmp_path / "mix")
    out = frames_of(tmp_path / "mix")
    assert out.shape == (8, 16, 16, 3) and manifest["frames"] == 8 and manifest["fps"] == 24
    expected = ops.blend(
        torch.from_numpy(frames_of(a)).permute(0, 3, 1, 2),
        torch.from_numpy(frames_of(b)).permute(0, 3, 1, 2),
        "soft-light",
        0.7,
    ).permute(0, 2, 3, 1)
    np.testing.assert_allclose(out, expected.numpy(), atol=2e-3)
    saved = json.loads((tmp_path / "mix" / "clip.json").read_text())
    assert saved["complete"] is True and saved["resolution"] == [16, 16]


def test_results_chain_and_loops_stay_seamless(tmp_path):
    a = make_clip(tmp_path / "a", frames=12)
    first = recipe(tmp_path, [{"op": "glow", "threshold": 0.6, "radius": 2.0}], {"a": a})
    run_recipe(first, tmp_path / "glowed")
    ramp = {"stops": [[0.0, [0, 0, 0]], [0.5, [1, 0.2, 0]], [1.0, [1, 1, 1]]]}
    second = recipe(
        tmp_path, [{"op": "ramp", "ramp": ramp, "cycle": 2, "turns": 1}], {"g": tmp_path / "glowed"}
    )
    run_recipe(second, tmp_path / "final")
    out = frames_of(tmp_path / "final")
    steps = np.abs(np.diff(out, axis=0)).mean(axis=(1, 2, 3))
    seam = np.abs(out[0] - out[-1]).mean()
    assert seam <= 1.5 * steps.max() and seam >= 0.5 * steps.min()  # the wrap is just another step


def test_turns_must_be_whole(tmp_path):
    a = make_clip(tmp_path / "a")
    with pytest.raises(UsageError, match="whole number"):
        recipe(
            tmp_path,
            [{"op": "ramp", "ramp": {"stops": [[0, [0, 0, 0]], [1, [1, 1, 1]]]}, "turns": 0.5}],
            {"a": a},
        )


def test_mismatched_inputs_say_which_and_offer_fit(tmp_path):
    a, b = make_clip(tmp_path / "a", frames=8), make_clip(tmp_path / "b", frames=6)
    r = recipe(tmp_path, [{"op": "blend", "inputs": ["a", "b"], "mode": "add"}], {"a": a, "b": b})
    with pytest.raises(UsageError, match=r"a has 8, b has 6.*--fit"):
        run_recipe(r, tmp_path / "o")
    assert not list((tmp_path / "o").glob("*.exr")) if (tmp_path / "o").exists() else True
    run_recipe(r, tmp_path / "o", fit=True)
    assert frames_of(tmp_path / "o").shape[0] == 8
    c = make_clip(tmp_path / "c", frames=8, size=24)
    r2 = recipe(tmp_path, [{"op": "blend", "inputs": ["a", "c"]}], {"a": a, "c": c})
    with pytest.raises(UsageError, match=r"a is 16x16, c is 24x24"):
        run_recipe(r2, tmp_path / "o2")
    run_recipe(r2, tmp_path / "o2", fit=True)
    assert frames_of(tmp_path / "o2").shape[1:3] == (24, 24)


@pytest.mark.parametrize(
    "step,needle",
    [
        ({"op": "warp"}, "valid ops: blend, upscale"),
        ({"op": "blend", "inputs": ["a", "a"], "mode": "lighten-ish"}, "valid: normal, add"),
        ({"op": "glow", "sparkle": 1}, "unknown parameter"),
        ({"op": "grade", "inputs": ["nope"]}, "unknown input 'nope'"),
        ({"op": "upscale", "size": "1920x0"}, "step 'step1': size '1920x0': use SIZE or WIDTHxHEIGHT"),
        ({"op": "upscale", "size": "64x32:crop"}, "unknown mode 'crop'"),
        ({"op": "upscale"}, "step 'step1': size '': use SIZE"),
    ],
)
def test_bad_recipes_are_one_clear_line(tmp_path, step, needle):
    a = make_clip(tmp_path / "a")
    with pytest.raises(UsageError, match=needle):
        recipe(tmp_path, [step], {"a": a})


def test_missing_frames_are_an_error(tmp_path):
    a = make_clip(tmp_path / "a")
    (a / "a_00004.exr").unlink()
    with pytest.raises(OutputError):
        run_recipe(recipe(tmp_path, [{"op": "grade", "exposure": 1.0}], {"a": a}), tmp_path / "o")


def test_rerun_resumes_missing_frames_only(tmp_path):
    a = make_clip(tmp_path / "a")
    r = recipe(tmp_path, [{"op": "grade", "exposure": 1.0}], {"a": a})
    run_recipe(r, tmp_path / "o")
    before = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "o").glob("*.exr")}
    (tmp_path / "o" / "o_00003.exr").unlink()
    calls = []
    run_recipe(r, tmp_path / "o", progress=lambda stage, done, total: calls.append(total))
    assert calls[-1] == 1
    after = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "o").glob("*.exr")}
    assert after.keys() == before.keys()
    assert all(after[n] == before[n] for n in before if n != "o_00003.exr")
    other = recipe(tmp_path, [{"op": "grade", "exposure": 2.0}], {"a": a})
    with pytest.raises(UsageError, match="other recipe steps or inputs"):
        run_recipe(other, tmp_path / "o")


def test_a_moved_folder_of_inputs_and_composite_resumes(tmp_path):
    """A release folder (its clips and its composites) moved elsewhere resumes its composites."""
    a = make_clip(tmp_path / "rel" / "maps" / "a")
    run_recipe(
        recipe(tmp_path, [{"op": "grade", "exposure": 1.0}], {"a": a}), tmp_path / "rel" / "comp" / "o"
    )
    (tmp_path / "rel").rename(tmp_path / "moved")
    moved = tmp_path / "moved" / "comp" / "o"
    before = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in moved.glob("*.exr")}
    (moved / "o_00002.exr").unlink()
    calls = []
    r = recipe(tmp_path, [{"op": "grade", "exposure": 1.0}], {"a": tmp_path / "moved" / "maps" / "a"})
    run_recipe(r, moved, progress=lambda stage, done, total: calls.append(total))
    assert calls[-1] == 1  # only the missing frame
    after = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in moved.glob("*.exr")}
    assert after.keys() == before.keys()
    assert all(after[n] == before[n] for n in before if n != "o_00002.exr")
    assert after["o_00002.exr"][0] == before["o_00002.exr"][0]  # the same bytes again


def test_a_composite_written_before_relative_inputs_resumes(tmp_path):
    """Composites fingerprinted their inputs by absolute path before: they still resume."""
    from irep3d.clip import Clip
    from irep3d.recipe import _identity, _open_inputs

    a = make_clip(tmp_path / "a")
    r = recipe(tmp_path, [{"op": "grade", "exposure": 1.0}], {"a": a})
    run_recipe(r, tmp_path / "o")
    old = _identity(r, _open_inputs(r), False, None)
    clip = Clip(tmp_path / "o")
    clip.write_manifest({**clip.read_manifest(), "recipe_fingerprint": old})
    (tmp_path / "o" / "o_00001.exr").unlink()
    calls = []
    run_recipe(r, tmp_path / "o", progress=lambda stage, done, total: calls.append(total))
    assert calls[-1] == 1 and clip.read_manifest()["recipe_fingerprint"] == old


def test_example_recipes_are_valid():
    for path in sorted((ROOT / "scenes" / "composite").glob("*.toml")):
        r = load_recipe(path)
        assert r.steps and r.output


def test_cli_recipe_and_quick_subcommand(tmp_path):
    a, b = make_clip(tmp_path / "a"), make_clip(tmp_path / "b", phase=2.0)
    runner = CliRunner()
    res = runner.invoke(
        app, ["composite", "blend", str(a), str(b), "--mode", "screen", "--out", str(tmp_path / "s")]
    )
    assert res.exit_code == 0, res.output
    assert frames_of(tmp_path / "s").shape == (8, 16, 16, 3)
    text = f'[inputs]\na = "{a}"\n[[steps]]\nop = "pixelsort"\naxis = "row"\n'
    (tmp_path / "r.toml").write_text(text)
    res = runner.invoke(app, ["composite", str(tmp_path / "r.toml"), "--out", str(tmp_path / "p")])
    assert res.exit_code == 0, res.output
    assert frames_of(tmp_path / "p").shape == (8, 16, 16, 3)
    res = runner.invoke(
        app, ["composite", "blend", str(a), str(b), "--mode", "nope", "--out", str(tmp_path / "x")]
    )
    assert res.exit_code == 2 and "valid: normal" in res.stderr


def test_upscale_to_any_width_and_height(tmp_path):
    """`composite upscale --size WxH[:mode]` and a recipe's `size` give W×H frames; a square
    size is still the plain bicubic resize."""
    a = make_clip(tmp_path / "a")
    runner = CliRunner()
    for spec, mode in (("40x20", "fit"), ("40x20:fill", "fill"), ("40x20:pad", "pad")):
        out = tmp_path / mode
        res = runner.invoke(app, ["composite", "upscale", str(a), "--size", spec, "--out", str(out)])
        assert res.exit_code == 0, res.output
        assert frames_of(out).shape == (8, 20, 40, 3)
        assert json.loads((out / "clip.json").read_text())["recipe"]["steps"][0]["size"] == spec
    padded = frames_of(tmp_path / "pad")
    assert np.all(padded[:, :, :10] == 0) and np.all(padded[:, :, 30:] == 0) and padded[:, :, 10:30].min() > 0
    filled = frames_of(tmp_path / "fill")
    assert filled.min() > 0 and not np.allclose(filled, frames_of(tmp_path / "fit"), atol=1e-2)
    res = runner.invoke(app, ["composite", "upscale", str(a), "--size", "32", "--out", str(tmp_path / "sq")])
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "sq" / "clip.json").read_text())["recipe"]["steps"][0]["size"] == 32
    r = recipe(tmp_path, [{"op": "grade", "exposure": 0.0}], {"a": a}, size="24x12:pad")
    run_recipe(r, tmp_path / "r")
    assert frames_of(tmp_path / "r").shape == (8, 12, 24, 3)
    res = runner.invoke(app, ["composite", "upscale", str(a), "--size", "10x", "--out", str(tmp_path / "x")])
    assert res.exit_code == 2 and len(res.stderr.strip().splitlines()) == 1 and "WIDTHxHEIGHT" in res.stderr
