"""Packs (`irep3d.pack`): a locked and a unique pack of one seed spec never share a clip."""

from __future__ import annotations

import hashlib
import itertools

from irep3d.exr_clip import read_exr
from irep3d.generator import load_generator
from irep3d.maps_engine import render_clips
from irep3d.options import maps_options
from irep3d.pack import pack_jobs

MODEL = "builtin:sg3t-256"


def test_locked_and_unique_packs_of_one_spec_hold_no_clip_twice(tmp_path):
    """A release with both modes renders both packs from the same seeds; before, the unique
    pack's first clip walked the locked seeds and got the same channels: the same loop twice."""
    net = load_generator(MODEL, "cpu")
    options = maps_options(frames_per_seed=2, size=16)
    layers, seeds = ["L3_52_64", "L5_84_64"], [0, 1]
    clips = {}
    for mode in ("locked", "unique"):
        jobs = pack_jobs(net, layers, 2, seeds, mode)
        for result in render_clips(net, MODEL, jobs, tmp_path / mode, options):
            frames = sorted(result.path.glob("*.exr"))
            assert len(frames) == result.frames == 4
            digest = hashlib.sha256(b"".join(read_exr(f)[0].tobytes() for f in frames)).hexdigest()
            clips[f"{mode}/{result.name}"] = (
                result.layer,
                tuple(result.channels),
                tuple(result.seeds),
                digest,
            )
    assert len(clips) == 8
    for (a, ca), (b, cb) in itertools.combinations(clips.items(), 2):
        assert ca[:3] != cb[:3], f"{a} and {b}: same layer, channels and seeds"
        assert ca[3] != cb[3], f"{a} and {b}: the same pixels"
    assert clips["unique/L3_52_64_clip01"][2] == (2, 3)  # the seeds continue past the locked 0-1
    assert clips["locked/L3_52_64_clip01"][2] == (0, 1)
