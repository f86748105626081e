"""EXR clip files: half-float round trips, attributes, atomic writes, resume, the writer pool."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import ClassVar

import numpy as np
import OpenEXR
import pytest

from irep3d import exr_clip
from irep3d.clip import Clip
from irep3d.errors import OutputError, UsageError
from irep3d.exr_clip import COMPRESSIONS, ExrWriter, parse_compression, read_exr, write_exr
from irep3d.files import remove_temps

LOSSY = {"b44", "b44a", "dwaa", "dwab"}
ATTRS = {
    "model": "builtin:sg3t-256",
    "layer": "L5_84_64",
    "channels": ["3", "17", "40"],
    "seeds": "1,2",
    "frame": 7,
}


def ramp(height: int = 24, width: int = 40, shift: float = 0.0) -> np.ndarray:
    """A float32 test image with different content in every channel, row and column."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    return np.stack([x / width + shift, y / height, np.sin(x * 0.3 + y * 0.7 + shift)], axis=-1)


def temps(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".tmp" in p.name)


def wait_until(condition, what: str) -> None:
    """Poll a condition that another thread will make true (bounded, so a bug fails, not hangs)."""
    deadline = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.001)


def test_parse_compression_and_unknown_names():
    assert parse_compression("zip") == OpenEXR.ZIP_COMPRESSION
    assert parse_compression(" PIZ ") == OpenEXR.PIZ_COMPRESSION
    assert "zstd" not in COMPRESSIONS and "htj2k" not in COMPRESSIONS  # unreadable in Blender 5.0
    with pytest.raises(UsageError, match="none, rle, zips, zip, piz"):
        parse_compression("zstd")


# ----------------------------------------------------------------------------- round trips


def test_round_trip_is_half_float_with_attributes(tmp_path):
    rgb = ramp() * 3.0
    path = tmp_path / "walk_00007.exr"
    write_exr(path, rgb, ATTRS)

    exr = OpenEXR.File(str(path), separate_channels=True)
    assert {name: ch.type() for name, ch in exr.channels().items()} == {name: OpenEXR.HALF for name in "RGB"}
    header = exr.header()
    assert header["compression"] == OpenEXR.ZIP_COMPRESSION
    assert header["type"] == OpenEXR.scanlineimage

    pixels, header = read_exr(path)
    assert pixels.dtype == np.float16 and pixels.shape == (24, 40, 3)
    np.testing.assert_array_equal(pixels, rgb.astype(np.float16))
    assert header["irep3d:model"] == "builtin:sg3t-256"
    assert header["irep3d:layer"] == "L5_84_64"
    assert header["irep3d:channels"] == ["3", "17", "40"]
    assert header["irep3d:seeds"] == "1,2"
    assert header["irep3d:frame"] == 7


@pytest.mark.parametrize(
    "view",
    [
        lambda x: x.transpose(1, 0, 2),  # what t.permute(...).numpy() gives
        lambda x: x[:, ::-1],
        lambda x: np.asfortranarray(x),
        lambda x: np.concatenate([x, x], axis=2)[..., 1:4],  # channel slice of a wider array
    ],
    ids=["transpose", "reversed", "fortran", "channel-slice"],
)
def test_non_contiguous_input_is_written_correctly(tmp_path, view):
    """The bindings write strided arrays wrong with no error; write_exr must not."""
    source = ramp(16, 20).astype(np.float16)
    rgb = view(source)
    assert not rgb.flags.c_contiguous
    write_exr(tmp_path / "x.exr", rgb)
    pixels, _ = read_exr(tmp_path / "x.exr")
    np.testing.assert_array_equal(pixels, np.ascontiguousarray(rgb))


@pytest.mark.parametrize("name", list(COMPRESSIONS))
def test_every_compression_round_trips(tmp_path, name):
    y, x = np.mgrid[0:32, 0:32].astype(np.float32) / 32  # smooth, so lossy codecs stay close
    rgb = np.stack([x, y, (x + y) / 2 + 0.25], axis=-1)
    write_exr(tmp_path / "c.exr", rgb, {"layer": "L1"}, compression=name)
    pixels, header = read_exr(tmp_path / "c.exr")
    assert header["compression"] == COMPRESSIONS[name]
    assert header["irep3d:layer"] == "L1"
    expected = rgb.astype(np.float16).astype(np.float32)
    got = pixels.astype(np.float32)
    if name in LOSSY:
        assert np.abs(got - expected).max() < 0.05
    else:
        np.testing.assert_array_equal(got, expected)


