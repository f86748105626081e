"""The clip folder: frame names, finished frames, reading frames back, clip.json and resume."""

from pathlib import Path

import numpy as np
import pytest

from irep3d.clip import CLIP_FORMAT, Clip, frame_name
from irep3d.errors import OutputError, UsageError
from irep3d.exr_clip import write_exr


def temps(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def write_frames(clip: Clip, count: int, scale: float = 1.0, offset: float = 0.0) -> None:
    for i in range(1, count + 1):
        rgb = np.full((4, 6, 3), i / count, np.float32) * scale + offset
        rgb[0, 0] = [offset, offset + scale, offset]
        write_exr(clip.frame_path(i), rgb)


def test_frame_names_are_one_based_and_sort_in_time_order(tmp_path):
    assert frame_name("walk", 1) == "walk_00001.exr"
    assert Clip(tmp_path / "walk").frame_path(12345) == tmp_path / "walk" / "walk_12345.exr"
    names = [frame_name("walk", i) for i in (1, 2, 10, 100, 9999)]
    assert names == sorted(names)
    with pytest.raises(ValueError, match="start at 1"):
        frame_name("walk", 0)


def test_frames_are_listed_in_order_and_gaps_refused(tmp_path):
    clip = Clip(tmp_path / "walk")
    write_frames(clip, 12)
    assert [p.name for p in clip.frames()] == [frame_name("walk", i) for i in range(1, 13)]
    assert clip.finished(20) == set(range(1, 13))
    clip.frame_path(7).unlink()
    assert clip.finished(20) == set(range(1, 13)) - {7}
    with pytest.raises(OutputError, match="missing frame 7"):
        clip.frames()
    with pytest.raises(OutputError, match="no EXR frames"):
        Clip(tmp_path / "empty").create().frames()


def test_manifest_starts_with_format_version_and_name_and_keeps_key_order(tmp_path):
    clip = Clip(tmp_path / "walk")
    path = clip.write_manifest({"fps": 30, "channels": [3, 1], "frames": 8})
    assert path == tmp_path / "walk" / "clip.json"
    data = clip.read_manifest()
    assert list(data) == ["format", "version", "name", "fps", "channels", "frames"]
    assert data["format"] == CLIP_FORMAT and data["name"] == "walk"
    assert path.read_text().startswith('{\n  "format"')  # indent 2
    assert temps(clip.path) == []
    assert Clip(tmp_path / "nowhere").read_manifest() is None


def test_an_unchanged_manifest_is_not_rewritten(tmp_path):
    """A resumed job leaves finished folders untouched: same content, the same file (its
    inode: a rewrite is a new file renamed into place), so the same mtime."""
    clip = Clip(tmp_path)
    path = clip.write_manifest({"fps": 30})
    before = path.stat()
    clip.write_manifest({"fps": 30})
    assert (path.stat().st_ino, path.stat().st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    clip.write_manifest({"fps": 60})
    assert clip.read_manifest()["fps"] == 60 and path.stat().st_ino != before.st_ino


def test_manifest_rewrite_is_atomic(tmp_path, monkeypatch):
    clip = Clip(tmp_path)
    clip.write_manifest({"fps": 30})

    def fail(self, *args, **kwargs):
        with open(self, "wb") as fh:  # half written, then the disk fills up
            fh.write(b'{"fps": ')
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Path, "write_bytes", fail)
    with pytest.raises(OutputError, match=r"clip\.json"):
        clip.write_manifest({"fps": 60})
    monkeypatch.undo()
    assert clip.read_manifest()["fps"] == 30
    assert temps(tmp_path) == []


@pytest.mark.parametrize("text", ['{"fps": 3', "[1, 2]"])
def test_corrupt_manifest_is_an_output_error(tmp_path, text):
    (tmp_path / "clip.json").write_text(text)
    with pytest.raises(OutputError, match=r"clip\.json"):
        Clip(tmp_path).read_manifest()


def test_a_clip_of_other_settings_is_refused_naming_the_keys(tmp_path):
    clip = Clip(tmp_path / "walk")
    clip.write_manifest({"layer": "L3", "psi": 0.7, "frames": 8})
    assert clip.check_identity({"layer": "L3", "psi": 0.7})["frames"] == 8
    with pytest.raises(UsageError, match=r"other settings \(layer, psi\); use another --out"):
        clip.check_identity({"layer": "L4", "psi": 1.0})
    assert Clip(tmp_path / "new").check_identity({"layer": "L4"}) is None


def test_optional_identity_keys_resume_older_clips(tmp_path):
    """A key recorded only when its option is used: absent means the "unused" value."""
    clip = Clip(tmp_path)
    clip.write_manifest({"layer": "L3"})  # written before `cutoff` existed
    clip.check_identity({"layer": "L3", "cutoff": None}, unused={"cutoff": None})
    with pytest.raises(UsageError, match=r"\(cutoff\)"):
        clip.check_identity({"layer": "L3", "cutoff": 4}, unused={"cutoff": None})


def test_values_rescale_a_raw_clip_by_its_percentiles(tmp_path):
    raw = Clip(tmp_path / "raw")
    write_frames(raw, 5, scale=200.0, offset=-100.0)
    raw.write_manifest({"norm": "none"})
    mapped = Clip(tmp_path / "mapped")
    write_frames(mapped, 5)
    mapped.write_manifest({"norm": "global"})
    assert raw.is_raw() and not mapped.is_raw()
    low, high = raw.display_range()
    assert (low > -100.5).all() and (high < 100.5).all() and (high > low).all()
    raw_values = list(raw.values())
    assert len(raw_values) == 5 and raw_values[0].dtype == np.float32
    assert min(v.min() for v in raw_values) >= -0.02 and max(v.max() for v in raw_values) <= 1.02
    mapped_values = list(mapped.values())
    np.testing.assert_allclose(mapped_values[-1][1:, 1:], 1.0, atol=1e-3)  # already 0..1: untouched


def test_finished_frames_never_count_temps_or_other_clips(tmp_path):
    clip = Clip(tmp_path, "walk")
    for i in (1, 2, 4):
        write_exr(clip.frame_path(i), np.zeros((4, 4, 3), np.float32))
    for name in (".walk_00003.exr.4242-1.tmp.exr", ".walk_00005.exr.99-12.tmp.exr", "other_00003.exr"):
        (tmp_path / name).write_bytes(b"partial")
    assert clip.finished(5) == {1, 2, 4}
    assert clip.finished(2) == {1, 2}
    assert Clip(tmp_path / "absent", "walk").finished(5) == set()


def test_a_renamed_folder_finds_its_one_clip(tmp_path):
    clip = Clip(tmp_path / "walk")
    write_frames(clip, 3)
    renamed = tmp_path / "renamed"
    clip.path.rename(renamed)
    (renamed / "._walk_00001.exr").write_bytes(b"macOS AppleDouble metadata, not a frame")
    assert [p.name for p in Clip(renamed).frames()] == ["walk_00001.exr", "walk_00002.exr", "walk_00003.exr"]
    assert Clip(renamed).read_manifest() is None
    write_exr(renamed / "other_00001.exr", np.zeros((4, 6, 3), np.float32))
    with pytest.raises(OutputError, match="several clips"):
        Clip(renamed).frames()


def cut(path: Path, keep: float = 0.5) -> None:
    """Cut a file short, as a full disk or a killed copy leaves it."""
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def test_a_damaged_frame_is_not_finished_and_is_named_when_read(tmp_path):
    clip = Clip(tmp_path / "walk")
    write_frames(clip, 6)
    clip.write_manifest({"layer": "L7_148_64", "frames": 6, "complete": True})
    cut(clip.frame_path(3))
    clip.frame_path(5).write_bytes(b"not an EXR at all")
    assert clip.finished(6) == {1, 2, 4, 6}  # a resumed run renders 3 and 5 again
    with pytest.raises(OutputError) as caught:
        clip.frames()
    message = str(caught.value)
    assert message.startswith(f"damaged frame {clip.frame_path(3)}, which is truncated")
    assert "(and 1 more)" in message and "`irep3d maps`" in message


@pytest.mark.parametrize(
    ("manifest", "done"),
    [({"frames": 6, "complete": False}, 4), ({"frames": 9, "complete": True}, 4)],
    ids=["complete-false", "fewer-files-than-frames"],
)
def test_an_incomplete_clip_is_refused_naming_what_is_done(tmp_path, manifest, done):
    clip = Clip(tmp_path / "walk")
    write_frames(clip, 4)
    clip.write_manifest({"recipe_fingerprint": "f00d", **manifest})
    with pytest.raises(OutputError) as caught:
        clip.frames()
    assert str(caught.value) == (
        f"clip {clip.path} is incomplete: {done} of its {manifest['frames']} frames are finished; "
        "run the same `irep3d composite` (or `irep3d release`) command again to finish it"
    )
