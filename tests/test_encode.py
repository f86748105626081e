"""Loop videos of a clip: every codec keeps the clip's frames exactly, its fps, and its colours."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
from pathlib import Path

import av
import numpy as np
import pytest
from av.video.reformatter import ColorPrimaries, ColorRange, Colorspace, ColorTrc
from typer.testing import CliRunner

from irep3d.cli import app
from irep3d.clip import Clip
from irep3d.display import srgb_oetf
from irep3d.encode import CODECS, check_size, encode_clip
from irep3d.errors import OutputError, UsageError
from irep3d.exr_clip import write_exr

FRAMES = 12
WIDTH, HEIGHT = 45, 31  # odd on purpose: h264/prores pad to even, HAP to multiples of 4
SUFFIX = {"h264": ".mp4", "prores": ".mov", "hap": ".mov"}
DECODER = {"h264": "h264", "prores": "prores", "hap": "hap"}
PADDED = {"h264": (32, 46), "prores": (32, 46), "hap": (32, 48)}


def loop_frame(index: int) -> np.ndarray:
    """Frame `index` (1-based) of a smooth periodic animation: frame FRAMES + 1 would be frame 1."""
    t = 2 * np.pi * (index - 1) / FRAMES
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
    r = 0.45 + 0.4 * np.sin(2 * np.pi * x / WIDTH + t)
    g = 0.45 + 0.4 * np.cos(2 * np.pi * y / HEIGHT + t)
    b = np.full_like(x, 0.45 + 0.3 * np.sin(t))
    return np.stack([r, g, b], axis=-1)


def make_clip(folder: Path, manifest: dict | None = None, frames=loop_frame, count: int = FRAMES) -> Path:
    for i in range(1, count + 1):
        write_exr(Clip(folder).frame_path(i), frames(i), {"frame": i})
    Clip(folder).write_manifest({"fps": 24, "norm": "global"} if manifest is None else manifest)
    return folder


def decode(path: Path) -> tuple[list[np.ndarray], av.video.stream.VideoStream]:
    """Every frame of the video as 8-bit RGB, and its stream (read while open)."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        images = [frame.to_ndarray(format="rgb24") for frame in container.decode(stream)]
        info = (stream.codec_context.name, stream.average_rate, stream.codec_context.width,
                stream.codec_context.height)  # fmt: skip
    return images, info


def expected(index: int, transfer: str = "srgb") -> np.ndarray:
    values = srgb_oetf(loop_frame(index)) if transfer == "srgb" else np.clip(loop_frame(index), 0, 1)
    return values * 255.0


@pytest.mark.parametrize("codec", CODECS)
def test_each_codec_keeps_the_loop(tmp_path, codec):
    clip = make_clip(tmp_path / "walk")
    out = tmp_path / f"loop{SUFFIX[codec]}"
    calls = []
    assert encode_clip(clip, out, codec, progress=lambda stage, d, t: calls.append((d, t))) == out
    assert calls == [(i, FRAMES) for i in range(1, FRAMES + 1)]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    images, (name, rate, width, height) = decode(out)
    assert len(images) == FRAMES  # the clip's frames exactly: frame 1 is not repeated at the end
    assert (name, rate, (height, width)) == (DECODER[codec], 24, PADDED[codec])
    for i in (1, FRAMES):
        error = np.abs(images[i - 1][:HEIGHT, :WIDTH].astype(np.float32) - expected(i))
        # 4:2:0 / 4:2:2 chroma and DXT1 blocks on a tiny, colourful frame: a few code values
        assert error.mean() < 5.0 and np.percentile(error, 99) < 24, (codec, i, error.mean())
    steps = [np.abs(images[i + 1].astype(np.float32) - images[i]).mean() for i in range(FRAMES - 1)]
    seam = np.abs(images[0].astype(np.float32) - images[-1]).mean()
    assert 0.6 * np.median(steps) < seam < 1.5 * np.median(steps), (seam, steps)


