"""3D variants of a pack (`irep3d blender build PACK`, `render scenes.json`), with real bpy.

A real pack (`irep3d pack builtin:sg3t-256`, 2 clips of 6 frames at 84 px) is built into
2 presets x 2 clips for the module; other tests write tiny clips with `tests/clip_util.py`.
Every render is tiny (24-48 px wide, 1-4 samples).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from irep3d.blender import (
    SCENES_NAME,
    SceneJob,
    build_scenes,
    pack_scene_jobs,
    read_scenes,
    render_scenes,
)
from irep3d.cli import app
from irep3d.errors import UsageError
from tests.clip_util import make_clip
from tests.proc_util import run_cli

runner = CliRunner()
PRESETS = ("edge-point-light", "soft-overhead")
TINY = ("--samples", "1", "--resolution", "24x16")
GREEN = (0.0, 0.9, 0.0)


def run(*args: object):
    return runner.invoke(app, [str(a) for a in args])


def pixels(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0


def mtimes(folder: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in sorted(folder.iterdir())}


def small_pack(root: Path, clips: dict[str, dict]) -> Path:
    """A pack folder of tiny clips (`make_clip` keyword arguments by name) and its pack.json."""
    for name, kwargs in clips.items():
        make_clip(root / name, name=name, **{"frames": 4, "size": (24, 24), **kwargs})
    listed = [{"name": name, "path": name, "frames": kw.get("frames", 4)} for name, kw in clips.items()]
    (root / "pack.json").write_text(json.dumps({"format": "irep3d-pack", "version": 1, "clips": listed}))
    return root


@pytest.fixture(scope="module")
def pack(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("real") / "pack"
    result = run("pack", "builtin:sg3t-256", "--layers", "L5_84_64", "--clips-per-layer", "2",
                 "--seeds", "0-1", "--frames-per-seed", "3", "--out", out)  # fmt: skip
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="module")
def scenes(pack) -> Path:
    result = run("blender", "build", pack, "--preset", PRESETS[0], "--preset", PRESETS[1], *TINY)
    assert result.exit_code == 0, result.output
    assert "4 scenes built, 0 up to date" in result.output
    return pack / "scenes"


# --- build ------------------------------------------------------------------------------------


def test_a_pack_builds_one_blend_per_clip_and_preset(pack, scenes):
    clips = [c["name"] for c in json.loads((pack / "pack.json").read_text())["clips"]]
    assert clips == ["L5_84_64_clip01", "L5_84_64_clip02"]
    blends = [f"{clip}__{preset}.blend" for clip in clips for preset in PRESETS]
    assert sorted(p.name for p in scenes.iterdir()) == sorted([*blends, SCENES_NAME])  # no temps, no .blend1

    listed = json.loads((scenes / SCENES_NAME).read_text())
    assert listed["format"] == "irep3d-scenes"
    clip_json = json.loads((pack / clips[0] / "clip.json").read_text())
    rows = [
        (e["clip"], e["preset"], e["path"], e["frames"], e["fps"], e["clip_dir"]) for e in listed["scenes"]
    ]
    assert rows == [
        (clip, preset, f"{clip}__{preset}.blend", 6, clip_json["fps"], f"../{clip}")
        for clip in clips
        for preset in PRESETS
    ]
    assert all(e["colour_from"] is None for e in listed["scenes"])
    resolved = read_scenes(scenes / SCENES_NAME)
    assert [e["path"] for e in resolved] == [(scenes / b).resolve() for b in blends]
    assert resolved[0]["clip_dir"] == (pack / clips[0]).resolve()


def test_a_rebuild_leaves_up_to_date_scenes_untouched(tmp_path):
    pack = small_pack(tmp_path / "pack", {"a": {}, "b": {"path": "circle"}})
    jobs = pack_scene_jobs(pack, [",".join(PRESETS)], tmp_path / "scenes")
    jobs = [SceneJob(j.clip_dir, j.preset, j.blend, settings={"samples": 1}) for j in jobs]
    seen: list[tuple[int, int]] = []
    index = build_scenes(jobs, progress=lambda *a: seen.append(a))
    assert seen == [("build", n, 4) for n in range(5)]
    before = mtimes(index.parent)

    seen.clear()
    assert build_scenes(jobs, progress=lambda *a: seen.append(a)) == index
    assert seen == [("build", 0, 0)] and mtimes(index.parent) == before  # scenes.json included

    (index.parent / "b__soft-overhead.blend").unlink()  # a scene gone: only it is built again
    changed = [SceneJob(j.clip_dir, j.preset, j.blend, settings={"samples": 2}) if j.preset == PRESETS[0] else j
               for j in jobs]  # fmt: skip
    seen.clear()
    build_scenes(changed, progress=lambda *a: seen.append(a))
    assert seen[-1] == ("build", 3, 3)  # + the two edge-point-light scenes, whose settings changed
    after = mtimes(index.parent)
    assert after["a__soft-overhead.blend"] == before["a__soft-overhead.blend"]
    assert after["a__edge-point-light.blend"] != before["a__edge-point-light.blend"]
    assert [e["path"] for e in json.loads(index.read_text())["scenes"]] == [j.blend.name for j in jobs]


def test_the_scenes_and_the_pack_render_anywhere(pack, scenes, tmp_path):
    """The folder of scenes plus the pack, moved: every scene still finds its clip."""
    moved = tmp_path / "elsewhere" / "pack"
    shutil.move(str(pack), str(moved))
    try:
        result = run("blender", "render", moved / "scenes" / SCENES_NAME, "--frames", "3", *TINY,
                     "--out", tmp_path / "r")  # fmt: skip
    finally:
        shutil.move(str(moved), str(pack))
    assert result.exit_code == 0, result.output
    assert "4 frames rendered, 0 already there -> 4 scenes in" in result.output
    folders = sorted(p.name for p in (tmp_path / "r").iterdir())
    assert folders == sorted(p.stem for p in scenes.glob("*.blend"))
    for folder in folders:
        (frame,) = (tmp_path / "r" / folder).glob("frame_*")
        assert frame.name == "frame_00003.png" and pixels(frame).std() > 0.01  # the clip was read


def test_colour_from_another_clip_of_the_pack(tmp_path):
    pack = small_pack(tmp_path / "pack", {"blob": {}, "green": {"rgb": GREEN}})
    common = ("--preset", "activation-albedo", "--samples", "2", "--resolution", "32x24")
    assert run("blender", "build", pack / "blob", *common, "--out", tmp_path / "own.blend").exit_code == 0
    crossed = run("blender", "build", pack, *common, "--colour-from", "green", "--out", tmp_path / "scenes")
    assert crossed.exit_code == 0, crossed.output
    (entry, _) = json.loads((tmp_path / "scenes" / SCENES_NAME).read_text())["scenes"]
    assert (entry["clip"], entry["colour_from"], entry["colour_dir"]) == ("blob", "green", "../pack/green")

    blend = tmp_path / "scenes" / "blob__activation-albedo.blend"
    found = subprocess.run(
        [sys.executable, "-I", "-c", textwrap.dedent(f"""
            import bpy
            bpy.ops.wm.open_mainfile(filepath={str(blend)!r})
            nodes = bpy.data.materials["irep3d_displacement"].node_tree.nodes
            base = nodes["Principled BSDF"].inputs["Base Color"].links[0].from_node
            print("RESULT", base.name, base.image.filepath, nodes["irep3d frames"].image.filepath)
        """)],
        capture_output=True, text=True, cwd=tmp_path, timeout=120,
    )  # fmt: skip
    assert found.stdout.split("RESULT ", 1)[1].split() == [
        "irep3d", "colour", "frames", "//../pack/green/green_00001.exr", "//../pack/blob/blob_00001.exr",
    ]  # fmt: skip

    frames = render_scenes([tmp_path / "own.blend", blend], tmp_path / "r", frames=(2, 2))
    own, mixed = (pixels(files[0]).reshape(-1, 3).mean(axis=0) for files in frames.values())
    own, mixed = own / own.sum(), mixed / mixed.sum()  # chromaticity (AgX desaturates)
    assert own[1] < own[2]  # the blob's own colours: red blob on a blue ground
    assert mixed[1] > max(mixed[0], mixed[2]) + 0.08 and mixed[1] > own[1] + 0.08  # the green clip's


@pytest.mark.parametrize(
    ("other", "values"), [({"frames": 3}, "3 frames at 24 fps"), ({"fps": 30.0}, "4 frames at 30 fps")]
)
def test_a_colour_clip_of_another_length_or_fps_is_refused(tmp_path, other, values):
    pack = small_pack(tmp_path / "pack", {"blob": {}, "other": other})
    result = run_cli("blender", "build", pack / "blob", "--preset", PRESETS[0], "--colour-from", "other",
                     "--out", tmp_path / "scenes", cwd=tmp_path)  # fmt: skip
    assert result.returncode == 2, result.stdout + result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert f"colour clip other has {values} but height clip blob has 4 frames at 24 fps" in lines[0]
    assert not (tmp_path / "scenes").exists()  # refused before Blender started


def test_bad_sources_and_names_are_one_line(tmp_path):
    pack = small_pack(tmp_path / "pack", {"blob": {}})
    with pytest.raises(
        UsageError, match=r"--colour-from nope: not a clip of the pack \(blob\) or a clip folder"
    ):
        pack_scene_jobs(pack, [PRESETS[0]], tmp_path / "s", colour_from="nope")
    with pytest.raises(UsageError, match="neither a pack folder"):
        pack_scene_jobs(tmp_path, [PRESETS[0]], tmp_path / "s")
    with pytest.raises(UsageError, match="no preset given"):
        pack_scene_jobs(pack, [" , "], tmp_path / "s")
    jobs = pack_scene_jobs(pack, [PRESETS[0]], tmp_path / "s")
    with pytest.raises(UsageError, match="one folder"):
        build_scenes([*jobs, SceneJob(pack / "blob", PRESETS[1], tmp_path / "t" / "x.blend")])
    with pytest.raises(UsageError, match="unknown preset 'nope'"):
        build_scenes([SceneJob(pack / "blob", "nope", tmp_path / "s" / "x.blend")])
    assert not (tmp_path / "s").exists() and not (tmp_path / "t").exists()
    both = run_cli("blender", "render", tmp_path / "a.blend", tmp_path / "scenes.json", cwd=tmp_path)
    assert both.returncode == 2 and "give one scenes.json, or .blend files, not both" in both.stderr


# --- render -----------------------------------------------------------------------------------


def test_several_scenes_render_with_one_progress_and_resume(scenes, tmp_path):
    blends = sorted(scenes.glob("*.blend"))[:2]
    seen: list[tuple[int, int]] = []
    files = render_scenes(
        blends, tmp_path, (1, 2), samples=1, resolution=(24, 16), progress=lambda *a: seen.append(a)
    )
    assert seen == [("render", n, 4) for n in range(5)]  # one total over both scenes, known first
    assert {k: [f.relative_to(tmp_path) for f in v] for k, v in files.items()} == {
        b.resolve(): [Path(b.stem) / "frame_00001.png", Path(b.stem) / "frame_00002.png"] for b in blends
    }
    before = {b.stem: mtimes(tmp_path / b.stem) for b in blends}

    (tmp_path / blends[1].stem / "frame_00002.png").unlink()
    seen.clear()
    render_scenes(
        blends, tmp_path, (1, 2), samples=1, resolution=(24, 16), progress=lambda *a: seen.append(a)
    )
    assert seen == [("render", 0, 1), ("render", 1, 1)]  # only the missing frame
    assert mtimes(tmp_path / blends[0].stem) == before[blends[0].stem]

    shard = run("blender", "render", *blends, "--frames", "1-4", *TINY, "--out", tmp_path, "--shard", "1/2")
    assert shard.exit_code == 0, shard.output  # each scene's range sliced: frames 3-4 of each
    assert "4 frames rendered, 0 already there -> 2 scenes in" in shard.output
    for blend in blends:
        assert sorted(p.name for p in (tmp_path / blend.stem).iterdir()) == [
            *(f"frame_0000{n}.png" for n in (1, 2, 3, 4)),
            "render.json",
        ]


@pytest.mark.slow
def test_a_rendered_loop_stays_a_loop(tmp_path):
    """Frame N+1 after the last is frame 1: the wrap step looks like any other step.

    The same measure on a clip whose blob runs left to right (not a seamless loop) shows a
    wrap step far above the others: the check can fail.
    """
    frames = 8
    make_clip(tmp_path / "circle", name="circle", frames=frames, size=(32, 32), path="circle")
    make_clip(tmp_path / "line", name="line", frames=frames, size=(32, 32), path="line")
    jobs = [
        SceneJob(tmp_path / name, PRESETS[0], tmp_path / "scenes" / f"{name}.blend")
        for name in ("circle", "line")
    ]
    build_scenes(jobs)
    out = render_scenes(
        [j.blend for j in jobs], tmp_path / "r", (1, frames + 1), samples=4, resolution=(48, 32)
    )

    def seam(files: list[Path]) -> tuple[np.ndarray, float, float]:
        images = [pixels(f) for f in files]
        steps = np.array([np.abs(images[i + 1] - images[i]).mean() for i in range(frames - 1)])
        wrap = np.abs(images[0] - images[frames - 1]).mean()  # last -> first
        past_end = np.abs(images[frames] - images[0]).mean()  # frame N+1 vs frame 1
        return steps, float(wrap), float(past_end)

    steps, wrap, past_end = seam(out[jobs[0].blend.resolve()])
    assert steps.min() > 0.005, steps  # the relief moves every frame
    assert 0.5 * steps.min() <= wrap <= 1.5 * steps.max(), (wrap, steps)
    assert past_end < 0.1 * steps.min(), (past_end, steps)  # the sequence wraps: nothing else moved

    steps, wrap, _ = seam(out[jobs[1].blend.resolve()])
    assert wrap > 1.5 * steps.max(), (wrap, steps)  # not a loop: the seam shows
