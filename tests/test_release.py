"""`irep3d release`: one TOML makes a whole pack; errors before work; dry runs; resume."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import imageio_ffmpeg
import pytest
from PIL import Image
from typer.testing import CliRunner

from irep3d.cli import app
from irep3d.errors import UsageError
from irep3d.generator import load_generator
from irep3d.release import append_clip, load_release, plan_release
from irep3d.release.estimate import count_release

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ROOT / "scenes" / "composite"
runner = CliRunner()

SMALL = f"""
description = "test release"
model = "builtin:sg3t-256"

[walk]
seeds = "0-1"
frames_per_seed = 3
fps = 12.0

[pack]
layers = ["L3_52_64", "L5_84_64"]
clips_per_layer = 1
modes = ["locked", "unique"]
size = 64

[[composites]]
name = "hl"
recipe = "{RECIPES / "hardlight-pair.toml"}"
size = 64
inputs = {{ base = "locked/L3_*", top = "locked/L5_*" }}

[[scenes]]
clips = "locked/L5_*"
colour_from = "comp/hl_01"
presets = ["edge-point-light"]
samples = 1
resolution = [48, 28]

[[deliveries]]
codecs = ["h264", "hap"]
loops = ["locked/*", "comp/*", "scene/*"]

[[deliveries]]
codecs = ["h264"]
loops = ["unique/*"]
"""


def write(tmp_path: Path, text: str = SMALL, name: str = "rel.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def files(folder: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under `folder`: its bytes and mtime."""
    return {
        str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def ffmpeg_frames(path: Path) -> int:
    """Frames in a video, counted by the ffmpeg binary (independent of PyAV)."""
    run = subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-nostdin", "-i", str(path), "-map", "0:v", "-c", "copy",
         "-f", "null", "-"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return int(re.findall(r"frame=\s*(\d+)", run.stderr)[-1])


# --------------------------------------------------------------------------- bad files


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            ("[walk]", "[walk]\nspeed = 2"),
            "[walk]: unknown key 'speed'; valid: audio, audio_gain, audio_psi, audio_speed, class, cutoff",
        ),
        (
            ('layers = ["L3_52_64", "L5_84_64"]', 'layers = ["L3_52_64", "L99_1_1"]'),
            "unknown layer 'L99_1_1'",
        ),
        (('modes = ["locked", "unique"]', 'modes = ["locked", "shuffled"]'), "unknown mode 'shuffled'"),
        (
            ('codecs = ["h264", "hap"]', 'codecs = ["h264", "mpeg2"]'),
            "unknown codec 'mpeg2'; valid: h264, prores, hap",
        ),
        (
            ('loops = ["unique/*"]', 'loops = ["unique/L9_*"]'),
            "'unique/L9_*' matches no clip; the clips are: locked/",
        ),
        (
            ('top = "locked/L5_*"', 'top = "locked/*"'),
            "pairing 'zip' needs as many clips for every input (base: 1, top: 2)",
        ),
        (
            (
                f'recipe = "{RECIPES / "hardlight-pair.toml"}"\nsize = 64',
                'steps = [{id = "m", op = "blend", inputs = ["base", "top"], mode = "add"}]',
            ),
            "its clips differ in size (locked/L3_52_64_clip01 52x52, locked/L5_84_64_clip01 84x84)",
        ),
        (("clips_per_layer = 1", "clips_per_layer = 30"), "not enough for 30 clips"),
        (('seeds = "0-1"', 'seeds = "1-x"'), "[walk].seeds"),
        (("description", "descrption"), "unknown key 'descrption'"),
        (("fps = 12.0", 'fps = 12.0\npsi = "0.5:3"'), "rel.toml [walk].psi: bad psi '0.5:3': a ψ sweep runs"),
        (
            ("samples = 1", 'samples = 1\nformat = "video"'),
            "[[scenes]] #1.format: 'video' does not fit a release: its scenes render frames, which "
            "[[deliveries]] encode into loops; use png or exr",
        ),
        (
            ("samples = 1", 'samples = 1\nformat = "tiff"'),
            "[[scenes]] #1.format: unknown format 'tiff'; valid: png, exr",
        ),
        (
            ("samples = 1", 'samples = 1\nstrength = "high"'),
            "[[scenes]] #1.strength: 'high' is invalid: expected a number",
        ),
        (
            ("samples = 1", "samples = 1\nlight_position = 2.0"),
            "[[scenes]] #1.light_position: 2.0 is invalid: expected a number in 0..1",
        ),
        (
            ("resolution = [48, 28]", "resolution = [48]"),
            "[[scenes]] #1.resolution: [48] is invalid: expected [width, height] in pixels, each side in 4..65536",
        ),
        (
            ("samples = 1", "samples = 1\nstrenght = 0.3"),
            "[[scenes]] #1: unknown key 'strenght'; valid: clips",
        ),
        (
            (f'recipe = "{RECIPES / "hardlight-pair.toml"}"', 'recipe = "nowhere.toml"'),
            ".recipe: 'nowhere.toml' is neither a file relative to this release file (",
        ),
        (("[walk]", "[walk\n"), "is not valid TOML"),
    ],
)
def test_a_bad_release_file_is_one_line_before_any_work(tmp_path, change, expected):
    text = SMALL.replace(*change, 1)
    if "differ in size" in expected:
        text = text.replace("size = 64\n", "", 1)  # no upscale: the layers keep their sizes
    assert text != SMALL
    out = tmp_path / "out"
    result = runner.invoke(app, ["release", str(write(tmp_path, text)), "--out", str(out)])
    assert result.exit_code == 2, result.output
    assert expected in result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) <= 3
    assert not out.exists()  # nothing started


