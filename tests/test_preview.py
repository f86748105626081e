"""Previews of a clip: GIF and MP4 with the right frames, timing, size and display mapping."""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from irep3d.clip import Clip
from irep3d.display import quantise, srgb_oetf
from irep3d.errors import OutputError, UsageError
from irep3d.exr_clip import write_exr
from irep3d.preview import make_preview

FRAMES = 6


def frame(index: int, size: int = 32) -> np.ndarray:
    """A distinct frame per index (GIF writers merge identical consecutive frames)."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
    return np.stack([x, y, np.full_like(x, index / FRAMES)], axis=-1)


def make_clip(folder: Path, frames: int = FRAMES, manifest: dict | None = None, size: int = 32) -> Path:
    for i in range(1, frames + 1):
        write_exr(Clip(folder).frame_path(i), frame(i, size), {"frame": i})
    if manifest is not None:
        Clip(folder).write_manifest(manifest)
    return folder


def gif_frames(path: Path) -> tuple[list[np.ndarray], list[int]]:
    with Image.open(path) as gif:
        images, durations = [], []
        for i in range(gif.n_frames):
            gif.seek(i)
            images.append(np.asarray(gif.convert("RGB")))
            durations.append(gif.info["duration"])
        assert gif.info.get("loop") == 0
    return images, durations


def test_gif_has_every_frame_at_the_manifest_fps(tmp_path):
    clip = make_clip(tmp_path / "walk", manifest={"fps": 10, "norm": "frame"})
    out = make_preview(clip, tmp_path / "walk.gif")
    assert out == tmp_path / "walk.gif"
    images, durations = gif_frames(out)
    assert len(images) == FRAMES
    assert durations == [100] * FRAMES
    assert images[0].shape == (32, 32, 3)
    # the loops' mapping (irep3d.display): blue carries index / FRAMES, through the sRGB
    # curve; x and y ramps in red and green
    for i, image in enumerate(images, start=1):
        assert abs(int(image[16, 16, 2]) - int(quantise(srgb_oetf(np.float32(i / FRAMES))))) <= 8
    assert image[0, 0, 0] < 48 and image[0, 31, 0] > 220  # GIF palettes are approximate
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_fps_and_size_arguments_override(tmp_path):
    clip = make_clip(tmp_path / "walk", manifest={"fps": 10}, size=40)
    seen: list[tuple[int, int]] = []
    make_preview(
        clip,
        tmp_path / "p.gif",
        fps=15,
        size=20,
        progress=lambda stage, done, total: seen.append((done, total)),
    )
    images, durations = gif_frames(tmp_path / "p.gif")
    assert durations == [70] * FRAMES  # 66.7 ms rounded to GIF's 1/100 s, not truncated to 60
    assert images[0].shape == (20, 20, 3)
    assert seen == [(i, FRAMES) for i in range(1, FRAMES + 1)]


def test_mp4_decodes_to_every_frame(tmp_path):
    clip = make_clip(tmp_path / "walk", manifest={"fps": 24})
    out = make_preview(clip, tmp_path / "walk.mp4")
    with av.open(str(out)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        assert stream.average_rate == 24
        decoded = list(container.decode(video=0))
    assert len(decoded) == FRAMES
    assert (decoded[0].width, decoded[0].height) == (32, 32)
    assert decoded[0].format.name == "yuv420p"
    last = decoded[-1].to_ndarray(format="rgb24")
    assert abs(int(last[16, 16, 2]) - 255) <= 12  # blue = frame / FRAMES = 1 in the last frame


def test_mp4_pads_odd_sizes_to_even(tmp_path):
    clip = make_clip(tmp_path / "walk", frames=3, size=33)
    out = make_preview(clip, tmp_path / "walk.mp4", fps=12.5)
    with av.open(str(out)) as container:
        decoded = list(container.decode(video=0))
        assert container.streams.video[0].average_rate == 12.5
    assert len(decoded) == 3
    assert (decoded[0].width, decoded[0].height) == (34, 34)


def test_raw_clips_are_rescaled_by_percentiles(tmp_path):
    """norm "none": values far outside [0, 1] still fill the display range."""
    clip = tmp_path / "raw"
    for i in range(1, 4):
        write_exr(Clip(clip, "raw").frame_path(i), frame(i) * 200.0 - 100.0)
    Clip(clip).write_manifest({"fps": 10, "norm": "none"})
    images, _ = gif_frames(make_preview(clip, tmp_path / "raw.gif"))
    red = images[0][..., 0]
    assert red.min() < 10 and red.max() > 245  # -100..100 spread over 0..255, not clamped to 0/255
    assert 60 < red[:, 16].mean() < 200


def test_bad_suffix_is_a_usage_error(tmp_path):
    clip = make_clip(tmp_path / "walk")
    with pytest.raises(UsageError, match=r"\.mp4 or \.gif"):
        make_preview(clip, tmp_path / "walk.avi")


@pytest.mark.parametrize("fps", [0, -5, "fast"])
def test_bad_fps_is_a_usage_error(tmp_path, fps):
    clip = make_clip(tmp_path / "walk", frames=2)
    with pytest.raises(UsageError, match="fps"):
        make_preview(clip, tmp_path / "walk.gif", fps=fps)


def test_empty_or_absent_folder_is_an_output_error(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / ".empty_00001.exr.7-1.tmp.exr").write_bytes(b"a temp is not a frame")
    with pytest.raises(OutputError, match="empty") as info:
        make_preview(tmp_path / "empty", tmp_path / "x.gif")
    assert "\n" not in str(info.value)
    with pytest.raises(OutputError, match="absent"):
        make_preview(tmp_path / "absent", tmp_path / "x.gif")
    assert not (tmp_path / "x.gif").exists()


def test_gap_in_numbering_is_an_output_error(tmp_path):
    clip = make_clip(tmp_path / "walk", frames=4)
    Clip(clip, "walk").frame_path(3).unlink()
    with pytest.raises(OutputError, match="missing frame 3"):
        make_preview(clip, tmp_path / "walk.gif")


@pytest.mark.parametrize("suffix", [".gif", ".mp4"])
def test_a_preview_shows_what_the_encoded_loop_shows(tmp_path, suffix):
    """One display mapping: linear 0.214 is code value 128 in the preview as in the loop
    (the preview used to clamp only: 55, visibly darker than the loop it previewed)."""
    folder = tmp_path / "grey"
    for i in range(1, 4):
        write_exr(Clip(folder).frame_path(i), np.full((16, 16, 3), 0.214, np.float32))
    Clip(folder).write_manifest({"fps": 10, "norm": "global", "frames": 3})
    out = make_preview(folder, tmp_path / f"grey{suffix}")
    if suffix == ".gif":
        shown = gif_frames(out)[0][0]
    else:
        with av.open(str(out)) as container:
            shown = next(container.decode(video=0)).to_ndarray(format="rgb24")
    assert abs(int(shown[8, 8, 1]) - 128) <= 2


def test_a_render_folder_previews_at_the_fps_it_records(tmp_path):
    """Rendered frames (frame_#####.png and render.json) play at the scene's fps, as its
    loop does (`irep3d encode`), shown as they are (Blender's PNGs are display-referred)."""
    folder = tmp_path / "renders" / "scene"
    folder.mkdir(parents=True)
    for n in range(1, 4):
        Image.fromarray(np.full((16, 24, 3), 60 * n, np.uint8)).save(folder / f"frame_{n:05d}.png")
    manifest = {
        "format": "irep3d-render",
        "version": 1,
        "frames": [1, 3],
        "fps": 10.0,
        "files": "frame_#####.png",
    }
    (folder / "render.json").write_text(json.dumps(manifest))
    images, durations = gif_frames(make_preview(folder, tmp_path / "scene.gif"))
    assert durations == [100] * 3  # 10 fps, not the default 30
    assert all(abs(image.mean() - 60 * n) <= 2 for n, image in enumerate(images, start=1))


def test_a_folder_of_neither_layout_names_both(tmp_path):
    old = tmp_path / "render" / "blob"  # what the add-on's Render button used to write
    old.mkdir(parents=True)
    (old / "blob_0001.png").write_bytes(b"")
    with pytest.raises(OutputError) as info:
        make_preview(old, tmp_path / "x.gif")
    assert str(info.value) == (
        f"no frames in {old}: give a clip folder (<clip>_00001.exr, … and clip.json, from `irep3d maps`) "
        "or a render folder (frame_00001.png or .exr, … and render.json, from `irep3d blender render` "
        "or the add-on's Render button)"
    )
