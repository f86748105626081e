"""`irep3d blender build|render|addon` with the real `bpy` module, in real subprocesses.

One small clip (32x32 OpenEXR, 3 frames, a bright blob moving left to right) is built into
one scene for the module; every render is tiny (48x32, 2 samples) so the file runs in
well under a minute on two cores.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from irep3d.blender import find_blender, parse_frames, parse_resolution
from irep3d.blender.process import _error_line
from irep3d.cli import app
from irep3d.errors import BlenderError, UsageError
from tests.clip_util import make_clip
from tests.proc_util import run_cli

runner = CliRunner()
REPO = Path(__file__).resolve().parents[1]
PRESET = "edge-point-light"
FRAMES, SIZE, FPS = 3, 32, 24


def run(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def run_bpy(code: str, cwd: Path) -> str:
    """Run `code` with the bpy module in a plain Python without the repository on sys.path."""
    result = subprocess.run(
        [sys.executable, "-I", "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return result.stdout


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return make_clip(tmp_path_factory.mktemp("clips") / "blob", frames=FRAMES, size=(SIZE, SIZE))


@pytest.fixture(scope="module")
def blend(clip) -> Path:
    out = clip.parent / "scene.blend"
    result = run("blender", "build", clip, "--preset", PRESET, "--out", out, "--samples", "2")
    assert result.exit_code == 0, result.output
    return out


def pixels(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"), dtype=np.float32)


def test_build_writes_a_blend_with_relative_paths(blend):
    assert blend.is_file() and blend.stat().st_size > 10_000
    assert sorted(p.name for p in blend.parent.iterdir()) == ["blob", "scene.blend"]  # no temp, no .blend1
    out = run_bpy(
        f"""
        import json, bpy
        bpy.ops.wm.open_mainfile(filepath={str(blend)!r})
        s = bpy.context.scene
        images = [i.filepath for i in bpy.data.images if i.source in ("FILE", "SEQUENCE")]
        print("RESULT " + json.dumps([s.frame_start, s.frame_end, s.render.fps, s.cycles.samples, images]))
        """,
        cwd=blend.parent,
    )
    first, last, fps, samples, images = json.loads(out.split("RESULT ", 1)[1])
    assert (first, last, fps, samples) == (1, FRAMES, FPS, 2)
    assert images and all(p.startswith("//") for p in images), images


def test_build_options_reach_the_scene(clip, tmp_path):
    out = tmp_path / "options.blend"
    result = run("blender", "build", clip, "--preset", PRESET, "--out", out, "--resolution", "40x20",
                 "--format", "exr", "--strength", "0.4", "--height-source", "r")  # fmt: skip
    assert result.exit_code == 0, result.output
    got = run_bpy(
        f"""
        import bpy
        bpy.ops.wm.open_mainfile(filepath={str(out)!r})
        r = bpy.context.scene.render
        print("RESULT", r.resolution_x, r.resolution_y, r.image_settings.file_format)
        """,
        cwd=tmp_path,
    )
    assert got.split("RESULT ", 1)[1].split() == ["40", "20", "OPEN_EXR"]
    rendered = run("blender", "render", out, "--frames", "1", "--samples", "1", "--out", tmp_path / "r")
    assert rendered.exit_code == 0, rendered.output
    folder = tmp_path / "r" / "options"  # OUT/<blend name>/
    assert sorted(p.name for p in folder.iterdir()) == [
        "frame_00001.exr",
        "render.json",
    ]  # the scene's format
    manifest = json.loads((folder / "render.json").read_text())
    assert (manifest["image_format"], manifest["files"]) == ("OPEN_EXR", "frame_#####.exr")


def test_render_writes_frames_then_resumes(blend, tmp_path):
    out = tmp_path / "frames"
    args = (
        "blender",
        "render",
        blend,
        "--frames",
        "1-2",
        "--samples",
        "2",
        "--resolution",
        "48x32",
        "--out",
        out,
    )
    result = run(*args)
    assert result.exit_code == 0, result.output
    folder = out / "scene"  # each scene into OUT/<blend name>/, one scene as well as several
    assert "2 frames rendered, 0 already there" in result.output
    assert str(folder) in "".join(result.output.split())  # the line names the folder
    files = [folder / "frame_00001.png", folder / "frame_00002.png"]
    assert sorted(folder.iterdir()) == [*files, folder / "render.json"]  # no temp names left behind
    manifest = json.loads((folder / "render.json").read_text())
    assert list(manifest) == ["format", "version", "blend", "scene", "fingerprint", "resolution", "samples",
                              "image_format", "color_depth", "frames", "fps", "files"]  # fmt: skip
    assert (folder / manifest["blend"]).resolve() == blend.resolve()  # stored relative to the folder
    assert manifest["resolution"] == [48, 32] and manifest["samples"] == 2
    assert (manifest["image_format"], manifest["color_depth"], manifest["files"]) == (
        "PNG",
        "16",
        "frame_#####.png",
    )
    assert (manifest["frames"], manifest["fps"]) == ([1, FRAMES], FPS)  # the scene's range and fps
    for f in files:
        with Image.open(f) as image:
            assert image.size == (48, 32)
    a, b = (pixels(f) for f in files)
    assert a.std() > 1 and np.abs(a - b).mean() > 0.5  # lit relief, and the blob moved

    mtimes = [f.stat().st_mtime_ns for f in [*files, folder / "render.json"]]
    again = run(*args)
    assert again.exit_code == 0, again.output
    assert "0 frames rendered, 2 already there" in again.output
    assert [f.stat().st_mtime_ns for f in [*files, folder / "render.json"]] == mtimes


def test_render_defaults_to_renders_next_to_the_blend(clip, tmp_path):
    # a scene of its own, so this test's renders/ cannot meet another test's
    blend = tmp_path / "own.blend"
    assert run("blender", "build", clip, "--preset", PRESET, "--out", blend).exit_code == 0
    result = run("blender", "render", blend, "--frames", "3", "--samples", "1", "--resolution", "16x16")
    assert result.exit_code == 0, result.output
    folder = tmp_path / "renders" / "own"  # renders/<blend name>/: another scene here gets another
    assert sorted(p.name for p in folder.iterdir()) == ["frame_00003.png", "render.json"]


def _frames(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("frame_*.png"))}


def test_scenes_of_one_folder_never_share_their_default_renders(clip, tmp_path):
    """Two .blend files side by side, rendered one after the other with default paths: the
    second renders its own frames (it used to print "0 frames rendered, 1 already there"
    and exit 0 with the first scene's images)."""
    common = ("--frames", "2", "--samples", "1", "--resolution", "24x16")
    for name, strength in (("low", "0.05"), ("high", "0.6")):
        built = run("blender", "build", clip, "--preset", PRESET, "--out", tmp_path / f"{name}.blend",
                    "--strength", strength)  # fmt: skip
        assert built.exit_code == 0, built.output
        result = run("blender", "render", tmp_path / f"{name}.blend", *common)
        assert result.exit_code == 0, result.output
        assert "1 frames rendered, 0 already there" in result.output
    low, high = (tmp_path / "renders" / name for name in ("low", "high"))
    assert list(_frames(low)) == list(_frames(high)) == ["frame_00002.png"]
    assert np.abs(pixels(low / "frame_00002.png") - pixels(high / "frame_00002.png")).mean() > 0.5
    together = run("blender", "render", tmp_path / "low.blend", tmp_path / "high.blend", *common)
    assert together.exit_code == 0, together.output  # the same folders, alone or together
    assert "0 frames rendered, 2 already there" in together.output


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        (("--resolution", "32x16"), "made with other settings (resolution 24x16 there, 32x16 now)"),
        (("--samples", "2"), "made with other settings (samples 1 there, 2 now)"),
        (("--preset", "soft-overhead"), "holds frames of another scene ("),
    ],
)
def test_a_render_folder_keeps_frames_only_of_its_own_scene_and_settings(
    blend, clip, tmp_path, change, needle
):
    """Resuming with another --resolution or --samples, or rendering another scene of the
    same name into the same folder, is one line and exit 2, and the frames there stay as
    they were (frames at the old size used to be kept and reported as "already there")."""
    first = run("blender", "render", blend, "--frames", "1", "--samples", "1", "--resolution", "24x16",
                "--out", tmp_path / "r")  # fmt: skip
    assert first.exit_code == 0, first.output
    folder = tmp_path / "r" / "scene"
    before = _frames(folder)
    settings = {"--samples": "1", "--resolution": "24x16"}
    scene = blend
    if change[0] == "--preset":  # another scene.blend: the same folder name, another look
        scene = tmp_path / "other" / "scene.blend"
        assert run("blender", "build", clip, *change, "--out", scene).exit_code == 0
    else:
        settings[change[0]] = change[1]
    options = [x for item in settings.items() for x in item]
    result = run_cli(
        "blender", "render", scene, "--frames", "1", *options, "--out", tmp_path / "r", cwd=tmp_path
    )
    assert result.returncode == 2, result.stdout + result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and f"{folder} " in lines[0] and needle in lines[0], result.stderr
    assert "render into another folder, or delete this one to start over" in lines[0]
    assert _frames(folder) == before