@pytest.mark.parametrize("codec", CODECS)
@pytest.mark.parametrize(("transfer", "code"), [("srgb", 128), ("none", 55)])
def test_linear_mid_grey(tmp_path, codec, transfer, code):
    clip = make_clip(tmp_path / "grey", frames=lambda i: np.full((16, 16, 3), 0.2140, np.float32), count=2)
    out = encode_clip(clip, tmp_path / f"grey{SUFFIX[codec]}", codec, transfer=transfer)
    images, _ = decode(out)
    assert np.abs(images[0].astype(int) - code).max() <= 2, images[0][8, 8]


def test_raw_clips_are_rescaled_by_percentiles(tmp_path):
    def ramp(index: int) -> np.ndarray:  # activations from -40 to 60, nowhere near [0, 1]
        return np.broadcast_to(np.linspace(-40, 60, 32, dtype=np.float32)[None, :, None] + index, (16, 32, 3))

    clip = make_clip(tmp_path / "raw", {"fps": 10, "norm": "none"}, frames=ramp, count=3)
    images, (_, rate, _, _) = decode(encode_clip(clip, tmp_path / "raw.mov", "prores", transfer="none"))
    assert rate == 10
    assert images[1][8, 0].max() < 20 and images[1][8, -1].min() > 235


def test_fps_override_and_h264_in_mov(tmp_path):
    clip = make_clip(tmp_path / "walk")
    images, (name, rate, _, _) = decode(encode_clip(clip, tmp_path / "w.mov", "h264", fps=30))
    assert (len(images), name, rate) == (FRAMES, "h264", 30)


def test_ctrl_c_kills_ffmpeg_and_leaves_no_file(tmp_path, monkeypatch):
    clip = make_clip(tmp_path / "walk")
    started = []
    real_popen = subprocess.Popen

    def popen(*args, **kwargs):
        started.append(real_popen(*args, **kwargs))
        return started[-1]

    def interrupt(stage, done, total):
        if done == 3:
            raise KeyboardInterrupt

    monkeypatch.setattr(subprocess, "Popen", popen)
    with pytest.raises(KeyboardInterrupt):
        encode_clip(clip, tmp_path / "out" / "loop.mov", "hap", progress=interrupt)
    assert started and started[0].poll() is not None
    assert list((tmp_path / "out").iterdir()) == []


@pytest.mark.parametrize(
    ("codec", "name", "kwargs", "message"),
    [
        ("vp9", "x.mp4", {}, "h264, prores, hap"),
        ("prores", "x.mp4", {}, ".mov"),
        ("hap", "x.avi", {}, ".mov"),
        ("h264", "x.mkv", {}, ".mp4 or .mov"),
        ("h264", "x.mp4", {"transfer": "gamma"}, "srgb, none"),
        ("h264", "x.mp4", {"quality": "99"}, "CRF"),
        ("prores", "x.mov", {"quality": "ultra"}, "proxy, lt"),
        ("hap", "x.mov", {"quality": "dxt9"}, "hap_q"),
        ("h264", "x.mp4", {"fps": 0}, "fps"),
    ],
)
def test_usage_errors(tmp_path, codec, name, kwargs, message):
    clip = make_clip(tmp_path / "walk", count=2)
    with pytest.raises(UsageError, match=message.replace(".", r"\.")):
        encode_clip(clip, tmp_path / name, codec, **kwargs)
    assert not (tmp_path / name).exists()


def test_missing_or_broken_clips_are_output_errors(tmp_path):
    with pytest.raises(OutputError, match="cannot read clip folder"):
        encode_clip(tmp_path / "absent", tmp_path / "x.mp4", "h264")
    (tmp_path / "empty").mkdir()
    with pytest.raises(OutputError, match=r"no frames in .*empty: give a clip folder .* or a render folder"):
        encode_clip(tmp_path / "empty", tmp_path / "x.mp4", "h264")
    clip = make_clip(tmp_path / "walk", count=3)
    Clip(clip, "walk").frame_path(2).unlink()
    with pytest.raises(OutputError, match="missing frame 2"):
        encode_clip(clip, tmp_path / "x.mp4", "h264")


runner = CliRunner()