def test_an_unknown_preset_names_the_key_and_the_presets(tmp_path):
    text = SMALL + '\n[[scenes]]\nclips = "locked/*"\npresets = ["edge-point-lite"]\n'
    result = runner.invoke(app, ["release", str(write(tmp_path, text)), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert "[[scenes]] #2.presets" in result.output and "edge-point-light" in result.output


@pytest.mark.parametrize(
    ("table", "line", "expected"),
    [
        ("[walk]", "frames_per_seed = 0", "[walk].frames_per_seed: must be at least 1, not 0"),
        ("[walk]", 'psi = "0.5:2.5"', "[walk].psi: bad psi '0.5:2.5': a ψ sweep runs within [0, 2]"),
        ("[walk]", "fps = 0.0", "[walk].fps: must be positive, not 0.0"),
        ("[walk]", 'mix_layers = "3-"', "[walk].mix_layers: needs mix_seeds (the second walk those layers"),
        ("[pack]", 'size = "0x5"', "[pack].size: bad size '0x5': use SIZE or WIDTHxHEIGHT"),
        (
            "[pack]",
            'norm = "loud"',
            "[pack].norm: unknown value 'loud'; use one of: none, global, fixed, frame",
        ),
        ("[pack]", "batch = 0", "[pack].batch: must be at least 1, not 0"),
        ("[pack]", 'compression = "lzma"', "[pack].compression: unknown value 'lzma'; use one of: none, rle"),
    ],
)
def test_a_bad_option_names_its_key_in_its_table_not_the_flag(tmp_path, table, line, expected):
    """A release user writes `frames_per_seed` in [walk], not `--frames-per-seed`: the error
    says the table and key (the CLI's own message still names the flag)."""
    text = "\n".join(x for x in SMALL.splitlines() if x.split(" = ")[0] != line.split(" = ")[0])
    path = write(tmp_path, text.replace(table, f"{table}\n{line}", 1))
    with pytest.raises(UsageError) as caught:
        load_release(path)
    assert str(caught.value).startswith(f"rel.toml {expected}")
    assert "--" not in str(caught.value)


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("cutoff = 99", "[walk].cutoff: must be from 1 to 16 (this network's number of ws), not 99"),
        ("class = 1", "[walk].class: needs a conditional network; this one has no classes"),
        (
            'mix_seeds = "5,6"\nmix_layers = "3-40"',
            "[walk].mix_layers: mix_layers 3-40 is out of range: this network has ws 0-15",
        ),
    ],
)
def test_an_option_the_network_refuses_names_its_key(tmp_path, line, expected):
    """Checked against the network (plan_release), still said of the release file's key."""
    path = write(tmp_path, SMALL.replace("[walk]", f"[walk]\n{line}", 1))
    net = load_generator("builtin:sg3t-256", "cpu")
    with pytest.raises(UsageError) as caught:
        plan_release(load_release(path), tmp_path / "out", net)
    assert str(caught.value).startswith(f"rel.toml {expected}"), str(caught.value)
    assert "--" not in str(caught.value)


def test_a_copied_release_file_finds_the_shipped_recipes_by_name(tmp_path):
    """demo.toml copied anywhere, alone: `recipe = "hardlight-pair"` names a shipped recipe
    (a path relative to the shipped file, `../composite/...`, found nothing there)."""
    copy = Path(shutil.copy(ROOT / "scenes" / "release" / "demo.toml", tmp_path / "demo.toml"))
    release = load_release(copy)
    (composite,) = release.composites
    assert composite.base == RECIPES.resolve()
    plan = plan_release(release, tmp_path / "out", load_generator(release.model, "cpu"))
    assert [name for name in plan.clips if name.startswith("comp/")] == [
        "comp/hardlight_01",
        "comp/hardlight_02",
    ]


def test_a_recipe_file_next_to_the_release_wins_over_a_shipped_name(tmp_path):
    mine = (RECIPES / "hardlight-pair.toml").read_text().replace('"hard-light"', '"add"')
    (tmp_path / "hardlight-pair.toml").write_text(mine, encoding="utf-8")
    text = SMALL.replace(f'"{RECIPES / "hardlight-pair.toml"}"', '"hardlight-pair.toml"', 1)
    (composite,) = load_release(write(tmp_path, text)).composites
    assert composite.base == tmp_path.resolve() and composite.recipe["steps"][0]["mode"] == "add"
    (composite,) = load_release(
        write(tmp_path, text.replace('"hardlight-pair.toml"', '"hardlight-pair"'))
    ).composites
    assert composite.base == RECIPES.resolve() and composite.recipe["steps"][0]["mode"] == "hard-light"


def test_an_unknown_recipe_lists_the_shipped_recipes(tmp_path):
    text = SMALL.replace(f'"{RECIPES / "hardlight-pair.toml"}"', '"hardlite"', 1)
    with pytest.raises(UsageError) as caught:
        load_release(write(tmp_path, text))
    message = str(caught.value)
    assert message.startswith("rel.toml [[composites]] #1.recipe: 'hardlite' is neither a file relative")
    assert message.endswith(
        "shipped recipes: difference-pixelsort, hardlight-pair, key-glow, softlight-stack"
    )


def test_a_release_in_both_modes_walks_no_clip_twice(tmp_path):
    """Locked clips of a layer share a walk and differ in channels; a unique clip that walked
    the locked seeds would get the locked clip01's channels too: the same loop twice."""
    release = load_release(write(tmp_path, SMALL.replace("clips_per_layer = 1", "clips_per_layer = 3")))
    plan = plan_release(release, tmp_path / "out", load_generator(release.model, "cpu"))
    locked = {(job.layer, tuple(job.seeds)) for job in plan.jobs["locked"]}
    unique = [(job.layer, tuple(job.seeds)) for job in plan.jobs["unique"]]
    assert len(locked) == 2 and len(unique) == len(set(unique)) == 6
    assert not locked & set(unique)