def test_frames_no_manifest_describes_are_not_taken_for_a_render(blend, tmp_path):
    """Frames an older irep3d (or a person) put into the folder are not adopted."""
    folder = tmp_path / "r" / "scene"
    folder.mkdir(parents=True)
    Image.new("RGB", (24, 16), (9, 9, 9)).save(folder / "frame_00001.png")
    result = run_cli("blender", "render", blend, "--frames", "1", "--out", tmp_path / "r", cwd=tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "holds frames that no render.json describes" in result.stderr
    assert sorted(p.name for p in folder.iterdir()) == ["frame_00001.png"]


def test_a_render_folder_encodes_and_previews_at_the_scenes_fps(blend, tmp_path):
    """The scene plays at 24 fps (its clip's): the render folder records it and `irep3d
    encode` and `preview` use it (a render used to be encoded at 30 fps)."""
    import av

    result = run(
        "blender", "render", blend, "--samples", "1", "--resolution", "24x16", "--out", tmp_path / "r"
    )
    assert result.exit_code == 0, result.output
    folder = tmp_path / "r" / "scene"
    for command, out in (("encode", tmp_path / "loop.mp4"), ("preview", tmp_path / "preview.mp4")):
        extra = ("--codec", "h264") if command == "encode" else ()
        made = run_cli(command, folder, *extra, "--out", out, cwd=tmp_path)
        assert made.returncode == 0, made.stdout + made.stderr
        with av.open(str(out)) as video:
            stream = video.streams.video[0]
            assert stream.average_rate == FPS and stream.frames == FRAMES, command


def test_the_blend_renders_without_irep3d(blend, tmp_path):
    """The .blend is self-contained: plain bpy, no add-on, no repository on sys.path."""
    run_bpy(
        f"""
        import importlib.util, os, bpy
        assert importlib.util.find_spec("blender_addon") is None, "the repository leaked onto sys.path"
        bpy.ops.wm.open_mainfile(filepath={str(blend)!r})
        s = bpy.context.scene
        for image in bpy.data.images:
            if image.source == "SEQUENCE":
                assert os.path.exists(bpy.path.abspath(image.filepath)), image.filepath
        s.render.resolution_x, s.render.resolution_y, s.render.resolution_percentage = 48, 32, 100
        s.cycles.samples = 2
        s.render.image_settings.file_format = "PNG"
        for n in (1, 3):
            s.frame_set(n)
            s.render.filepath = os.path.join({str(tmp_path)!r}, f"plain_{{n}}.png")
            bpy.ops.render.render(write_still=True)
        """,
        cwd=tmp_path,
    )
    first, last = pixels(tmp_path / "plain_1.png"), pixels(tmp_path / "plain_3.png")
    assert first.shape == (32, 48, 3)
    assert first.std() > 1 and np.abs(first - last).mean() > 0.5  # the EXR sequence was read


def test_addon_zip_holds_manifest_and_presets(tmp_path):
    out = tmp_path / "dist" / "irep3d_blender.zip"
    result = run("blender", "addon", "--out", out)
    assert result.exit_code == 0, result.output
    with zipfile.ZipFile(out) as z:
        names = z.namelist()
    assert "blender_manifest.toml" in names, names
    imported = {"jobs.py", "render.py", "scene.py", "presets.py", "integrity.py", "renders.py"}
    assert imported <= set(names), names  # what the add-on imports, irep3d's standard-library modules too
    presets = sorted(n for n in names if n.startswith("presets/") and n.endswith(".toml"))
    assert presets == sorted(f"presets/{p.name}" for p in (REPO / "scenes").glob("*.toml")) and presets
    assert not any("__pycache__" in n for n in names)
    assert sorted(p.name for p in out.parent.iterdir()) == ["irep3d_blender.zip"]
    with zipfile.ZipFile(out) as z:  # installed: its frame renderer uses the copies it carries
        z.extractall(tmp_path / "ext" / "irep3d_ext")
    found = run_bpy(
        """
        import sys
        sys.path.insert(0, ".")  # the folder the extension was unpacked into, as Blender installs it
        import irep3d_ext.render as render
        print("RESULT", render.renders.__name__, render.integrity.__name__, render.renders.frame_name(7))
        """,
        cwd=tmp_path / "ext",
    )
    assert found.split("RESULT ", 1)[1].split() == [
        "irep3d_ext.renders",
        "irep3d_ext.integrity",
        "frame_00007.png",
    ]


def test_a_blender_binary_is_preferred(tmp_path, clip, monkeypatch):
    """`--blender PATH` runs `PATH --background ... --python SCRIPT -- ARGS` (a stand-in binary)."""
    fake = tmp_path / "blender"
    fake.write_text(
        f"#!{sys.executable}\n"
        "import os, sys\n"
        "argv = sys.argv[1:]\n"
        "assert argv[:2] == ['--background', '--factory-startup'], argv\n"
        "script = argv[argv.index('--python') + 1]\n"
        "os.execv(sys.executable, [sys.executable, script, *argv[argv.index('--'):]])\n"
    )
    fake.chmod(0o755)
    assert find_blender(fake)[0] == str(fake)
    monkeypatch.setenv("BLENDER", str(fake))
    assert find_blender()[0] == str(fake)
    out = tmp_path / "via-binary.blend"
    result = run("blender", "build", clip, "--preset", PRESET, "--out", out)
    assert result.exit_code == 0, result.output
    assert out.is_file()


def test_without_a_binary_the_bpy_module_runs(monkeypatch, tmp_path):
    monkeypatch.delenv("BLENDER", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))  # no `blender` here
    assert find_blender() == [sys.executable]
    with pytest.raises(BlenderError, match="no such Blender executable"):
        find_blender(tmp_path / "nope")