def render_folder(folder: Path, fps: float = 24.0, count: int = 3) -> Path:
    """A render folder as `irep3d blender render` writes one: frame_#####.png and render.json."""
    from PIL import Image

    folder.mkdir(parents=True)
    for n in range(1, count + 1):
        Image.fromarray(np.full((16, 24, 3), 60 * n, np.uint8)).save(folder / f"frame_{n:05d}.png")
    manifest = {
        "format": "irep3d-render",
        "version": 1,
        "frames": [1, count],
        "fps": fps,
        "files": "frame_#####.png",
    }
    (folder / "render.json").write_text(json.dumps(manifest))
    return folder


def test_a_render_folder_encodes_at_the_fps_it_records(tmp_path):
    """A 24 fps scene's frames make a 24 fps loop (they used to come out at 30), unless asked."""
    folder = render_folder(tmp_path / "renders" / "scene")
    images, (_, rate, width, height) = decode(encode_clip(folder, tmp_path / "loop.mp4", "h264"))
    assert (len(images), rate, width, height) == (3, 24, 24, 16)
    assert abs(int(images[1].mean()) - 120) <= 2  # PNGs are display-referred: shown as they are
    assert decode(encode_clip(folder, tmp_path / "at30.mp4", "h264", fps=30))[1][1] == 30


def test_a_folder_of_neither_layout_names_both(tmp_path):
    """The frames the add-on's Render button used to write (`render/<clip>/<clip>_0001.png`)
    are neither layout: the line names both that encode takes."""
    old = tmp_path / "render" / "blob"
    old.mkdir(parents=True)
    for n in (1, 2):
        (old / f"blob_{n:04d}.png").write_bytes(b"")
    result = runner.invoke(app, ["encode", str(old), "--codec", "h264", "--out", str(tmp_path / "x.mp4")])
    assert result.exit_code == 2
    text = " ".join(result.output.split())
    assert f"no frames in {old}: give a clip folder (<clip>_00001.exr, … and clip.json" in text, text
    assert "or a render folder (frame_00001.png or .exr, … and render.json" in text, text


def test_cli_encodes(tmp_path):
    clip = make_clip(tmp_path / "walk")
    result = runner.invoke(app, ["encode", str(clip), "--codec", "hap", "--out", str(tmp_path / "w.mov")])
    assert result.exit_code == 0, result.output
    assert "wrote" in result.output and len(decode(tmp_path / "w.mov")[0]) == FRAMES


@pytest.mark.parametrize(
    ("codec", "target", "message"),
    [
        ("vp9", "x.mp4", "unknown codec"),
        ("prores", "x.mp4", ".mov"),
        ("h264", "x.mp4", "cannot read clip folder"),
    ],
)
def test_cli_errors_are_one_line_and_exit_2(tmp_path, codec, target, message):
    clip = make_clip(tmp_path / "walk", count=2) if "folder" not in message else tmp_path / "absent"
    result = runner.invoke(app, ["encode", str(clip), "--codec", codec, "--out", str(tmp_path / target)])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in result.output, result.output


# --------------------------------------------------------------------------- sizes, tags, full disks


@pytest.mark.parametrize(
    ("codec", "size", "message"),
    [
        (
            "h264",
            (16385, 2),
            "h264 cannot encode 16385x2 (padded to 16386x2) frames: at most 16384 px a side",
        ),
        ("h264", (2, 16386), "h264 cannot encode 2x16386 frames: at most 16384 px a side"),
        ("prores", (65535, 2), "prores cannot encode 65535x2 (padded to 65536x2) frames: at most 65534 px"),
        ("hap", (65533, 4), "hap cannot encode 65533x4 (padded to 65536x4) frames: at most 65532 px a side"),
    ],
)
def test_a_size_the_codec_cannot_deliver_is_one_line_before_any_encoding(tmp_path, codec, size, message):
    """Each codec's side limit (measured: see irep3d.encode), on the padded size, from the
    first frame's header: a UsageError before an encoder starts or the output folder exists."""
    width, height = size
    clip = make_clip(
        tmp_path / "wide", frames=lambda i: np.full((height, width, 3), 0.5, np.float32), count=2
    )
    out = tmp_path / "out" / f"wide{SUFFIX[codec]}"
    with pytest.raises(UsageError) as error:
        encode_clip(clip, out, codec)
    assert str(error.value).startswith(message) and "\n" not in str(error.value)
    assert not out.parent.exists()  # nothing started


