"""Audio-driven walks: a synthetic click track whose onsets are known drives maps and encode."""

from __future__ import annotations

import json
import math
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile
import torch
from typer.testing import CliRunner

from irep3d.audio import analyse, envelopes, gain_curve, psi_curve, walk_positions
from irep3d.cli import app
from irep3d.encode import encode_clip
from irep3d.errors import UsageError
from irep3d.maps import walk_ws
from irep3d.maps_engine import render_clips
from irep3d.options import ClipJob, maps_options

RATE = 44100
FPS = 30
CLICKS = (0.5, 1.23, 2.0, 2.71, 3.4)  # seconds; 2.0 falls exactly on a frame boundary
LAYER = "L3_52_64"
runner = CliRunner()


def click_track(path: Path, seconds: float, clicks: tuple[float, ...], rate: int = RATE) -> Path:
    """A quiet noise floor with 20 ms decaying noise bursts (clicks) at `clicks` seconds."""
    rng = np.random.default_rng(7)
    x = 0.001 * rng.standard_normal(int(seconds * rate))
    n = int(0.02 * rate)
    for t in clicks:
        i = int(t * rate)
        x[i : i + n] += (
            0.8 * rng.standard_normal(n)[: len(x) - i] * np.exp(-np.arange(n) / (0.004 * rate))[: len(x) - i]
        )
    stereo = np.stack([x, x], axis=1).astype(np.float32)  # stereo: the analysis mixes down
    soundfile.write(str(path), stereo, rate, subtype="PCM_16")
    return path


@pytest.fixture(scope="module")
def track(tmp_path_factory) -> Path:
    return click_track(tmp_path_factory.mktemp("audio") / "clicks.wav", 4.0, CLICKS)


def test_onsets_land_on_the_click_frames(track):
    env = analyse(track, FPS)
    assert env.frames == 120 and env.duration == pytest.approx(4.0)
    expected = [math.floor(t * FPS) for t in CLICKS]
    found = env.onset_frames
    assert len(found) == len(expected), found
    for got, want in zip(found, expected, strict=True):
        assert abs(got - want) <= 1, (found, expected)
    # Between the clicks: no onset, and the kick decays (halves every 0.15 s = 4.5 frames).
    first = found[0]
    assert env.kick[first] == env.onset[first] > 0
    assert env.kick[first + 9] == pytest.approx(env.kick[first] / 4, rel=0.05)


def test_frame_count_is_the_track_length_at_fps(tmp_path):
    path = click_track(tmp_path / "short.wav", 1.01, ())
    assert analyse(path, 30).frames == 31  # ceil(1.01 × 30)
    assert analyse(path, 24).frames == 25


def test_loudness_mapping_is_monotone():
    # A 300 Hz tone (whole periods in every frame) whose amplitude rises over 2 s.
    t = np.arange(2 * RATE) / RATE
    tone = (t / 2) * np.sin(2 * np.pi * 300 * t)
    env = envelopes(tone, RATE, FPS)
    assert np.all(np.diff(env.rms) >= 0) and env.rms[0] < 0.02 and env.rms[-1] == 1.0
    psi = psi_curve(env, 0.5, 1.0)
    assert np.all(np.diff(psi) >= 0) and psi[0] == pytest.approx(0.5, abs=0.01) and psi[-1] == 1.0
    assert not env.onset_frames[1:]  # a swell is not a string of hits


def test_walk_speeds_up_at_clicks(track):
    env = analyse(track, FPS)
    even = walk_positions(env, 4, 0.0)
    np.testing.assert_allclose(np.diff(even), 3 / 119)
    pos = walk_positions(env, 4, 8.0)
    assert pos[0] == 0.0 and pos[-1] == pytest.approx(3.0) and np.all(np.diff(pos) > 0)
    steps = np.diff(pos)  # steps[f - 1]: frame f-1 -> f
    quiet = steps.min()  # the noise floor, far from any click
    for f in env.onset_frames:  # the steps into frames f and f + 1 (around the click) vs before it
        around, before = steps[f - 1 : f + 1].max(), steps[f - 3]
        assert around > 5 * quiet and around > 5 * before, (f, steps[f - 3 : f + 1], quiet)
    gain = gain_curve(env, 1.0, 6.0)
    assert gain.max() == pytest.approx(7.0, abs=0.01) and gain.min() == pytest.approx(1.0)


def test_non_audio_is_one_usage_error(tmp_path):
    fake = tmp_path / "track.wav"
    fake.write_text("not a sound\n")
    with pytest.raises(UsageError, match="not a sound file"):
        analyse(fake, FPS)
    with pytest.raises(UsageError, match="--audio-psi"):
        maps_options(audio=click_track(tmp_path / "ok.wav", 0.2, ()), audio_psi="0.5")
    with pytest.raises(UsageError, match="need --audio"):
        maps_options(audio_speed=2.0)


@pytest.fixture
def net(sg3t):
    return sg3t