def test_attribute_values_are_stored_faithfully(tmp_path):
    """The bindings drop lists of ints and zero big ints; write_exr stores them as strings."""
    attrs = {
        "seeds": [3, 17],
        "big": 2**40,
        "count": np.int64(5),
        "psi": np.float32(0.5),
        "flag": True,
        "empty": [],
        "irep3d:already": "kept",
    }
    write_exr(tmp_path / "a.exr", ramp(4, 4), attrs)
    _, header = read_exr(tmp_path / "a.exr")
    assert header["irep3d:seeds"] == ["3", "17"]
    assert header["irep3d:big"] == str(2**40)
    assert header["irep3d:count"] == 5
    assert header["irep3d:psi"] == 0.5
    assert header["irep3d:flag"] == 1
    assert header["irep3d:empty"] == ""
    assert header["irep3d:already"] == "kept"
    with pytest.raises(TypeError, match="unsupported type"):
        write_exr(tmp_path / "b.exr", ramp(4, 4), {"bad": {"a": 1}})


@pytest.mark.parametrize(
    ("rgb", "match"),
    [
        (np.zeros((4, 4), np.float32), "shape"),
        (np.zeros((4, 4, 2), np.float32), "shape"),
        (np.zeros((4, 4, 3), np.uint8), "dtype"),
    ],
)
def test_bad_arrays_are_refused(tmp_path, rgb, match):
    # A bad array is a bug of the calling code (ValueError/TypeError), never a user error.
    with pytest.raises((ValueError, TypeError), match=match):
        write_exr(tmp_path / "x.exr", rgb)
    assert list(tmp_path.iterdir()) == []


def test_other_tools_read_the_files(tmp_path):
    """exrheader (OpenEXR) and oiiotool (OpenImageIO) see the size, HALF and our attributes."""
    tools = [t for t in ("exrheader", "oiiotool") if shutil.which(t)]
    if not tools:
        pytest.skip("neither exrheader nor oiiotool is installed (apt-get install openexr openimageio-tools)")
    path = tmp_path / "walk_00001.exr"
    write_exr(path, ramp(24, 40), ATTRS)
    if "exrheader" in tools:
        out = subprocess.run(["exrheader", str(path)], capture_output=True, text=True, check=True).stdout
        assert "dataWindow (type box2i): (0 0) - (39 23)" in out
        assert 'irep3d:layer (type string): "L5_84_64"' in out
        assert "R, 16-bit floating-point" in out
        assert "compression (type compression): zip" in out
    if "oiiotool" in tools:
        out = subprocess.run(
            ["oiiotool", "--info", "-v", str(path)], capture_output=True, text=True, check=True
        ).stdout
        assert re.search(r"40\s+x\s+24, 3 channel, half openexr", out), out
        assert 'irep3d:layer: "L5_84_64"' in out
        assert "irep3d:frame: 7" in out


def test_read_exr_errors(tmp_path):
    (tmp_path / "junk.exr").write_bytes(b"not an exr")
    with pytest.raises(OutputError, match=r"junk\.exr"):
        read_exr(tmp_path / "junk.exr")
    with pytest.raises(OutputError, match=r"missing\.exr"):
        read_exr(tmp_path / "missing.exr")


# ----------------------------------------------------------------------------- atomicity


class FailingFile:
    """Stands in for OpenEXR.File: writes half a file to the temp, then fails."""

    error: ClassVar[BaseException] = RuntimeError("simulated encoder failure")
    seen: ClassVar[list[str]] = []

    def __init__(self, header, channels):
        pass

    def write(self, filename: str) -> None:
        FailingFile.seen.append(filename)
        Path(filename).write_bytes(b"v/1\x01partial")
        raise FailingFile.error