@pytest.mark.parametrize(
    "args,needle",
    [
        (["build", "{clip}", "--preset", "no-such-preset", "--out", "{tmp}/x.blend"], "unknown preset 'no-such-preset'"),
        (["build", "{tmp}/missing", "--preset", PRESET, "--out", "{tmp}/x.blend"], "does not exist"),
        (["build", "{clip}", "--preset", PRESET, "--out", "{tmp}/x.blend", "--height-source", "alpha"],
         "--height-source 'alpha' is invalid: expected one of luminance, R, G, B"),
        (["render", "{blend}", "--frames", "3-1", "--out", "{tmp}/r"], "first frame is after the last"),
        (["render", "{blend}", "--resolution", "10", "--out", "{tmp}/r"], "bad --resolution '10'"),
        (["render", "{tmp}/missing.blend", "--out", "{tmp}/r"], "does not exist"),
    ],
)  # fmt: skip
def test_bad_input_is_one_line_and_exit_2(tmp_path, clip, blend, args, needle):
    work = tmp_path / "work"
    work.mkdir()
    filled = [a.format(clip=clip, blend=blend, tmp=work) for a in args]
    result = run_cli("blender", *filled, cwd=tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and needle in lines[0], result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert list(work.iterdir()) == []  # nothing half-written


def test_parsers_and_error_lines():
    assert parse_frames("1-48") == (1, 48) and parse_frames("7") == (7, 7)
    assert parse_resolution("1920x1080") == (1920, 1080)
    for bad in ("3-1", "a-b", "-1", ""):
        with pytest.raises(UsageError):
            parse_frames(bad)
    for bad in ("10", "0x10", "10x", "1920*1080"):
        with pytest.raises(UsageError):
            parse_resolution(bad)
    traceback = ["Traceback (most recent call last):", '  File "job.py", line 3', "RuntimeError: Error: boom"]
    assert _error_line(traceback, 3) == "Blender failed: RuntimeError: Error: boom"
    assert (
        _error_line([*traceback, "IREP3D_ERROR unknown preset 'x'", "Blender quit"], 3)
        == "unknown preset 'x'"
    )
    assert _error_line([], -9) == "Blender failed with exit code -9 and no output"


def test_library_render_reports_progress(blend, tmp_path):
    from irep3d.blender import render_frames

    seen: list[tuple[int, int]] = []
    files = render_frames(
        blend,
        tmp_path,
        (2, 3),
        samples=1,
        resolution=(16, 16),
        progress=lambda stage, d, t: seen.append((d, t)),
    )
    assert [f.name for f in files] == ["frame_00002.png", "frame_00003.png"]
    assert seen == [(0, 2), (1, 2), (2, 2)]
    assert sorted(os.listdir(tmp_path)) == [
        "frame_00002.png",
        "frame_00003.png",
        "render.json",
    ]  # this folder


def test_render_shards_together_render_the_range(blend, tmp_path):
    """--shard i/n renders the i-th contiguous slice; the slices cover the range once."""
    out = tmp_path / "frames"
    common = ("blender", "render", blend, "--frames", "1-3", "--samples", "2", "--resolution", "24x16")
    first = run(*common, "--out", out, "--shard", "0/2")
    assert first.exit_code == 0, first.output
    assert list(_frames(out / "scene")) == ["frame_00001.png"]
    second = run(*common, "--out", out, "--shard", "1/2")
    assert second.exit_code == 0, second.output
    assert list(_frames(out / "scene")) == ["frame_00001.png", "frame_00002.png", "frame_00003.png"]
    assert "2 frames rendered" in second.output


@pytest.mark.parametrize(
    "args,needle",
    [
        (["build", "{clip}", "--preset", PRESET, "--out", "{tmp}/x.blend", "--light-position", "2"],
         "--light-position 2.0 is invalid: expected a number in 0..1"),
        (["build", "{clip}", "--preset", PRESET, "--out", "{tmp}/x.blend", "--samples", "0"],
         "--samples 0 is invalid: expected a whole number >= 1"),
        (["build", "{clip}", "--preset", PRESET, "--out", "{tmp}/x.blend", "--format", "tiff"],
         "--format 'tiff' is invalid: expected one of png, exr, video"),
        (["build", "{clip}", "--preset", PRESET, "--out", "{tmp}/x.blend", "--resolution", "2x2"],
         "--resolution 2x2 is invalid: expected [width, height] in pixels, each side in 4..65536"),
        (["render", "{blend}", "--samples", "0", "--out", "{tmp}/r"], "--samples 0 is invalid"),
        (["render", "{blend}", "--device", "tpu", "--out", "{tmp}/r"], "unknown device 'tpu'"),
        (["render", "{blend}", "--shard", "2/2", "--out", "{tmp}/r"], "bad --shard '2/2'"),
    ],
)  # fmt: skip
def test_settings_are_checked_before_blender_starts(tmp_path, clip, blend, args, needle):
    """Bad build and render settings are one line and exit 2 before any Blender is looked for
    (the Blender named here does not exist: its error would come first otherwise)."""
    work = tmp_path / "work"
    work.mkdir()
    filled = [a.format(clip=clip, blend=blend, tmp=work) for a in args]
    result = run_cli("blender", *filled, "--blender", tmp_path / "no-blender", cwd=tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and needle in lines[0], result.stderr
    assert list(work.iterdir()) == []


def test_a_farm_render_checks_its_options_before_blender(blend, tmp_path):
    pytest.importorskip("ray")
    from irep3d.farm import render_chunks

    with pytest.raises(UsageError, match="--samples 0 is invalid"):
        render_chunks(blend, tmp_path, samples=0, blender=str(tmp_path / "no-blender"))


STAND_IN_RENDER = """\
import json, os, sys

args = json.load(open(sys.argv[sys.argv.index("--") + 1]))
assert args["job"] == "render" and args["device"] == "gpu", args
first, last = args["frames"]
out = args["scenes"][0]["out_dir"]
print(f"IREP3D_PLAN 0 {first} {last} {last - first + 1} .png", flush=True)
print("IREP3D_DEVICE OPTIX (Stand-in GPU)", flush=True)
for n in range(first, last + 1):
    open(os.path.join(out, f"frame_{n:05d}.png"), "wb").close()
    print(f"IREP3D_FRAME 0 {n}", flush=True)
"""


def test_the_gpu_that_rendered_is_reported(blend, tmp_path):
    """IREP3D_DEVICE (the GPU Cycles renders on) reaches the caller and the CLI's output; a
    stand-in Blender speaks the render job's protocol (no GPU needed)."""
    fake = tmp_path / "blender"
    fake.write_text(f"#!{sys.executable}\n{STAND_IN_RENDER}")
    fake.chmod(0o755)
    from irep3d.blender import render_frames

    seen: list[str] = []
    files = render_frames(
        blend, tmp_path / "r", (1, 2), device="gpu", blender=str(fake), on_device=seen.append
    )
    assert seen == ["OPTIX (Stand-in GPU)"]
    assert [f.name for f in files] == ["frame_00001.png", "frame_00002.png"]
    result = run("blender", "render", blend, "--frames", "2-3", "--device", "gpu", "--blender", fake,
                 "--out", tmp_path / "cli")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "Cycles renders on OPTIX (Stand-in GPU)" in result.output
    assert "2 frames rendered, 0 already there" in result.output