def test_maps_audio_clip(net, tmp_path):
    fps = 12
    track = click_track(tmp_path / "beat.wav", 1.0, (0.25, 0.75))
    opts = maps_options(
        audio=track, audio_speed=20.0, audio_psi="0.5:1.0", audio_gain=6.0, fps=fps, batch=6, loop=True
    )
    assert opts.loop is False  # --audio implies --no-loop
    job = ClipJob("a", LAYER, [0, 1, 2], [3, 17, 42])
    (res,) = render_clips(net, "builtin:sg3t-256", [job], tmp_path, opts)
    assert res.frames == 12 == len(list((tmp_path / "a").glob("a_*.exr")))
    manifest = json.loads((tmp_path / "a" / "clip.json").read_text())
    assert manifest["frames"] == 12 and manifest["loop"] is False and manifest["complete"]
    assert manifest["audio_speed"] == 20.0 and manifest["audio_psi"] == [0.5, 1.0]
    assert manifest["audio_gain"] == 6.0 and len(manifest["audio_sha256"]) == 64
    assert manifest["audio"] == str(track) and manifest["audio_seconds"] == pytest.approx(1.0)
    assert [abs(a - b) <= 1 for a, b in zip(manifest["audio_onsets"], [3, 9], strict=True)] == [True, True]
    # The walk's ws move much further at a click than between clicks.
    key_ws = torch.from_numpy(np.random.default_rng(0).standard_normal((3, 16, 512)).astype(np.float32))
    plain = maps_options(audio=track, audio_speed=20.0, fps=fps)
    ws, _ = walk_ws(net, key_ws, None, plain, list(range(12)), 12)
    steps = (ws[1:] - ws[:-1]).flatten(1).norm(dim=1).numpy()
    for f in manifest["audio_onsets"]:
        assert steps[f - 1 : f + 1].max() > 3 * steps[f - 3], steps
    # Another mapping is another clip: it does not resume into this folder.
    with pytest.raises(UsageError, match="audio_speed"):
        render_clips(net, "builtin:sg3t-256", [job], tmp_path, maps_options(audio=track, fps=fps, batch=6))


def test_cli_maps_audio_errors_are_one_line(tmp_path):
    fake = tmp_path / "notes.wav"
    fake.write_bytes(b"RIFF\x00\x00\x00\x00garbage")
    for extra, message in (
        (["--audio", str(fake)], "not a sound file"),
        (["--audio-speed", "2"], "need --audio"),
        (["--audio", str(tmp_path / "absent.wav")], "no such file"),
    ):
        result = runner.invoke(app, ["maps", "builtin:sg3t-256", "--layer", LAYER, *extra])
        lines = result.output.strip().splitlines()
        assert result.exit_code == 2 and len(lines) == 1 and message in lines[0], result.output


def audio_seconds(path: Path) -> tuple[float, int, str]:
    """(decoded audio duration in seconds, video frames, audio codec) of a video file."""
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        samples = sum(frame.samples for frame in container.decode(stream))
        seconds, codec = samples / stream.codec_context.sample_rate, stream.codec_context.name
    with av.open(str(path)) as container:
        frames = sum(1 for p in container.demux(container.streams.video[0]) if p.size)
    return seconds, frames, codec


@pytest.mark.parametrize(("codec", "suffix", "seconds", "audio_codec"), [
    ("h264", ".mp4", 4.0, "aac"),  # a longer track is cut at the last frame
    ("prores", ".mov", 0.25, "pcm_s16le"),  # a shorter one ends early
])  # fmt: skip
def test_encode_muxes_the_track(tmp_path, codec, suffix, seconds, audio_codec):
    from tests.test_encode import FRAMES, make_clip

    clip = make_clip(tmp_path / "walk")  # 12 frames at 24 fps: 0.5 s
    track = click_track(tmp_path / "t.wav", seconds, (0.1,))
    out = encode_clip(clip, tmp_path / f"v{suffix}", codec, audio=track)
    got, frames, name = audio_seconds(out)
    assert frames == FRAMES and name == audio_codec
    assert got == pytest.approx(min(seconds, FRAMES / 24), abs=0.03), got


def test_cli_encode_audio(tmp_path):
    from tests.test_encode import make_clip

    clip = make_clip(tmp_path / "walk")
    track = click_track(tmp_path / "t.wav", 1.0, (0.1,))
    out = tmp_path / "w.mov"
    result = runner.invoke(
        app, ["encode", str(clip), "--codec", "hap", "--out", str(out), "--audio", str(track)]
    )
    assert result.exit_code == 0, result.output
    assert audio_seconds(out)[:2] == (pytest.approx(0.5, abs=0.03), 12)
    fake = tmp_path / "x.wav"
    fake.write_text("hello")
    result = runner.invoke(
        app, ["encode", str(clip), "--codec", "hap", "--out", str(out), "--audio", str(fake)]
    )
    lines = result.output.strip().splitlines()
    assert result.exit_code == 2 and len(lines) == 1 and "not a sound file" in lines[0], result.output