# --------------------------------------------------------------------------- plans and dry runs


def test_plan_names_every_clip_composite_and_loop(tmp_path):
    release = load_release(write(tmp_path))
    plan = plan_release(release, tmp_path / "out", load_generator(release.model, "cpu"))
    assert list(plan.clips) == [
        "locked/L3_52_64_clip01",
        "locked/L5_84_64_clip01",
        "unique/L3_52_64_clip01",
        "unique/L5_84_64_clip01",
        "comp/hl_01",
    ]
    assert plan.clips["comp/hl_01"].source == ("locked/L3_52_64_clip01", "locked/L5_84_64_clip01")
    assert [(loop.name, loop.codec) for loop in plan.loops] == [
        ("locked/L3_52_64_clip01", "h264"),
        ("locked/L3_52_64_clip01", "hap"),
        ("locked/L5_84_64_clip01", "h264"),
        ("locked/L5_84_64_clip01", "hap"),
        ("comp/hl_01", "h264"),
        ("comp/hl_01", "hap"),
        ("scene/locked-L5_84_64_clip01__edge-point-light__colour-comp-hl_01", "h264"),
        ("scene/locked-L5_84_64_clip01__edge-point-light__colour-comp-hl_01", "hap"),
        ("unique/L3_52_64_clip01", "h264"),
        ("unique/L5_84_64_clip01", "h264"),
    ]
    # locked: one walk for both clips; unique: a walk a clip, past the locked seeds 0-1.
    assert [j.seeds for j in plan.jobs["locked"]] == [[0, 1], [0, 1]]
    assert [j.seeds for j in plan.jobs["unique"]] == [[2, 3], [4, 5]]
    counts = count_release(plan, batch=4)
    assert (counts.clips, counts.walks) == (4, 3)
    assert counts.network_frames == 3 * (6 + 2)  # 6 frames + 2 keyframes to choose channels, a walk
    assert counts.exr_files == 5 * 6 and counts.loops == 10 and counts.cycles_frames == 6
    assert counts.render_pixel_samples == 6 * 48 * 28 * 1


def test_a_scene_format_of_the_file_reaches_its_scene_jobs(tmp_path):
    """`format` as `blender build --format`: an EXR scene renders frame_NNNNN.exr, which the
    release encodes like PNG renders; no format keeps the preset's."""
    release = load_release(write(tmp_path, SMALL.replace("samples = 1", 'samples = 1\nformat = "exr"', 1)))
    plan = plan_release(release, tmp_path / "out", load_generator(release.model, "cpu"))
    (scene,) = plan.scenes
    assert scene.job.settings == {"samples": 1, "resolution": (48, 28), "output_format": "EXR"}
    counts = count_release(plan, batch=4)
    assert counts.render_exr_pixels == counts.render_pixels == 6 * 48 * 28  # sized as EXR on disk
    (plain,) = load_release(write(tmp_path, name="plain.toml")).scenes
    assert "output_format" not in plain.settings


def test_every_scene_setting_of_the_file_reaches_its_scene_jobs(tmp_path):
    """A [[scenes]] table takes every scene setting under its name (`blender build`'s flag
    without the dashes), checked as the CLI checks it, and its scene jobs get them."""
    from irep3d.presets import describe_settings

    lines = 'strength = 0.4\nmidlevel = 0.3\nheight_source = "g"\ndetail = 2\nlight_position = 0.1\n'
    lines += 'light_height = 0.5\nformat = "EXR"\nsamples = 1'
    release = load_release(write(tmp_path, SMALL.replace("samples = 1", lines, 1)))
    (variant,) = release.scenes
    assert variant.colour_from == ("comp/hl_01",)
    assert variant.settings == {
        "displacement_strength": 0.4,
        "midlevel": 0.3,
        "height_source": "G",
        "subdivision_detail": 2.0,
        "light_position": 0.1,
        "light_height": 0.5,
        "output_format": "EXR",
        "samples": 1,
        "resolution": (48, 28),
    }

    # Every scene setting, as its name = the default preset's value (TOML, as JSON writes it).
    defaults = [d for d in describe_settings() if d["type"] != "clip"]
    lines = "\n".join(f"{d['key']} = {json.dumps(d['default'])}" for d in defaults)
    text = SMALL.replace("samples = 1\nresolution = [48, 28]", lines, 1)
    (variant,) = load_release(write(tmp_path, text, name="all.toml")).scenes
    assert variant.settings == {
        d["name"]: tuple(d["default"]) if isinstance(d["default"], list) else d["default"] for d in defaults
    }


def test_walk_controls_of_the_file_reach_every_clip(tmp_path):
    """The walk's animated controls (issue 16) are release keys too, recorded per clip."""
    text = SMALL.replace("fps = 12.0", 'fps = 12.0\npsi = "0.6:1.0"\nrotate = 1\ntranslate = [0.1, 0.05]')
    release = load_release(write(tmp_path, text))
    options = release.options
    assert (options.psi, options.psi_to, options.rotate, options.translate) == (0.6, 1.0, 1, (0.1, 0.05))
    sg2_text = (
        text.replace("sg3t-256", "sg2-256").replace("L3_52_64", "b32.conv1").replace("L5_84_64", "b64.conv1")
    )
    sg2_text = sg2_text.replace("locked/L3_*", "locked/b32*").replace("locked/L5_*", "locked/b64*")
    with pytest.raises(UsageError, match="StyleGAN3"):  # StyleGAN2 has no input transform
        plan_release(load_release(write(tmp_path, sg2_text)), tmp_path / "o",
                     load_generator("builtin:sg2-256", "cpu"))  # fmt: skip