@pytest.mark.parametrize("error", [RuntimeError("disk full"), KeyboardInterrupt()])
def test_failed_write_leaves_no_file_and_no_temp(tmp_path, monkeypatch, error):
    monkeypatch.setattr(OpenEXR, "File", FailingFile)
    monkeypatch.setattr(FailingFile, "error", error)
    monkeypatch.setattr(FailingFile, "seen", [])
    expected = OutputError if isinstance(error, RuntimeError) else KeyboardInterrupt
    with pytest.raises(expected):
        write_exr(tmp_path / "walk_00001.exr", ramp())
    assert len(FailingFile.seen) == 1 and Path(FailingFile.seen[0]).parent == tmp_path
    assert Path(FailingFile.seen[0]).name.startswith(".walk_00001.exr.")  # a hidden temp was used
    assert list(tmp_path.iterdir()) == []


def test_failed_rewrite_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "walk_00001.exr"
    write_exr(path, ramp())
    before = path.read_bytes()
    monkeypatch.setattr(OpenEXR, "File", FailingFile)
    with pytest.raises(OutputError):
        write_exr(path, ramp(shift=1.0))
    assert path.read_bytes() == before
    assert temps(tmp_path) == []


def test_unwritable_folder_is_one_line_naming_the_path(tmp_path):
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where the folder should be")
    with pytest.raises(OutputError, match="blocker") as info:
        write_exr(blocker / "walk_00001.exr", ramp())
    assert "\n" not in str(info.value)


def test_remove_temps_sweeps_only_temps(tmp_path):
    for i in (1, 2, 4):
        write_exr(Clip(tmp_path, "walk").frame_path(i), ramp(4, 4))
    planted = [
        ".walk_00003.exr.4242-1.tmp.exr",  # an interrupted frame
        ".walk_00005.exr.99-12.tmp.exr",
        ".clip.json.4242-2.tmp.json",  # an interrupted manifest
    ]
    for name in planted:
        (tmp_path / name).write_bytes(b"partial")
    (tmp_path / "notes.txt").write_text("kept")
    (tmp_path / "other_00003.exr").write_bytes(b"another clip's frame")

    assert remove_temps(tmp_path) == 3
    assert temps(tmp_path) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "notes.txt",
        "other_00003.exr",
        "walk_00001.exr",
        "walk_00002.exr",
        "walk_00004.exr",
    ]
    assert remove_temps(tmp_path) == 0
    assert remove_temps(tmp_path / "absent") == 0


# ----------------------------------------------------------------------------- ExrWriter


def test_writer_writes_every_frame(tmp_path):
    done: list[Path] = []
    with ExrWriter(workers=2, on_done=done.append) as writer:
        for i in range(1, 7):
            writer.submit(Clip(tmp_path, "walk").frame_path(i), ramp(shift=i), {"frame": i})
    assert writer.completed == 6
    assert sorted(done) == [Clip(tmp_path, "walk").frame_path(i) for i in range(1, 7)]
    assert Clip(tmp_path, "walk").finished(6) == set(range(1, 7))
    assert temps(tmp_path) == []
    for i in range(1, 7):
        pixels, header = read_exr(Clip(tmp_path, "walk").frame_path(i))
        np.testing.assert_array_equal(pixels, ramp(shift=i).astype(np.float16))
        assert header["irep3d:frame"] == i


class GatedWrites:
    """Replaces exr_clip._write_half: records writes and holds chosen frames at a gate."""

    def __init__(self, hold: set[str]):
        self.hold = hold
        self.gate = threading.Event()
        self.started: list[str] = []
        self.running = 0
        self.most_running = 0
        self.lock = threading.Lock()
        self.real = exr_clip._write_half

    def __call__(self, path, half, header):
        with self.lock:
            self.started.append(path.name)
            self.running += 1
            self.most_running = max(self.most_running, self.running)
        try:
            if path.name in self.hold:
                assert self.gate.wait(10), "gate never opened"
            self.real(path, half, header)
        finally:
            with self.lock:
                self.running -= 1


def test_writer_copies_the_frame_at_submit(tmp_path, monkeypatch):
    """The caller may reuse its buffer as soon as submit returns."""
    writes = GatedWrites(hold={"a.exr"})
    monkeypatch.setattr(exr_clip, "_write_half", writes)
    buffer = ramp().astype(np.float16)
    expected = buffer.copy()
    with ExrWriter(workers=1) as writer:
        writer.submit(tmp_path / "a.exr", buffer)
        buffer[:] = 0  # before the write runs
        writes.gate.set()
    np.testing.assert_array_equal(read_exr(tmp_path / "a.exr")[0], expected)


