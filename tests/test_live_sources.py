"""`irep3d.live.sources`: what each kind of SOURCE folder plays, and how each frame looks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from clip_util import make_clip
from live_util import stripes_clip, write_pack
from PIL import Image

from irep3d.display import display_frame
from irep3d.errors import OutputError
from irep3d.live.sources import FolderFeed, is_model, read_source


def test_a_clip_folder_plays_its_frames_as_encode_delivers_them(tmp_path: Path) -> None:
    folder = make_clip(tmp_path / "blob", frames=5, size=(30, 20), fps=25.0, loop=False)
    (clip,) = read_source(folder)
    assert (clip.name, len(clip), clip.fps, clip.loop, clip.width, clip.height) == (
        "blob",
        5,
        25.0,
        False,
        30,
        20,
    )
    for i in range(5):
        assert np.array_equal(clip.pixels(i, (30, 20)), display_frame(folder, i))
    assert read_source(folder, fps=60.0)[0].fps == 60.0  # --fps sets every clip's rate


def test_a_raw_clip_is_mapped_by_the_range_of_the_whole_clip(tmp_path: Path) -> None:
    folder = make_clip(tmp_path / "raw", frames=6, size=(16, 16))
    manifest = json.loads((folder / "clip.json").read_text())
    (folder / "clip.json").write_text(json.dumps({**manifest, "norm": "none"}))
    (clip,) = read_source(folder)
    for i in (4, 0, 5):  # any order: each frame by the same range, as `encode` maps it
        assert np.array_equal(clip.pixels(i, (16, 16)), display_frame(folder, i))


def test_a_pack_plays_its_clips_in_pack_json_order(tmp_path: Path) -> None:
    root = tmp_path / "pack"
    blob = make_clip(root / "b", name="blob", frames=3)
    stripes = stripes_clip(root / "a", frames=4, size=(32, 32))
    write_pack(root, [("second", stripes), ("first", blob)])
    clips = read_source(root)
    assert [(c.name, len(c), c.folder) for c in clips] == [("second", 4, stripes), ("first", 3, blob)]


def test_a_release_plays_each_loop_once_from_the_frames_it_was_encoded_from(tmp_path: Path) -> None:
    root = tmp_path / "release"
    pack_clip = make_clip(root / "maps" / "locked" / "L5_clip01", name="L5_clip01", frames=3)
    composite = make_clip(root / "composites" / "hardlight_01", name="hardlight_01", frames=3)
    renders = root / "renders" / "locked-L5_clip01__edge"
    renders.mkdir(parents=True)
    for i in range(1, 4):
        Image.fromarray(np.full((8, 12, 3), 40 * i, np.uint8)).save(renders / f"frame_{i:05d}.png")
    loops = [
        {"name": "locked/L5_clip01", "kind": "maps", "codec": "h264", "folder": "maps/locked/L5_clip01"},
        {
            "name": "locked/L5_clip01",
            "kind": "maps",
            "codec": "hap",
            "folder": "maps/locked/L5_clip01",
        },  # twice delivered
        {
            "name": "comp/hardlight_01",
            "kind": "composite",
            "codec": "h264",
            "folder": "composites/hardlight_01",
        },
        {"name": "scene/locked-L5_clip01__edge", "kind": "scene", "folder": "renders/locked-L5_clip01__edge"},
    ]
    (root / "release.json").write_text(json.dumps({"format": "irep3d-release", "loops": loops}))
    clips = read_source(root)
    assert [(c.name, c.folder) for c in clips] == [
        ("locked/L5_clip01", pack_clip),
        ("comp/hardlight_01", composite),
        ("scene/locked-L5_clip01__edge", renders),
    ]
    scene = clips[2]
    assert scene.rendered and scene.pixels(1, (12, 8))[0, 0].tolist() == [80, 80, 80]  # PNGs as they are


def test_size_modes_reframe_each_frame(tmp_path: Path) -> None:
    folder = make_clip(tmp_path / "blob", frames=2, size=(32, 32), rgb=(1.0, 1.0, 1.0))
    (clip,) = read_source(folder)
    padded = clip.pixels(0, (40, 20), "pad")  # 20x20 of white in the middle, black each side
    assert padded.shape == (20, 40, 3)
    assert padded[:, :9].max() == 0 and padded[:, 31:].max() == 0 and padded[:, 12:28].min() == 255
    assert clip.pixels(0, (40, 20), "fill").min() == 255  # covers it all
    feed = FolderFeed([clip], (41, 20), "fit", budget_bytes=1 << 20)  # an odd width is made even
    try:
        feed.focus(0, 0, 1, None)
        assert feed.cache.wait_ready(0, 10)
        assert feed.get(0, 0).shape == (20, 2 * 42)  # UYVY: 2 bytes a pixel
    finally:
        feed.close()


def test_sources_that_cannot_be_played_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(OutputError, match="is not a folder"):
        read_source(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(OutputError, match="no frames"):
        read_source(tmp_path / "empty")
    (tmp_path / "pack.json").write_text('{"clips": []}')
    with pytest.raises(OutputError, match="lists no clips"):
        read_source(tmp_path)
    older = tmp_path / "older"  # release.json of an irep3d that did not record the folders
    older.mkdir()
    (older / "release.json").write_text(json.dumps({"loops": [{"name": "locked/a", "kind": "maps"}]}))
    with pytest.raises(
        OutputError, match="does not say which frames loop locked/a was made of; run the same"
    ):
        read_source(older)


def test_models_are_told_from_folders(tmp_path: Path) -> None:
    assert is_model("builtin:sg3t-256") and is_model("released:sg3t-1024") and is_model("net.pkl")
    assert not is_model(str(tmp_path)) and not is_model(str(tmp_path / "clip"))
