"""`--ray`: packs and Cycles renders split into Ray tasks, byte for byte the local run.

One local Ray instance (2 CPUs, no dashboard) serves the module. A worker killed mid-task
(the `IREP3D_FARM_CRASH` hook: the first task that finds the marker file deletes it and
`os._exit`s after its first frame) must not change a byte; bad input stops the job with
one line instead of being retried.
"""

from __future__ import annotations

import json
import os
import re
import secrets
from pathlib import Path

import pytest
import ray
from typer.testing import CliRunner

from irep3d import farm
from irep3d.cli import app
from irep3d.errors import Irep3dError, LayerError, OutputError
from irep3d.maps_engine import render_clips
from irep3d.options import ClipJob, MapsOptions
from irep3d.progress import BUSY
from tests.clip_util import make_clip

MODEL = "builtin:sg3t-256"
LAYERS = ("L3_52_64", "L5_84_64")
OPTIONS = MapsOptions(frames_per_seed=4)  # 3 seeds, loop: 12 frames a clip
runner = CliRunner()


def jobs() -> list[ClipJob]:
    """A locked pack: 2 layers x 2 clips, automatic channels, one seed sequence."""
    return [ClipJob(f"{layer}_clip{j + 1:02d}", layer, None, [1, 2, 3]) for layer in LAYERS for j in range(2)]


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def crash_marker(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("hook") / "crash-once"


@pytest.fixture(scope="module", autouse=True)
def cluster(crash_marker):
    """A private instance, as `--ray local` starts it: never a cluster this machine recorded,
    and no ~/.ray/auth_token left behind (which would make later heads here want it)."""
    os.environ[farm.ENV_CRASH] = str(crash_marker)  # inherited by the Ray workers
    own_token = "RAY_AUTH_MODE" not in os.environ and "RAY_AUTH_TOKEN" not in os.environ
    if own_token:
        os.environ["RAY_AUTH_TOKEN"] = secrets.token_hex(32)
    ray.init(
        address="local", num_cpus=2, include_dashboard=False, logging_level="WARNING", log_to_driver=False
    )
    yield
    ray.shutdown()
    os.environ.pop(farm.ENV_CRASH, None)
    if own_token:
        os.environ.pop("RAY_AUTH_TOKEN", None)


@pytest.fixture(scope="module")
def local_pack(tmp_path_factory) -> Path:
    from irep3d.generator import load_generator

    out = tmp_path_factory.mktemp("local")
    render_clips(load_generator(MODEL, "cpu"), MODEL, jobs(), out, OPTIONS)
    return out


def test_pack_on_the_farm_equals_the_local_run(local_pack, tmp_path):
    seen: list[tuple[str, int, int]] = []
    results = farm.render_maps(MODEL, jobs(), tmp_path, OPTIONS, progress=lambda *a: seen.append(a))
    assert tree(tmp_path) == tree(local_pack)  # the figures' samples are gone too
    assert len(tree(tmp_path)) == 4 * (12 + 1)
    assert [r.written for r in results] == [12] * 4
    assert [s for s in seen if s[0] == "EXR"][-1] == ("EXR", 48, 48)
    assert max(busy for stage, busy, _ in seen if stage == BUSY) == 1  # this cluster is one node
    assert all(json.loads((tmp_path / j.name / "clip.json").read_text())["complete"] for j in jobs())


def test_a_worker_killed_mid_task_changes_no_byte(local_pack, tmp_path, crash_marker):
    crash_marker.write_text("")
    farm.render_maps(MODEL, jobs(), tmp_path, OPTIONS)
    assert not crash_marker.exists(), "the crash hook did not fire"
    assert tree(tmp_path) == tree(local_pack)  # no temp file left either


def test_a_long_walk_on_the_farm_equals_the_local_run(tmp_path):
    """48 frames: the figures' sample (8 batches of 4) is written by the workers that
    computed it, the other 4 batches by the shards."""
    from irep3d.generator import load_generator

    options = MapsOptions(frames_per_seed=16)
    long_jobs = [ClipJob(f"L3_52_64_clip{j + 1:02d}", "L3_52_64", None, [1, 2, 3]) for j in range(2)]
    render_clips(load_generator(MODEL, "cpu"), MODEL, long_jobs, tmp_path / "local", options)
    results = farm.render_maps(MODEL, long_jobs, tmp_path / "farm", options)
    assert [r.written for r in results] == [48, 48]
    assert tree(tmp_path / "farm") == tree(tmp_path / "local")


def test_an_audio_walk_on_the_farm_equals_the_local_run(tmp_path):
    """`--audio` on the farm: every worker reads the track by its absolute path and walks,
    ψ and gain follow it exactly as here (same frames, same bytes)."""
    import numpy as np
    import soundfile

    from irep3d.generator import load_generator
    from irep3d.options import maps_options

    rate = 22050
    track = np.zeros(rate, dtype=np.float32)  # one second, a click at 0.4 s
    track[int(0.4 * rate) : int(0.4 * rate) + 300] = 0.9
    soundfile.write(tmp_path / "beat.wav", track, rate)
    options = maps_options(
        audio=tmp_path / "beat.wav", fps=12.0, audio_speed=4.0, audio_psi="0.6:1.0", audio_gain=6.0, batch=4
    )
    audio_jobs = [ClipJob("L3_52_64_clip01", "L3_52_64", None, [1, 2, 3])]
    render_clips(load_generator(MODEL, "cpu"), MODEL, audio_jobs, tmp_path / "local", options)
    results = farm.render_maps(MODEL, audio_jobs, tmp_path / "farm", options)
    assert [r.frames for r in results] == [12] and [r.written for r in results] == [12]
    assert tree(tmp_path / "farm") == tree(tmp_path / "local")


def test_a_resumed_farm_run_skips_finished_frames(local_pack, tmp_path):
    farm.render_maps(MODEL, jobs(), tmp_path, OPTIONS)
    for j in jobs()[:2]:
        (tmp_path / j.name / f"{j.name}_00007.exr").unlink()
    results = farm.render_maps(MODEL, jobs(), tmp_path, OPTIONS)
    assert [r.written for r in results] == [1, 1, 0, 0]
    assert tree(tmp_path) == tree(local_pack)


def test_cli_pack_with_ray(local_pack, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a relative --out, as users type it
    result = runner.invoke(
        app,
        ["pack", MODEL, "--layers", ",".join(LAYERS), "--clips-per-layer", "2", "--seeds", "1-3", "-k", "4",
         "--out", "pack", "--ray", "auto"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    files = tree(tmp_path / "pack")
    manifest = json.loads(files.pop("pack.json"))
    assert [c["path"] for c in manifest["clips"]] == [j.name for j in jobs()]
    assert files == tree(local_pack)


def test_cli_shard_and_ray_do_not_mix(tmp_path):
    result = runner.invoke(
        app, ["maps", MODEL, "--layer", "L3_52_64", "--out", str(tmp_path), "--shard", "0/2", "--ray", "auto"]
    )
    assert result.exit_code == 2 and "do not mix" in result.stderr


def test_bad_input_stops_the_job_with_one_error(tmp_path):
    bad = [ClipJob("x", "L99_nope", [0, 1, 2], [1, 2])]
    with pytest.raises(LayerError, match="unknown layer"):
        farm.render_maps(MODEL, bad, tmp_path, OPTIONS)
    with pytest.raises(Irep3dError, match=r"model|builtin|network"):
        farm.render_maps("builtin:no-such-net", jobs(), tmp_path, OPTIONS)


def test_an_unwritable_shared_root_names_the_path(tmp_path):
    with pytest.raises(OutputError, match=re.escape(str(tmp_path / "nowhere"))):
        farm.check_shared(tmp_path / "nowhere")


def test_the_output_must_be_inside_the_shared_root(tmp_path):
    (tmp_path / "root").mkdir()
    with pytest.raises(Irep3dError, match="not inside --shared-root"):
        farm.render_maps(MODEL, jobs(), tmp_path / "elsewhere", OPTIONS, shared_root=tmp_path / "root")
    with pytest.raises(OutputError, match=re.escape(str(tmp_path / "gone"))):
        farm.render_maps(MODEL, jobs(), tmp_path / "out", OPTIONS, shared_root=tmp_path / "gone")


def test_figures_measured_in_parallel_equal_the_local_ones(local_pack, tmp_path):
    """norm global: the sample batches, computed by workers and merged, give clip.json's figures."""
    results = farm.render_maps(MODEL, jobs(), tmp_path / "pack", OPTIONS, shared_root=tmp_path)
    for r in results:
        local = json.loads((local_pack / r.name / "clip.json").read_text())["normalization"]
        assert r.stats.to_json() == {"lo": local["lo"], "hi": local["hi"]}


def test_ray_client_addresses_are_refused():
    with pytest.raises(Irep3dError, match="farm submit"):
        farm.connect("ray://10.0.0.1:10001")


def test_address_from_the_environment(monkeypatch):
    monkeypatch.setenv(farm.ENV_ADDRESS, "auto")
    assert farm.resolve_address(None) == "auto"
    assert farm.resolve_address("10.0.0.1:6379") == "10.0.0.1:6379"
    monkeypatch.setenv(farm.ENV_ADDRESS, "")
    assert farm.resolve_address(None) is None


# --------------------------------------------------------------------------- Blender

FRAMES, SIZE = 4, 24


def png_pixels(root: Path) -> dict[str, bytes]:
    """IHDR + IDAT chunks of each PNG: the pixels as written. Blender stamps the date and
    render time into text chunks, so two local renders already differ in those bytes."""
    out = {}
    for path in sorted(root.glob("frame_*.png")):
        data, pos, kept = path.read_bytes(), 8, b""
        while pos < len(data):
            size = int.from_bytes(data[pos : pos + 4], "big")
            kind = data[pos + 4 : pos + 8]
            if kind in (b"IHDR", b"IDAT"):
                kept += data[pos + 8 : pos + 8 + size]
            pos += 12 + size
        out[path.name] = kept
    return out


@pytest.fixture(scope="module")
def blend(tmp_path_factory) -> Path:
    from irep3d.blender import build_scene

    clip = make_clip(tmp_path_factory.mktemp("clips") / "blob", frames=FRAMES, size=(SIZE, SIZE))
    settings = {"samples": 1, "resolution": (24, 16)}
    return build_scene(clip, clip.parent / "scene.blend", "edge-point-light", settings)


@pytest.fixture(scope="module")
def local_frames(blend, tmp_path_factory) -> Path:
    from irep3d.blender import render_frames

    out = tmp_path_factory.mktemp("renders")
    render_frames(blend, out)
    return out


def manifest(folder: Path) -> dict:
    """A render folder's render.json without `blend` (the .blend's path relative to it)."""
    data = json.loads((folder / "render.json").read_text())
    return {k: v for k, v in data.items() if k != "blend"}


@pytest.mark.slow
def test_blender_chunks_equal_the_local_render(blend, local_frames, tmp_path):
    files = farm.render_chunks(blend, tmp_path, chunk=2)
    assert [f.name for f in files] == [f"frame_{n:05d}.png" for n in range(1, FRAMES + 1)]
    assert png_pixels(tmp_path) == png_pixels(local_frames)
    assert manifest(tmp_path) == manifest(local_frames)  # the chunks' render.json: the same render


def test_blender_chunks_resume_a_local_render_and_refuse_another(blend, local_frames, tmp_path):
    """Chunks keep the frames of the same render (a local one included) and refuse a folder
    of another render in one line, before any frame changes."""
    before = {p.name: p.stat().st_mtime_ns for p in sorted(local_frames.glob("frame_*.png"))}
    seen: list[tuple[str, int, int]] = []
    farm.render_chunks(blend, local_frames, chunk=2, progress=lambda *a: seen.append(a))
    assert {p.name: p.stat().st_mtime_ns for p in sorted(local_frames.glob("frame_*.png"))} == before
    assert [s for s in seen if s[0] == "render"][-1] == ("render", FRAMES, FRAMES)  # all there already
    with pytest.raises(
        Irep3dError, match=r"made with other settings \(samples 1 there, 2 now\); render into"
    ):
        farm.render_chunks(blend, local_frames, chunk=2, samples=2)
    assert {p.name: p.stat().st_mtime_ns for p in sorted(local_frames.glob("frame_*.png"))} == before


@pytest.mark.slow
def test_blender_chunk_killed_mid_task_is_retried(blend, local_frames, tmp_path, crash_marker):
    crash_marker.write_text("")
    farm.render_chunks(blend, tmp_path, chunk=2)
    assert not crash_marker.exists(), "the crash hook did not fire"
    assert png_pixels(tmp_path) == png_pixels(local_frames)


def test_blender_missing_clip_frames_stop_the_job(tmp_path):
    """A clip with a frame gone: one error naming it, before any frame is rendered."""
    from irep3d.blender import build_scene

    clip = make_clip(tmp_path / "clips" / "blob", frames=FRAMES, size=(SIZE, SIZE))
    scene = build_scene(
        clip, tmp_path / "scene.blend", "edge-point-light", {"samples": 1, "resolution": (24, 16)}
    )
    (clip / "blob_00003.exr").unlink()
    with pytest.raises(Irep3dError, match=r"missing 1 frames.*blob_00003\.exr"):
        farm.render_chunks(scene, tmp_path / "out", chunk=2)
    assert not list((tmp_path / "out").glob("frame_*"))


def test_blender_bad_input_is_one_error(blend, tmp_path):
    with pytest.raises(OutputError, match="does not exist"):
        farm.render_chunks(tmp_path / "missing.blend", tmp_path, chunk=2)
    with pytest.raises(Irep3dError, match="--chunk"):
        farm.render_chunks(blend, tmp_path, chunk=0)
    broken = tmp_path / "broken.blend"
    broken.write_text("not a blend")
    with pytest.raises(Irep3dError, match=r"cannot open|Blender"):
        farm.render_chunks(broken, tmp_path / "out", chunk=2)


def test_cli_blender_render_with_ray(blend, local_frames, tmp_path):
    result = runner.invoke(app, ["blender", "render", str(blend), "--out", str(tmp_path), "--ray", "auto",
                                 "--chunk", "3"])  # fmt: skip
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert f"{FRAMES} frames in {tmp_path / blend.stem} (Ray cluster" in text  # OUT/<blend name>/, as locally
    assert png_pixels(tmp_path / blend.stem) == png_pixels(local_frames)


@pytest.fixture(scope="module")
def two_scenes(blend) -> list[Path]:
    """The module's scene and a second one of the same clip (another preset, 3 frames)."""
    from irep3d.blender import SceneJob, build_scenes

    clip = blend.parent / "blob"
    jobs = [
        SceneJob(
            clip,
            preset,
            blend.parent / "pack" / f"blob__{preset}.blend",
            settings={"samples": 1, "resolution": (24, 16)},
        )
        for preset in ("edge-point-light", "soft-overhead")
    ]
    build_scenes(jobs)
    return [job.blend for job in jobs]


@pytest.mark.slow
def test_blender_chunks_of_several_scenes_equal_local_renders(two_scenes, tmp_path):
    """All scenes' chunks in one queue (2 scenes x 2 chunks), each scene into its own folder,
    pixel for pixel the local `render_scenes`; the CLI takes their scenes.json."""
    from irep3d.blender import render_scenes

    local = render_scenes(two_scenes, tmp_path / "local")
    seen: list[tuple[str, int, int]] = []
    files = farm.render_chunks(two_scenes, tmp_path / "farm", chunk=2, progress=lambda *a: seen.append(a))
    assert isinstance(files, dict) and list(files) == list(local) == [b.resolve() for b in two_scenes]
    for blend in two_scenes:
        assert [f.relative_to(tmp_path / "farm") for f in files[blend.resolve()]] == [
            Path(blend.stem) / f"frame_{n:05d}.png" for n in range(1, FRAMES + 1)
        ]
        assert png_pixels(tmp_path / "farm" / blend.stem) == png_pixels(tmp_path / "local" / blend.stem)
    assert [s for s in seen if s[0] == "render"][-1] == (
        "render",
        2 * FRAMES,
        2 * FRAMES,
    )  # one bar over all frames of all scenes

    (tmp_path / "farm" / two_scenes[1].stem / "frame_00003.png").unlink()
    index = two_scenes[0].parent / "scenes.json"
    result = runner.invoke(
        app, ["blender", "render", str(index), "--out", str(tmp_path / "farm"), "--ray", "auto"]
    )
    assert result.exit_code == 0, result.output
    assert "8 frames in 2 scenes in" in result.output
    assert png_pixels(tmp_path / "farm" / two_scenes[1].stem) == png_pixels(
        tmp_path / "local" / two_scenes[1].stem
    )