def test_writer_runs_writes_in_parallel(tmp_path, monkeypatch):
    """Two frames must be in the encoder at once: each waits at a barrier for the other."""
    barrier = threading.Barrier(2, timeout=10)
    real = exr_clip._write_half

    def meet_then_write(path, half, header):
        barrier.wait()  # BrokenBarrierError (re-raised by close) if the writes were serial
        real(path, half, header)

    monkeypatch.setattr(exr_clip, "_write_half", meet_then_write)
    with ExrWriter(workers=2) as writer:
        writer.submit(tmp_path / "a.exr", ramp())
        writer.submit(tmp_path / "b.exr", ramp())
    assert writer.completed == 2


def test_submit_blocks_while_the_queue_is_full(tmp_path, monkeypatch):
    writes = GatedWrites(hold={"f1.exr"})
    monkeypatch.setattr(exr_clip, "_write_half", writes)
    third_returned = threading.Event()
    with ExrWriter(workers=1, max_pending=2) as writer:
        writer.submit(tmp_path / "f1.exr", ramp())  # running, held at the gate
        writer.submit(tmp_path / "f2.exr", ramp())  # queued: now 2 pending
        assert writer.pending == 2

        def submit_third():
            writer.submit(tmp_path / "f3.exr", ramp())
            third_returned.set()

        helper = threading.Thread(target=submit_third)
        helper.start()
        wait_until(lambda: writer._waiting == 1, "the third submit to block")
        assert not third_returned.is_set()
        assert writer.pending == 2 and writes.started == ["f1.exr"]
        writes.gate.set()
        helper.join(10)
        assert third_returned.is_set()
    assert writer.completed == 3
    assert writes.most_running == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f1.exr", "f2.exr", "f3.exr"]


def test_worker_error_is_raised_in_the_caller(tmp_path):
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where the folder should be")
    with pytest.raises(OutputError, match="blocker"), ExrWriter(workers=2) as writer:
        writer.submit(blocker / "walk_00001.exr", ramp())
        for i in range(2, 50):
            writer.submit(Clip(tmp_path, "walk").frame_path(i), ramp())
    assert temps(tmp_path) == []


def test_worker_oserror_becomes_output_error(tmp_path, monkeypatch):
    def disk_full(path, half, header):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(exr_clip, "_write_half", disk_full)
    writer = ExrWriter(workers=1)
    writer.submit(tmp_path / "a.exr", ramp())
    with pytest.raises(OutputError, match="No space left"):
        writer.close()


def test_nothing_more_starts_after_a_worker_error(tmp_path, monkeypatch):
    writes = GatedWrites(hold={"f1.exr"})
    real = writes.real

    def fail_first(path, half, header):
        if path.name == "f1.exr":
            raise OSError(5, "Input/output error")
        real(path, half, header)

    writes.real = fail_first
    monkeypatch.setattr(exr_clip, "_write_half", writes)
    writer = ExrWriter(workers=1, max_pending=8)
    for i in range(1, 5):
        writer.submit(tmp_path / f"f{i}.exr", ramp())
    writes.gate.set()
    with pytest.raises(OutputError, match="Input/output error"):
        writer.close()
    assert writes.started == ["f1.exr"]
    assert writer.completed == 0 and writer.pending == 0
    assert list(tmp_path.iterdir()) == []


def test_worker_error_other_than_oserror_is_re_raised_as_is(tmp_path, monkeypatch):
    def broken(path, half, header):
        raise ValueError("bug in the encoder")

    monkeypatch.setattr(exr_clip, "_write_half", broken)
    with pytest.raises(ValueError, match="bug in the encoder"), ExrWriter(workers=1, max_pending=1) as writer:
        for i in range(1, 4):
            writer.submit(tmp_path / f"{i}.exr", ramp())