def test_internal_rep_plan_is_the_seed_pack(tmp_path):
    """The shipped 1024 config: 96 loops of 900 frames, on NVIDIA's released layer names."""
    release = load_release(ROOT / "scenes" / "release" / "internal-rep.toml")
    plan = plan_release(release, tmp_path / "x", load_generator("released:sg3t-1024", "cpu"))
    counts = count_release(plan, batch=1)
    assert counts.clips == 96 and plan.frames == 900
    assert counts.walks == 1 + 48
    assert counts.network_frames == 49 * 901
    assert {c.resolution for c in plan.clips.values()} == {(2048, 2048)}
    assert counts.cycles_frames == (48 + 8) * 900
    assert counts.loops == 2 * (96 + counts.composites + counts.scenes)


@pytest.mark.slow
def test_dry_run_prints_the_plan_and_writes_nothing(tmp_path):
    out = tmp_path / "out"
    result = runner.invoke(app, ["release", str(write(tmp_path)), "--out", str(out), "--dry-run"])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert re.search(r"network frames \(forward passes\) │ 24 │", text)
    assert re.search(r"encoded loops │ 10 │", text)
    assert re.search(r"Cycles frames │ 6 │", text)
    assert "Cycles (edge-point-light): 160x90 and 320x180 at 2 and 16 samples" in text
    assert "network: one forward pass capturing L3_52_64, L5_84_64" in text
    assert "encode hap: 3 drifting" in text
    assert not out.exists()


# --------------------------------------------------------------------------- making a release