@pytest.mark.parametrize(
    ("codec", "width", "height", "ok"),
    [
        ("h264", 16384, 16128, True),  # encoded here: 6.2 GB, 16 s
        ("h264", 16384, 16129, False),  # padded to 16130: FFmpeg's "Picture size ... is invalid"
        ("h264", 16384, 16384, False),  # `--size 16384`: nothing delivers it
        ("h264", 16254, 16254, True),
        ("h264", 16255, 16255, False),
        ("prores", 65534, 3960, True),
        ("prores", 3960, 65534, True),
        ("prores", 65534, 3962, False),
        ("hap", 65532, 3960, True),
        ("hap", 16252, 16252, True),
        ("hap", 16253, 16253, False),  # padded to 16256
    ],
)
def test_size_limits_are_the_measured_ones(codec, width, height, ok):
    if ok:
        check_size(codec, width, height)
    else:
        with pytest.raises(UsageError, match=rf"{codec} cannot encode {width}x{height} .*2\^28"):
            check_size(codec, width, height)


@pytest.mark.parametrize("name", ["tags.mp4", "tags.mov"])
@pytest.mark.parametrize(("transfer", "trc"), [("srgb", ColorTrc.BT709), ("none", ColorTrc.UNSPECIFIED)])
def test_h264_tags_matrix_primaries_transfer_and_range(tmp_path, name, transfer, trc):
    """As the module says: BT.709 matrix and primaries, limited range, the BT.709 transfer
    for sRGB-encoded light and "unspecified" for data; read back from the file."""
    clip = make_clip(tmp_path / "grey", frames=lambda i: np.full((16, 16, 3), 0.2, np.float32), count=2)
    out = encode_clip(clip, tmp_path / name, "h264", transfer=transfer)
    with av.open(str(out)) as container:
        context = container.streams.video[0].codec_context
        tags = (context.colorspace, context.color_primaries, context.color_trc, context.color_range)
    assert tags == (Colorspace.ITU709, ColorPrimaries.BT709, trc, ColorRange.MPEG)


@contextlib.contextmanager
def full_disk(folder: Path, size: str = "4k"):
    """A tmpfs of `size` mounted on `folder` (the tests run as root), unmounted after."""
    folder.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], check=True)
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


@pytest.mark.parametrize("codec", ["hap", "h264"])
def test_a_full_disk_names_the_video_that_was_not_written(tmp_path, codec):
    noise = np.random.default_rng(0).random((64, 64, 3), dtype=np.float32)
    clip = make_clip(tmp_path / "noise", frames=lambda i: np.roll(noise, i, axis=1), count=6)
    with full_disk(tmp_path / "full") as full:
        out = full / f"loop{SUFFIX[codec]}"
        with pytest.raises(OutputError) as error:
            encode_clip(clip, out, codec)
        assert list(full.iterdir()) == []  # no temp, no half-written video
    message = str(error.value)
    assert message.startswith(f"cannot write {out}: ffmpeg ({codec}) failed"), message
    assert message.endswith("No space left on device") and "\n" not in message and "@ 0x" not in message


def test_a_release_sweeps_what_killed_encodes_left(tmp_path):
    """Temp videos of processes that are gone, and the scratch folders earlier versions made,
    are removed; a temp of a running process (another encode into the same folder) is not."""
    from irep3d.encode import clean_stale_videos

    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = tmp_path / f".a.h264.mp4.{dead.pid}-1.tmp.mp4"
    running = tmp_path / f".b.prores.mov.{os.getpid()}-7.tmp.mov"
    scratch = tmp_path / ".encode-k7er8w1q"
    for path in (stale, running):
        path.write_bytes(b"partial")
    scratch.mkdir()
    (scratch / "video.mp4").write_bytes(b"partial")
    kept = tmp_path / "a.h264.mp4"
    kept.write_bytes(b"a finished loop")
    assert clean_stale_videos(tmp_path) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([running.name, kept.name])