def test_ctrl_c_inside_the_with_leaves_only_complete_files(tmp_path, monkeypatch):
    """Queued frames are cancelled, the frame being written is finished, no temp is left."""
    writes = GatedWrites(hold={"walk_00001.exr"})
    monkeypatch.setattr(exr_clip, "_write_half", writes)
    original_cancel = ExrWriter._cancel_queued

    def cancel_then_open_gate(self):
        original_cancel(self)
        writes.gate.set()  # the running write may finish only after the queue was cancelled

    monkeypatch.setattr(ExrWriter, "_cancel_queued", cancel_then_open_gate)
    ours = f".walk_00008.exr.{os.getpid()}-999999.tmp.exr"  # e.g. left by an earlier writer here
    theirs = f".walk_00009.exr.{os.getpid() + 1}-1.tmp.exr"  # another live process's write
    (tmp_path / ours).write_bytes(b"partial")
    (tmp_path / theirs).write_bytes(b"partial")
    with pytest.raises(KeyboardInterrupt), ExrWriter(workers=1, max_pending=8) as writer:
        for i in range(1, 6):
            writer.submit(Clip(tmp_path, "walk").frame_path(i), ramp(512, 512, shift=i))  # ~10 ms to write
        wait_until(lambda: writes.started, "the first write to start")
        raise KeyboardInterrupt
    assert writes.started == ["walk_00001.exr"]
    assert writer.completed == 1
    assert Clip(tmp_path, "walk").finished(5) == {1}
    np.testing.assert_array_equal(
        read_exr(Clip(tmp_path, "walk").frame_path(1))[0], ramp(512, 512, shift=1).astype(np.float16)
    )
    assert temps(tmp_path) == [theirs]  # this process's temps are swept, no one else's


def test_ctrl_c_while_closing_stops_at_the_running_frame(tmp_path, monkeypatch):
    """An interrupt inside close (here raised by on_done) cancels the queue like one in the body."""
    first, second, second_started = threading.Event(), threading.Event(), threading.Event()
    started: list[str] = []
    real = exr_clip._write_half

    def gated(path, half, header):
        started.append(path.name)
        if path.name == "f2.exr":
            second_started.set()
        gate = {"f1.exr": first, "f2.exr": second}.get(path.name)
        if gate is not None:
            assert gate.wait(10)
        real(path, half, header)

    def interrupted(path):
        assert second_started.wait(10)  # so that f2 is the running frame, f3 and f4 queued
        raise KeyboardInterrupt

    original_cancel = ExrWriter._cancel_queued

    def cancel_then_open(self):
        original_cancel(self)
        second.set()

    monkeypatch.setattr(exr_clip, "_write_half", gated)
    monkeypatch.setattr(ExrWriter, "_cancel_queued", cancel_then_open)
    writer = ExrWriter(workers=1, max_pending=8, on_done=interrupted)
    for i in range(1, 5):
        writer.submit(tmp_path / f"f{i}.exr", ramp())
    first.set()
    with pytest.raises(KeyboardInterrupt):
        writer.close()
    assert started == ["f1.exr", "f2.exr"]  # f2 was running when the interrupt came
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f1.exr", "f2.exr"]
    assert writer.completed == 2


def test_writer_argument_checks(tmp_path):
    with pytest.raises(ValueError, match="worker"):
        ExrWriter(workers=0)
    with pytest.raises(ValueError, match="max_pending"):
        ExrWriter(workers=1, max_pending=0)
    with pytest.raises(UsageError, match="compression"):  # the user's --compression
        ExrWriter(compression="zstd")
    with ExrWriter(workers=1) as writer, pytest.raises(ValueError, match="shape"):
        writer.submit(tmp_path / "a.exr", np.zeros((4, 4), np.float32))
    with pytest.raises(RuntimeError, match="after close"):  # misuse by the calling code
        writer.submit(tmp_path / "a.exr", ramp())
    assert os.listdir(tmp_path) == []


def test_rgba_round_trip(tmp_path):
    """Keyed composites carry alpha: an [H, W, 4] frame is stored as RGBA."""
    rgba = np.random.default_rng(0).random((6, 5, 4)).astype(np.float32)
    write_exr(tmp_path / "a.exr", rgba)
    back, _ = read_exr(tmp_path / "a.exr", alpha=True)
    np.testing.assert_array_equal(back, rgba.astype(np.float16))
    assert read_exr(tmp_path / "a.exr")[0].shape == (6, 5, 3)
    rgb = rgba[..., :3]
    write_exr(tmp_path / "b.exr", rgb)
    assert (read_exr(tmp_path / "b.exr", alpha=True)[0][..., 3] == 1).all()