@pytest.mark.slow
def test_release_makes_every_loop_and_a_rerun_touches_nothing(tmp_path):
    out = tmp_path / "out"
    result = runner.invoke(app, ["release", str(write(tmp_path)), "--out", str(out)])
    assert result.exit_code == 0, result.output
    data = json.loads((out / "release.json").read_text())
    assert data["format"] == "irep3d-release"
    loops = data["loops"]
    assert len(loops) == 10
    for loop in loops:
        path = out / loop["path"]
        assert path.parent == out / "loops"
        assert loop["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
        assert loop["frames"] == ffmpeg_frames(path) == 6
        size = (48, 28) if loop["kind"] == "scene" else (64, 64)
        assert (loop["width"], loop["height"], loop["fps"]) == (*size, 12.0)
    kinds = {loop["name"]: (loop["kind"], loop["source"]) for loop in loops}
    scene = "scene/locked-L5_84_64_clip01__edge-point-light__colour-comp-hl_01"
    assert kinds[scene] == ("scene", ["locked/L5_84_64_clip01", "comp/hl_01"])
    assert len(list((out / "renders").glob("*/frame_*.png"))) == 6
    (made_by,) = [
        json.loads(p.read_text()) for p in (out / "renders").glob("*/render.json")
    ]  # a render folder
    assert made_by["blend"] == f"../../scenes/{scene.removeprefix('scene/')}.blend"
    assert (made_by["fps"], made_by["resolution"], made_by["samples"]) == (12.0, [48, 28], 1)
    assert kinds["comp/hl_01"] == ("composite", ["locked/L3_52_64_clip01", "locked/L5_84_64_clip01"])
    assert kinds["locked/L3_52_64_clip01"] == ("maps", [])
    maps_loops = [loop["sha256"] for loop in loops if loop["kind"] == "maps" and loop["codec"] == "h264"]
    assert len(set(maps_loops)) == len(maps_loops) == 4  # no loop shipped twice (locked and unique clip01)
    assert json.loads((out / "maps" / "locked" / "pack.json").read_text())["seeds_mode"] == "locked"
    sheet = Image.open(out / "contact.png")
    assert sheet.size == (3 * 192 + 2 * 2, 24 + 2 * (192 + 18) + 2)  # 6 loops: 3 x 2 thumbnails
    before = files(out)
    again = runner.invoke(app, ["release", str(write(tmp_path)), "--out", str(out)])
    assert again.exit_code == 0, again.output
    assert files(out) == before  # same bytes, same mtimes: nothing redone
    # The release folder moved elsewhere resumes too: no frame redone, every output the same.
    moved = tmp_path / "moved"
    out.rename(moved)
    again = runner.invoke(app, ["release", str(write(tmp_path)), "--out", str(moved)])
    assert again.exit_code == 0, again.output
    after = files(moved)
    assert after.keys() == before.keys()
    changed = {k for k in before if after[k][0] != before[k][0]}
    assert changed == {"composites/hl_01/clip.json", "loops/.irep3d-release-state.json"}  # inputs' new paths
    assert all(after[k][1] == before[k][1] for k in before if k.endswith((".exr", ".png")))


@pytest.mark.slow
def test_an_interrupted_release_resumes_to_the_same_bytes(tmp_path):
    """Ctrl-C in the middle of the packs, run again: byte for byte an uninterrupted run
    (EXR frames, renders, loops, manifests, release.json, contact sheet)."""
    toml = write(tmp_path)
    out = tmp_path / "out"
    done = runner.invoke(app, ["release", str(toml), "--out", str(out)])
    assert done.exit_code == 0, done.output
    reference = {k: v[0] for k, v in files(out).items()}
    shutil.rmtree(out)
    proc = subprocess.Popen(
        [sys.executable, "-m", "irep3d", "release", str(toml), "--out", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while not list(out.glob("maps/unique/*/*.exr")) and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=60)
    assert not (out / "release.json").exists()  # it really stopped part-way
    resumed = runner.invoke(app, ["release", str(toml), "--out", str(out)])
    assert resumed.exit_code == 0, resumed.output
    resumed_files = {k: v[0] for k, v in files(out).items()}
    assert resumed_files.keys() == reference.keys()
    # Every file equal, the .blend aside: Blender writes memory addresses into it, so two
    # saves of one scene never match; what it renders does (the frames and loops here).
    assert {k: v for k, v in resumed_files.items() if not k.endswith(".blend")} == {
        k: v for k, v in reference.items() if not k.endswith(".blend")
    }
    assert any(k.startswith("renders/") for k in reference)


@pytest.mark.slow
def test_an_audio_driven_release_runs_the_track_and_delivers_it(tmp_path):
    """[walk].audio makes every clip as long as the track, and its loops carry the track."""
    import av
    import numpy as np
    import soundfile

    rate = 22050
    track = np.zeros(rate, dtype=np.float32)  # one second, a click at 0.5 s
    track[rate // 2 : rate // 2 + 200] = 0.8
    soundfile.write(tmp_path / "beat.wav", track, rate)
    text = """
model = "builtin:sg3t-256"
[walk]
seeds = "0-1"
fps = 12.0
audio = "beat.wav"
audio_speed = 4.0
[pack]
layers = ["L3_52_64"]
clips_per_layer = 1
[[deliveries]]
codecs = ["h264"]
"""
    out = tmp_path / "out"
    result = runner.invoke(app, ["release", str(write(tmp_path, text)), "--out", str(out)])
    assert result.exit_code == 0, result.output
    (loop,) = json.loads((out / "release.json").read_text())["loops"]
    assert loop["frames"] == 12  # 1 s at 12 fps, not seeds x frames_per_seed
    clip = json.loads((out / "maps" / "locked" / "L3_52_64_clip01" / "clip.json").read_text())
    assert clip["loop"] is False and clip["audio_speed"] == 4.0
    with av.open(str(out / loop["path"])) as container:
        assert len(container.streams.audio) == 1


# --------------------------------------------------------------------------- sizes no codec delivers


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (  # [pack].size: every pack clip 16384x16384, past FFmpeg's frame limit for all codecs
            ("size = 64", "size = 16384"),
            "[[deliveries]] #1.codecs: loop locked/L3_52_64_clip01: h264 cannot encode 16384x16384 frames",
        ),
        (  # a composite's size
            ("size = 64\ninputs", 'size = "16384x16200"\ninputs'),
            "[[deliveries]] #1.codecs: loop comp/hl_01: h264 cannot encode 16384x16200 frames: FFmpeg takes "
            "(width + 128) x (height + 128) < 2^28, at most 16254x16254",
        ),
        (  # a scene's render resolution (HAP pads 18 to 20)
            ("resolution = [48, 28]", "resolution = [65530, 18]"),
            "[[deliveries]] #1.codecs: loop scene/locked-L5_84_64_clip01__edge-point-light__colour-comp-hl_01: "
            "h264 cannot encode 65530x18 frames: at most 16384 px a side",
        ),
        (  # the padded size counts: h264 takes 16254x16254, HAP pads it to 16256x16256
            ("resolution = [48, 28]", "resolution = [16254, 16253]"),
            "[[deliveries]] #1.codecs: loop scene/locked-L5_84_64_clip01__edge-point-light__colour-comp-hl_01: "
            "hap cannot encode 16254x16253 (padded to 16256x16256) frames",
        ),
    ],
)
@pytest.mark.parametrize("via", ["plan", "dry run"])
def test_a_size_no_codec_delivers_is_refused_before_any_work(tmp_path, change, expected, via):
    """Each loop's frame size (pack clip, composite, scene render) against each of its codecs'
    limits (irep3d.encode.check_size), in the plan that a release and its dry run both make
    before any work (checked on the plan itself, so that a regression cannot start a
    16384-pixel release here)."""
    text = SMALL.replace(*change, 1)
    assert text != SMALL
    out = tmp_path / "out"
    if via == "plan":
        release = load_release(write(tmp_path, text))
        with pytest.raises(UsageError) as error:
            plan_release(release, out, load_generator(release.model, "cpu"))
        message = str(error.value)
    else:
        result = runner.invoke(app, ["release", str(write(tmp_path, text)), "--out", str(out), "--dry-run"])
        assert result.exit_code == 2, result.output
        assert "Traceback" not in result.output and len(result.output.strip().splitlines()) <= 3
        message = " ".join(result.output.split())
    assert expected in message, message
    assert not out.exists()  # nothing started


# --------------------------------------------------------------------------- explicit clips: [[clips]]

CLIPS = """
model = "builtin:sg3t-256"

[walk]
seeds = "0-1"
frames_per_seed = 3
fps = 12.0

[[clips]]
name = "red"
layer = "L3_52_64"
channels = [1, 2, 3]
size = 64

[[clips]]
name = "blue"
layer = "L3_52_64"
channels = "4,5,6"
size = 64

[[clips]]
name = "sweep"
layer = "L5_84_64"
seeds = [7, 8, 9]
psi = "0.5:1.0"
fps = 24
"""


def clip_files(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` by relative path: its bytes."""
    return {k: v[0] for k, v in files(folder).items()}


@pytest.mark.slow
def test_a_release_clip_is_byte_for_byte_the_maps_clip(tmp_path):
    """Each [[clips]] folder is what `irep3d maps` writes with the same layer, channels,
    seeds and options (the file's [walk]/[pack] values, the table's over them): every
    file, clip.json included, clips that share forward passes included."""
    text = """
model = "builtin:sg3t-256"
[walk]
seeds = "0-1"
frames_per_seed = 3
fps = 12.0
[pack]
layers = ["L3_52_64"]
clips_per_layer = 1
size = 64
compression = "piz"
[[clips]]
name = "red"
layer = "L3_52_64"
channels = [1, 2, 3]
[[clips]]
name = "blue"
layer = "L3_52_64"
channels = [4, 5, 6]
[[clips]]
name = "grey.x"
layer = "L3_52_64"
channels = 9
norm = "frame"
translate = [0.1, 0.05]
rotate = 1
[[clips]]
name = "sweep"
layer = "L5_84_64"
channels = "auto"
seeds = "7,8,9"
frames_per_seed = 2
psi = "0.5:1.0"
fps = 24
size = "96x64:fill"
"""
    toml = write(tmp_path, text)
    release = load_release(toml)
    plan = plan_release(release, tmp_path / "out", load_generator(release.model, "cpu"))
    # red and blue (one layer, walk and options, channels given) share their forward passes
    assert [[job.name for job in r.jobs] for r in plan.clip_renders] == [
        ["red", "blue"],
        ["grey.x"],
        ["sweep"],
    ]
    result = runner.invoke(app, ["release", str(toml), "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output

    common = ["--frames-per-seed", "3", "--fps", "12", "--size", "64", "--compression", "piz"]
    commands = {
        "red": ["--layer", "L3_52_64", "--channels", "1,2,3", "--seeds", "0-1", *common],
        "blue": ["--layer", "L3_52_64", "--channels", "4,5,6", "--seeds", "0,1", *common],
        "grey.x": ["--layer", "L3_52_64", "--channels", "9", "--seeds", "0-1", *common,
                   "--norm", "frame", "--translate", "0.1,0.05", "--rotate", "1"],
        "sweep": ["--layer", "L5_84_64", "--channels", "auto", "--seeds", "7,8,9", "--frames-per-seed", "2",
                  "--psi", "0.5:1.0", "--fps", "24", "--size", "96x64:fill", "--compression", "piz"],
    }  # fmt: skip
    cli = tmp_path / "cli"
    for name, args in commands.items():
        made = runner.invoke(app, ["maps", "builtin:sg3t-256", *args, "--out", str(cli), "--name", name])
        assert made.exit_code == 0, made.output
        mine = clip_files(tmp_path / "out" / "maps" / "clips" / name)
        theirs = clip_files(cli / name)
        assert "clip.json" in mine and len(mine) == len(theirs) > 1
        assert mine == theirs, name
    sweep = json.loads((cli / "sweep" / "clip.json").read_text())
    assert (sweep["fps"], sweep["frames"], sweep["resolution"]) == (24.0, 6, [96, 64])


def test_a_release_of_explicit_clips_only(tmp_path):
    """No [pack]: the [[clips]] alone, each with its own length and rate, named clips/<name>."""
    text = CLIPS + '\n[[deliveries]]\ncodecs = ["h264"]\nloops = ["clips/*"]\n'
    release = load_release(write(tmp_path, text))
    assert (release.layers, release.modes) == ((), ())
    assert [(c.name, c.channels, c.seeds) for c in release.clips] == [
        ("red", (1, 2, 3), [0, 1]),
        ("blue", (4, 5, 6), [0, 1]),
        ("sweep", None, [7, 8, 9]),
    ]
    plan = plan_release(release, tmp_path / "out", load_generator(release.model, "cpu"))
    assert plan.jobs == {}
    assert {name: (c.kind, c.folder, c.frames, c.fps, c.resolution) for name, c in plan.clips.items()} == {
        "clips/red": ("clip", tmp_path / "out" / "maps" / "clips" / "red", 6, 12.0, (64, 64)),
        "clips/blue": ("clip", tmp_path / "out" / "maps" / "clips" / "blue", 6, 12.0, (64, 64)),
        "clips/sweep": ("clip", tmp_path / "out" / "maps" / "clips" / "sweep", 9, 24.0, (84, 84)),
    }
    assert [(loop.path.name, loop.frames, loop.fps) for loop in plan.loops] == [
        ("clips-red.h264.mp4", 6, 12.0),
        ("clips-blue.h264.mp4", 6, 12.0),
        ("clips-sweep.h264.mp4", 9, 24.0),  # encoded at its own rate
    ]
    counts = count_release(plan, batch=4)
    # red and blue: one walk of 6 frames; sweep: 9 frames + its 3 keyframes for `auto`
    assert (counts.clips, counts.walks, counts.network_frames) == (3, 2, 6 + 9 + 3)
    assert counts.exr_files == 6 + 6 + 9 and counts.loops == 3


def test_explicit_clips_feed_composites_scenes_and_deliveries(tmp_path):
    """`clips/<name>` is a clip name like any other: composite inputs, scene clips and
    colour clips, delivery patterns."""
    text = (
        CLIPS
        + f"""
[[composites]]
name = "rb"
recipe = "{RECIPES / "hardlight-pair.toml"}"
inputs = {{ base = "clips/red", top = "clips/blue" }}

[[scenes]]
clips = "clips/red"
colour_from = "comp/rb_01"
presets = ["edge-point-light"]

[[deliveries]]
codecs = ["h264"]
loops = ["clips/s*", "comp/*", "scene/*"]
"""
    )
    release = load_release(write(tmp_path, text))
    plan = plan_release(release, tmp_path / "out", load_generator(release.model, "cpu"))
    assert plan.clips["comp/rb_01"].source == ("clips/red", "clips/blue")
    assert (plan.clips["comp/rb_01"].frames, plan.clips["comp/rb_01"].fps) == (6, 12.0)
    (scene,) = plan.scenes
    assert scene.name == "scene/clips-red__edge-point-light__colour-comp-rb_01"
    assert scene.job.clip_dir == tmp_path / "out" / "maps" / "clips" / "red"
    assert [(loop.name, loop.kind, loop.fps) for loop in plan.loops] == [
        ("clips/sweep", "clip", 24.0),
        ("comp/rb_01", "composite", 12.0),
        ("scene/clips-red__edge-point-light__colour-comp-rb_01", "scene", 12.0),
    ]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            ('name = "blue"', 'name = "blue"\ncolour = 3'),
            "rel.toml [[clips]] #2: unknown key 'colour'; valid: ",
        ),
        (('name = "blue"', 'name = "blue"\nlayers = ["L3_52_64"]'), "[[clips]] #2: unknown key 'layers'"),
        (
            ("channels = [1, 2, 3]", "channels = [1, 2]"),
            "rel.toml [[clips]] #1.channels: bad channels [1, 2]: 2 ",
        ),
        (
            ("channels = [1, 2, 3]", 'channels = "red"'),
            "rel.toml [[clips]] #1.channels: bad channels 'red': use ",
        ),
        (
            ("channels = [1, 2, 3]", "channels = [1, 2, 64]"),
            "rel.toml [[clips]] #1.channels: channel 64 is out of range: layer L3_52_64 has 64 channels (0-63)",
        ),
        (
            ('name = "blue"', 'name = "red"'),
            "rel.toml [[clips]] #2.name: 'red' is the name of [[clips]] #1 too",
        ),
        (
            ('name = "blue"', 'name = "../blue"'),
            "rel.toml [[clips]] #2.name: '../blue' is not a clip name: use",
        ),
        (('name = "blue"', 'name = ".."'), "rel.toml [[clips]] #2.name: '..' is not a clip name"),
        (
            ('layer = "L5_84_64"', 'layer = "L5_84_46"'),
            "rel.toml [[clips]] #3.layer: unknown layer 'L5_84_46'; this network has: input, L0_36_64,",
        ),
        (('name = "blue"\n', ""), "rel.toml [[clips]] #2.name: None is not a clip name"),
        (('psi = "0.5:1.0"', 'psi = "0.5:3"'), "rel.toml [[clips]] #3.psi: bad psi '0.5:3': a ψ sweep runs"),
        (("fps = 24", "fps = 0"), "rel.toml [[clips]] #3.fps: must be positive, not 0"),
        (("seeds = [7, 8, 9]", 'seeds = "7-x"'), "rel.toml [[clips]] #3.seeds: "),
        (("fps = 24", "cutoff = 99"), "rel.toml [[clips]] #3.cutoff: must be from 1 to 16"),
        (
            (
                'layer = "L3_52_64"\nchannels = [1, 2, 3]\nsize = 64',
                'layer = "L3_52_64"\nchannels = [1, 2, 3]',
            ),
            "rel.toml [[composites]] rb: its clips differ in size (clips/red 52x52, clips/blue 64x64)",
        ),
        (
            ('inputs = { base = "clips/red"', 'inputs = { base = "clips/sweep"'),
            "rel.toml [[composites]] rb: its clips differ in length or frame rate (clips/sweep 9 frames at 24 "
            "fps, clips/blue 6 frames at 12 fps)",
        ),
        (
            ('colour_from = "clips/blue"', 'colour_from = "clips/sweep"'),
            "rel.toml [[scenes]] #1.colour_from: colour clip clips/sweep has 9 frames at 24 fps, height clip "
            "clips/red 6 at 12; give a colour clip of the same length and rate",
        ),
    ],
)
def test_a_bad_clip_table_is_one_line_before_any_work(tmp_path, change, expected):
    text = (
        CLIPS
        + f"""
[[composites]]
name = "rb"
recipe = "{RECIPES / "hardlight-pair.toml"}"
inputs = {{ base = "clips/red", top = "clips/blue" }}

[[scenes]]
clips = "clips/red"
colour_from = "clips/blue"
presets = ["edge-point-light"]
"""
    )
    changed = text.replace(*change, 1)
    assert changed != text
    out = tmp_path / "out"
    result = runner.invoke(app, ["release", str(write(tmp_path, changed)), "--out", str(out)])
    assert result.exit_code == 2, result.output
    message = " ".join(result.output.split())
    assert expected in message, message
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) <= 3
    assert not out.exists()  # nothing started


def test_a_release_needs_a_pack_or_clips(tmp_path):
    text = 'model = "builtin:sg3t-256"\n[walk]\nseeds = "0-1"\n'
    with pytest.raises(UsageError, match=r"^rel.toml: makes no clip: give \[pack\] with layers"):
        load_release(write(tmp_path, text))
    with pytest.raises(UsageError, match=r"^rel.toml \[pack\]: needs layers"):
        load_release(write(tmp_path, text + "[pack]\nsize = 64\n" + CLIPS.split("\n\n", 2)[2]))


def test_the_commented_clip_of_demo_toml_stays_valid(tmp_path):
    """Uncommented, demo.toml's example line makes one more clip, delivered with the rest."""
    text = (ROOT / "scenes" / "release" / "demo.toml").read_text(encoding="utf-8")
    line = next(x for x in text.splitlines() if x.startswith("# clips = "))
    release = load_release(write(tmp_path, text.replace(line, line.removeprefix("# "), 1), name="demo.toml"))
    plan = plan_release(release, tmp_path / "out", load_generator(release.model, "cpu"))
    assert plan.clips["clips/deep-red"].layer == "L9_148_64"
    assert [loop.codec for loop in plan.loops if loop.name == "clips/deep-red"] == ["h264", "hap"]


# --------------------------------------------------------------------------- append_clip

ENTRY = {"name": "faces-red", "layer": "L3_52_64", "channels": [12, 40, 3], "seeds": "3,17",
         "frames_per_seed": 3, "psi": "0.5:1.0", "size": 64, "fps": 12.0, "class_idx": None}  # fmt: skip


def test_append_clip_makes_a_new_release_file(tmp_path):
    path = tmp_path / "sub" / "release.toml"
    table = append_clip(path, ENTRY, model="builtin:sg3t-256")
    assert table.startswith('[[clips]]\nname = "faces-red"\nlayer = "L3_52_64"\n')
    assert "class" not in table  # None: the file's value
    text = path.read_text(encoding="utf-8")
    assert text.endswith(table) and 'model = "builtin:sg3t-256"' in text
    release = load_release(path)
    (clip,) = release.clips
    assert (clip.name, clip.layer, clip.channels, clip.seeds) == (
        "faces-red",
        "L3_52_64",
        (12, 40, 3),
        [3, 17],
    )
    assert (clip.options.psi, clip.options.psi_to, clip.options.size) == (0.5, 1.0, 64)
    with pytest.raises(UsageError, match=r"nope.toml: does not exist: give the model"):
        append_clip(tmp_path / "nope.toml", ENTRY)
    assert not (tmp_path / "nope.toml").exists()
    empty = write(tmp_path, "\n", name="empty.toml")  # an empty file is a new one
    append_clip(empty, ENTRY, model="builtin:sg3t-256")
    assert empty.read_text(encoding="utf-8") == text.replace("release.toml", "empty.toml")


def test_append_clip_keeps_the_users_text_and_refuses_what_would_not_load(tmp_path):
    mine = '# my release: keep this\nmodel = "builtin:sg3t-256"  # the small one\n\n[walk]\nseeds = "0-1"\n'
    mine += '[[clips]]\nname = "first"\nlayer = "L3_52_64"\nchannels = 5   # grey\n# the end, no newline'
    path = write(tmp_path, mine, name="release.toml")
    table = append_clip(path, ENTRY, model="builtin:sg3t-256")
    text = path.read_text(encoding="utf-8")
    assert text == mine + "\n\n" + table  # appended: every byte of the user's text kept
    assert [c.name for c in load_release(path).clips] == ["first", "faces-red"]

    refused = [
        ({**ENTRY}, "release.toml [[clips]].name: 'faces-red' is the name of [[clips]] #2 too; give each clip "
                    "its own name"),
        ({**ENTRY, "name": "Faces-Red"}, "release.toml [[clips]].name: 'Faces-Red' is the name of [[clips]] #2 "
                                         "too (as 'faces-red': folder names ignore case on macOS and Windows)"),
        ({**ENTRY, "name": "x/y"}, "release.toml [[clips]].name: 'x/y' is not a clip name"),
        ({**ENTRY, "name": "b", "psi": "0.5:3"}, "release.toml [[clips]] #3.psi: bad psi '0.5:3'"),
        ({**ENTRY, "name": "b", "speed": 2}, "release.toml [[clips]] #3: unknown key 'speed'; valid: "),
        ({**ENTRY, "name": "b", "channels": [1, 2]}, "release.toml [[clips]] #3.channels: bad channels [1, 2]"),
        ({**ENTRY, "name": "b", "size": {"w": 2}}, "release.toml [[clips]].size: must be a number, text"),
    ]  # fmt: skip
    for entry, expected in refused:
        with pytest.raises(UsageError) as caught:
            append_clip(path, entry, model="builtin:sg3t-256")
        assert str(caught.value).startswith(expected), str(caught.value)
    with pytest.raises(
        UsageError, match=r"^release.toml.model: this release makes builtin:sg3t-256, not buil"
    ):
        append_clip(path, {**ENTRY, "name": "b"}, model="builtin:sg2-256")
    assert path.read_text(encoding="utf-8") == text  # nothing written by a refusal


def test_appended_clips_make_a_release(tmp_path):
    """What "Add to release" writes, `irep3d release` makes: a real run, resumed untouched."""
    out = tmp_path / "out"
    path = tmp_path / "out" / "release.toml"
    append_clip(path, ENTRY, model="builtin:sg3t-256")
    append_clip(path, {**ENTRY, "name": "faces-grey", "channels": [7], "psi": None}, model="builtin:sg3t-256")
    with path.open("a", encoding="utf-8") as fh:
        fh.write('\n[[deliveries]]\ncodecs = ["h264"]\nloops = ["clips/faces-*"]\n')
    result = runner.invoke(app, ["release", str(path), "--out", str(out)])
    assert result.exit_code == 0, result.output
    loops = json.loads((out / "release.json").read_text())["loops"]
    assert [(x["name"], x["kind"], x["frames"], x["fps"], x["width"]) for x in loops] == [
        ("clips/faces-red", "clip", 6, 12.0, 64),
        ("clips/faces-grey", "clip", 6, 12.0, 64),
    ]
    made = json.loads((out / "maps" / "clips" / "faces-red" / "clip.json").read_text())
    assert (made["channels"], made["seeds"], made["psi"], made["psi_to"]) == ([12, 40, 3], [3, 17], 0.5, 1.0)
    before = files(out)
    again = runner.invoke(app, ["release", str(path), "--out", str(out)])
    assert again.exit_code == 0, again.output
    assert files(out) == before  # resumed: same bytes, same mtimes


def test_a_dry_run_counts_and_measures_explicit_clips(tmp_path):
    """A release of [[clips]] alone: its dry run measures their layers and largest clip."""
    text = CLIPS + '\n[[deliveries]]\ncodecs = ["h264"]\n'
    out = tmp_path / "out"
    result = runner.invoke(app, ["release", str(write(tmp_path, text)), "--out", str(out), "--dry-run"])
    assert result.exit_code == 0, result.output
    shown = " ".join(result.output.split())
    assert re.search(r"network frames \(forward passes\) │ 18 │", shown)  # 6, and 9 + 3 keyframes
    assert re.search(r"EXR files \(clips \+ composites\) │ 21 │", shown)
    assert "network: one forward pass capturing L3_52_64, L5_84_64 at batch 1" in shown
    assert "EXR: one 84x84 L5_84_64 frame" in shown
    assert not out.exists()
