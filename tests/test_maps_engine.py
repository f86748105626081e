"""The maps engine end to end on a built-in model: files, keyframes, normalisation, resume,
packs, shards, and its four steps run apart as a farm runs them."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from irep3d import maps_engine
from irep3d.colour import NormStats, apply_norm
from irep3d.errors import UsageError
from irep3d.exr_clip import read_exr
from irep3d.generator import seeds_to_ws
from irep3d.keyframes import load_keyfile
from irep3d.maps_engine import render_clips
from irep3d.options import ClipJob, MapsOptions, clip_identity

LAYER = "L3_52_64"  # an early layer: the capture stops there, so tests stay fast
OTHER = "L5_84_64"


@pytest.fixture
def net(sg3t):
    return sg3t


@pytest.fixture
def counted(net, monkeypatch):
    """Count the frames that go through the synthesis network."""
    calls: list[int] = []
    forward = net.synthesis.forward

    def counting(ws, *args, **kwargs):
        calls.append(ws.shape[0])
        return forward(ws, *args, **kwargs)

    monkeypatch.setattr(net.synthesis, "forward", counting)
    return calls


def frames_of(path, name):
    return sorted(path.glob(f"{name}_*.exr"))


def raw_layer(net, seeds, layer=LAYER):
    with torch.no_grad():
        return net.synthesis(seeds_to_ws(net, seeds), capture=[layer])[layer]


def test_clip_files_manifest_and_exact_keyframes(net, tmp_path):
    opts = MapsOptions(frames_per_seed=3, norm="none", batch=4)
    (res,) = render_clips(
        net, "builtin:sg3t-256", [ClipJob("c", LAYER, [5, 1, 9], [3, 17, 42])], tmp_path, opts
    )
    files = frames_of(tmp_path / "c", "c")
    assert [f.name for f in files] == [f"c_{i:05d}.exr" for i in range(1, 10)]
    assert res.frames == 9 and res.written == 9
    manifest = json.loads((tmp_path / "c" / "clip.json").read_text())
    for key in ("model", "layer", "channels", "seeds", "frames", "fps", "loop", "norm", "normalization"):
        assert key in manifest
    assert manifest["channels"] == [5, 1, 9] and manifest["frames"] == 9 and manifest["loop"] is True
    # Frame i*K is exactly seed i's activation (raw, R,G,B in the order given), as half float.
    raw = raw_layer(net, [3, 17, 42])
    for i in range(3):
        rgb, header = read_exr(files[i * 3])
        assert rgb.dtype == np.float16 and rgb.shape == (52, 52, 3)
        expected = raw[i, [5, 1, 9]].permute(1, 2, 0).numpy()
        # Same w exactly (see test_walk); batch mates may move the last float32 bit, which
        # can flip one half-float rounding: allow one half ulp.
        np.testing.assert_allclose(rgb, expected, rtol=1e-3, atol=1e-4)
        assert header["irep3d:layer"] == LAYER
        assert header["irep3d:frame"] == i * 3 + 1


@pytest.mark.parametrize("seeds,loop,expected", [([1, 2, 3], False, 7), ([4], False, 1), ([4, 5], True, 6)])
def test_frame_counts(net, tmp_path, seeds, loop, expected):
    opts = MapsOptions(frames_per_seed=3, loop=loop, norm="fixed")
    (res,) = render_clips(net, "m", [ClipJob("c", LAYER, [0], seeds)], tmp_path, opts)
    assert res.frames == expected == len(frames_of(tmp_path / "c", "c"))
    rgb, _ = read_exr(frames_of(tmp_path / "c", "c")[0])
    assert np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 1], rgb[..., 2])  # grey


def test_global_normalisation_uses_one_mapping_for_the_whole_walk(net, tmp_path, counted):
    opts = MapsOptions(frames_per_seed=4, norm="global", batch=3)
    (res,) = render_clips(net, "m", [ClipJob("g", LAYER, [2, 7, 11], [0, 1, 2])], tmp_path, opts)
    # Figures first, from batches spread over the walk (here all of them, kept and written
    # once the figures are known): the network still ran once per frame.
    assert sum(counted) == 12
    manifest = json.loads((tmp_path / "g" / "clip.json").read_text())
    stats = NormStats.from_json(manifest["normalization"])
    assert stats == res.stats
    raw = raw_layer(net, [0, 1, 2])[:, [2, 7, 11]]
    expected = apply_norm(raw, "global", stats).permute(0, 2, 3, 1).numpy().astype(np.float16)
    files = frames_of(tmp_path / "g", "g")
    for i in range(3):
        np.testing.assert_allclose(read_exr(files[i * 4])[0], expected[i], atol=2e-3)
    values = np.stack([read_exr(f)[0] for f in files])
    assert 0.0 < np.percentile(values, 50) < 1.0 and values.min() < 0.1 and values.max() > 0.9


def test_resume_renders_only_missing_frames_and_matches(net, tmp_path, counted):
    opts = MapsOptions(frames_per_seed=3, norm="global", batch=2)
    job = lambda: ClipJob("r", LAYER, None, [5, 6, 7])  # noqa: E731 - auto channels, picked again on resume
    render_clips(net, "m", [job()], tmp_path, opts)
    files = frames_of(tmp_path / "r", "r")
    before = {f.name: read_exr(f)[0] for f in files}
    files[4].unlink()
    files[7].unlink()
    (tmp_path / "r" / ".r_00005.exr.123-1.tmp.exr").write_bytes(b"half-written")  # a killed run's temp
    counted.clear()
    (res,) = render_clips(net, "m", [job()], tmp_path, opts)
    assert (res.written, res.skipped) == (2, 7)
    assert sum(counted) == 4  # figures from clip.json; only the two batches holding the gaps ran
    after = {f.name: read_exr(f)[0] for f in frames_of(tmp_path / "r", "r")}
    assert after.keys() == before.keys()
    for name in before:  # same figures, same batches: the same bytes
        np.testing.assert_array_equal(after[name], before[name])
    assert not list((tmp_path / "r").glob(".*tmp*"))


def test_rerun_with_other_settings_is_refused(net, tmp_path):
    render_clips(net, "m", [ClipJob("x", LAYER, [0, 1, 2], [1, 2])], tmp_path, MapsOptions(frames_per_seed=2))
    with pytest.raises(UsageError, match=r"other settings \(frames_per_seed\)"):
        render_clips(
            net, "m", [ClipJob("x", LAYER, [0, 1, 2], [1, 2])], tmp_path, MapsOptions(frames_per_seed=3)
        )


def test_interrupted_run_leaves_only_complete_files_and_resumes(net, tmp_path):
    opts = MapsOptions(frames_per_seed=4, norm="fixed", batch=2)

    def stop(stage, done, total):
        if stage == "render" and done >= 4:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        render_clips(net, "m", [ClipJob("k", LAYER, [0, 1, 2], [1, 2, 3])], tmp_path, opts, progress=stop)
    leftovers = [p.name for p in (tmp_path / "k").iterdir() if p.name.startswith(".")]
    assert leftovers == []
    for f in frames_of(tmp_path / "k", "k"):
        read_exr(f)  # every file present is complete
    (res,) = render_clips(net, "m", [ClipJob("k", LAYER, [0, 1, 2], [1, 2, 3])], tmp_path, opts)
    assert len(frames_of(tmp_path / "k", "k")) == 12 and res.written == 12 - res.skipped


def test_locked_pack_is_one_pass_per_frame_with_unique_channels(net, tmp_path, counted):
    opts = MapsOptions(frames_per_seed=3, norm="global", batch=4)
    jobs = [ClipJob(f"{layer}_clip{j}", layer, None, [8, 9]) for layer in (LAYER, OTHER) for j in range(3)]
    results = render_clips(net, "m", jobs, tmp_path, opts)
    # 6 frames, 6 clips, 2 layers: 2 keyframes to pick channels, then ONE forward pass per
    # frame for all clips (not 6 per frame); the figures come from those same passes.
    assert sum(counted) == 2 + 6
    for layer in (LAYER, OTHER):
        chans = [c for r in results if r.layer == layer for c in r.channels]
        assert len(chans) == 9 and len(set(chans)) == 9
    # A pack clip equals the same clip rendered alone.
    first = results[4]
    (alone,) = render_clips(
        net, "m", [ClipJob("alone", first.layer, first.channels, [8, 9])], tmp_path / "solo", opts
    )
    for a, b in zip(frames_of(first.path, first.name), frames_of(alone.path, "alone"), strict=True):
        np.testing.assert_array_equal(read_exr(a)[0], read_exr(b)[0])


def test_unique_pack_gives_each_clip_its_own_walk(net, tmp_path, counted):
    opts = MapsOptions(frames_per_seed=2, norm="fixed")
    jobs = [ClipJob(f"u{j}", LAYER, None, [10 + 2 * j, 11 + 2 * j]) for j in range(2)]
    results = render_clips(net, "m", jobs, tmp_path, opts)
    assert sum(counted) == 2 * (2 + 4)  # two walks: 2 keyframes for channels + 4 frames each
    assert not set(results[0].channels) & set(results[1].channels)


def test_crop_margin_and_upscale(net, tmp_path):
    opts = MapsOptions(frames_per_seed=1, norm="fixed", crop_margin=True, size=96, loop=False)
    (res,) = render_clips(net, "m", [ClipJob("s", LAYER, [0, 1, 2], [1])], tmp_path, opts)
    rgb, _ = read_exr(frames_of(res.path, "s")[0])
    assert rgb.shape == (96, 96, 3)
    manifest = json.loads((res.path / "clip.json").read_text())
    assert manifest["margin_px"] == 10 and manifest["resolution"] == [96, 96]


def test_any_width_and_height_is_recorded_and_resumes(net, tmp_path):
    opts = MapsOptions(frames_per_seed=1, norm="fixed", size=(80, 45), size_mode="fill", loop=False)
    (res,) = render_clips(net, "m", [ClipJob("w", LAYER, [0, 1, 2], [1])], tmp_path, opts)
    rgb, _ = read_exr(frames_of(res.path, "w")[0])
    assert rgb.shape == (45, 80, 3)
    manifest = json.loads((res.path / "clip.json").read_text())
    assert manifest["resolution"] == [80, 45] and manifest["size"] == [80, 45]
    assert manifest["size_mode"] == "fill"
    # The same size by another mode is another clip.
    with pytest.raises(UsageError, match=r"other settings \(size_mode\)"):
        render_clips(
            net, "m", [ClipJob("w", LAYER, [0, 1, 2], [1])], tmp_path, replace(opts, size_mode="pad")
        )
    (again,) = render_clips(net, "m", [ClipJob("w", LAYER, [0, 1, 2], [1])], tmp_path, opts)
    assert again.skipped == 1


def test_square_size_keeps_the_clip_identity_of_older_clips(net, tmp_path):
    """A clip.json written before W×H existed (no size_mode) resumes, and a square clip's
    identity and manifest keys are what they always were."""
    opts = MapsOptions(frames_per_seed=1, norm="fixed", size=64, loop=False)
    (res,) = render_clips(net, "m", [ClipJob("q", LAYER, [0, 1, 2], [1])], tmp_path, opts)
    manifest = json.loads((res.path / "clip.json").read_text())
    assert manifest["size"] == 64 and "size_mode" not in manifest
    old_keys = ["model", "layer", "seeds", "frames_per_seed", "loop", "psi", "norm", "gain_db", "size",
                "crop_margin", "compression", "precision"]  # fmt: skip
    assert list(clip_identity(ClipJob("q", LAYER, None, [1]), opts, "m")) == old_keys
    # Pixels: the square path is the plain resize.
    (other,) = render_clips(
        net, "m", [ClipJob("q", LAYER, [0, 1, 2], [1])], tmp_path / "pad", replace(opts, size_mode="pad")
    )
    a, b = frames_of(res.path, "q")[0], frames_of(other.path, "q")[0]
    np.testing.assert_array_equal(read_exr(a)[0], read_exr(b)[0])
    with pytest.raises(UsageError, match=r"other settings \(size_mode\)"):
        render_clips(
            net, "m", [ClipJob("q", LAYER, [0, 1, 2], [1])], tmp_path, replace(opts, size_mode="pad")
        )


def test_keyframes_from_a_file_walk_like_their_seeds(net, tmp_path):
    """A .npz holding seeds 3 and 17's ws gives the seed walk's pixels; clip.json identifies
    the file by its bytes, so another file is another clip."""
    np.savez(tmp_path / "proj.npz", w=seeds_to_ws(net, [3, 17]).numpy())
    keyfile = load_keyfile(tmp_path / "proj.npz")
    opts = MapsOptions(frames_per_seed=3, norm="none", batch=4)
    render_clips(net, "m", [ClipJob("s", LAYER, [5, 1, 9], [3, 17])], tmp_path / "seeds", opts)
    (res,) = render_clips(
        net, "m", [ClipJob("f", LAYER, [5, 1, 9], ["w0", "w1"])], tmp_path / "file", replace(opts, ws=keyfile)
    )
    for a, b in zip(frames_of(tmp_path / "seeds" / "s", "s"), frames_of(res.path, "f"), strict=True):
        np.testing.assert_array_equal(read_exr(a)[0], read_exr(b)[0])
    manifest = json.loads((res.path / "clip.json").read_text())
    assert manifest["seeds"] == ["w0", "w1"] and manifest["ws_sha256"] == keyfile.sha256
    assert manifest["ws_file"] == str(tmp_path / "proj.npz")
    assert read_exr(frames_of(res.path, "f")[1])[1]["irep3d:seeds"] == ["w0", "w1"]
    np.savez(tmp_path / "proj.npz", w=seeds_to_ws(net, [3, 18]).numpy())
    with pytest.raises(UsageError, match=r"other settings \(ws_sha256\)"):
        render_clips(net, "m", [ClipJob("f", LAYER, [5, 1, 9], ["w0", "w1"])], tmp_path / "file",
                     replace(opts, ws=load_keyfile(tmp_path / "proj.npz")))  # fmt: skip


def test_cutoff_changes_the_pixels_and_the_identity(net, tmp_path):
    opts = MapsOptions(frames_per_seed=1, loop=False, norm="none", psi=0.3)
    (a,) = render_clips(net, "m", [ClipJob("c", LAYER, [0, 1, 2], [4])], tmp_path / "a", opts)
    (b,) = render_clips(
        net, "m", [ClipJob("c", LAYER, [0, 1, 2], [4])], tmp_path / "b", replace(opts, cutoff=2)
    )
    assert json.loads((b.path / "clip.json").read_text())["cutoff"] == 2
    assert "cutoff" not in json.loads((a.path / "clip.json").read_text())
    assert not np.array_equal(read_exr(frames_of(a.path, "c")[0])[0], read_exr(frames_of(b.path, "c")[0])[0])


ANIMATED = dict(psi=0.5, psi_to=1.0, translate=(0.05, 0.05), rotate=1, mix_seeds=(7, 8), mix_layers=(6, None))


@pytest.mark.parametrize(
    "controls",
    [
        dict(psi=0.5, psi_to=1.0),
        dict(translate=(0.05, 0.05)),
        dict(rotate=1),
        dict(mix_seeds=(7, 8), mix_layers=(1, None)),
        ANIMATED,
    ],
    ids=["psi", "translate", "rotate", "mix", "all"],
)
def test_animated_controls_keep_the_seam_seamless(net, tmp_path, controls):
    """The activations' step from the last frame to the first is like any other step, with
    each control animated; the same measure on the clip without its last frame (which
    then jumps at the seam) fails, so the check can fail."""
    from tests.test_walk import seam_vs_other_steps

    opts = MapsOptions(frames_per_seed=12, norm="none", batch=4, **controls)
    (res,) = render_clips(net, "m", [ClipJob("a", "L1_36_64", [0, 1, 2], [3, 4])], tmp_path, opts)
    frames = np.stack([read_exr(f)[0].astype(np.float64) for f in frames_of(res.path, "a")])
    assert len(frames) == 24
    assert seam_vs_other_steps(frames) < 2
    assert seam_vs_other_steps(frames[:-3]) > 3  # counter-check: three frames short of the loop
    manifest = json.loads((res.path / "clip.json").read_text())
    for key, value in controls.items():
        assert manifest[key] == (list(value) if isinstance(value, tuple) else value)
    # The controls change the pixels: the plain walk differs.
    (plain,) = render_clips(net, "m", [ClipJob("a", "L1_36_64", [0, 1, 2], [3, 4])], tmp_path / "plain",
                            replace(opts, **{k: MapsOptions.__dataclass_fields__[k].default for k in controls}))  # fmt: skip
    assert not np.array_equal(read_exr(frames_of(plain.path, "a")[6])[0], frames[6].astype(np.float16))


def test_rotate_turns_the_input_layer(net, tmp_path):
    """A half turn at the middle of a one-turn clip shows the input features rotated by 180
    degrees: the map flipped in x and y (the grid is symmetric about the centre)."""
    opts = MapsOptions(frames_per_seed=2, norm="none", rotate=1)
    (res,) = render_clips(net, "m", [ClipJob("r", "input", [0, 1, 2], [5])], tmp_path, opts)
    first, half = (read_exr(f)[0].astype(np.float32) for f in frames_of(res.path, "r"))
    np.testing.assert_allclose(half, first[::-1, ::-1], atol=2e-3 * np.abs(first).max())
    assert not np.allclose(half, first, atol=2e-3 * np.abs(first).max())


def test_translate_and_rotate_need_stylegan3(tmp_path, sg2):
    with pytest.raises(UsageError, match="--translate and --rotate move StyleGAN3's input"):
        render_clips(sg2, "m", [ClipJob("x", "b8.conv0", [0], [1])], tmp_path, MapsOptions(rotate=1))
    with pytest.raises(UsageError, match="--mix-layers 3-99 is out of range"):
        render_clips(sg2, "m", [ClipJob("x", "b8.conv0", [0], [1])], tmp_path,
                     MapsOptions(mix_seeds=(2,), mix_layers=(3, 99)))  # fmt: skip


def test_channel_out_of_range_names_the_count(net, tmp_path):
    with pytest.raises(UsageError, match="has 64 channels"):
        render_clips(net, "m", [ClipJob("c", LAYER, [0, 64, 1], [1])], tmp_path, MapsOptions())


def teststats_batches_are_bounded_and_spread():
    from irep3d.maps_engine import STATS_FRAMES, stats_batches

    chosen = stats_batches(225, 4)  # a 900-frame walk in batches of 4
    assert len(chosen) * 4 == STATS_FRAMES and chosen[0] == 0 and chosen[-1] > 190
    assert stats_batches(3, 4) == [0, 1, 2]


def test_long_walk_measures_a_sample_and_runs_each_frame_once(net, tmp_path, counted, monkeypatch):
    import irep3d.maps_engine

    monkeypatch.setattr(irep3d.maps_engine, "KEEP_BYTES", 0)  # nothing kept: sampled batches run twice
    opts = MapsOptions(frames_per_seed=20, norm="global", batch=4)
    (res,) = render_clips(net, "m", [ClipJob("long", LAYER, [1, 2, 3], [1, 2, 3])], tmp_path, opts)
    assert res.frames == 60 and sum(counted) == 60 + 32


def test_shards_together_equal_the_whole_clip(net, tmp_path, counted):
    opts = MapsOptions(frames_per_seed=4, norm="global", batch=3)
    job = lambda: ClipJob("s", LAYER, None, [3, 4, 5])  # noqa: E731
    render_clips(net, "m", [job()], tmp_path / "whole", opts)
    for i in range(3):
        (res,) = render_clips(net, "m", [job()], tmp_path / "parts", opts, shard=(i, 3))
        assert res.written == 4
    whole = frames_of(tmp_path / "whole" / "s", "s")
    parts = frames_of(tmp_path / "parts" / "s", "s")
    assert [p.name for p in parts] == [p.name for p in whole]
    for a, b in zip(whole, parts, strict=True):
        assert a.read_bytes() == b.read_bytes()
    for name in ("clip.json",):
        assert json.loads((tmp_path / "whole" / "s" / name).read_text()) == json.loads(
            (tmp_path / "parts" / "s" / name).read_text()
        )


def test_bad_shard_is_refused(net, tmp_path):
    with pytest.raises(UsageError, match="bad shard 3/3"):
        render_clips(net, "m", [ClipJob("c", LAYER, [0], [1])], tmp_path, MapsOptions(), shard=(3, 3))


def test_the_steps_run_apart_write_what_render_clips_writes(net, tmp_path, counted):
    """The farm's way, without Ray: channels on one "worker", the figures' batches sampled
    on others and merged, then shards written with the merged figures and a final pass."""
    opts = MapsOptions(frames_per_seed=6, norm="global", batch=4)
    jobs = lambda: [ClipJob("a", LAYER, None, [3, 4]), ClipJob("b", OTHER, None, [3, 4])]  # noqa: E731
    render_clips(net, "m", jobs(), tmp_path / "local", opts)
    out = tmp_path / "apart"
    apart = jobs()
    maps_engine.choose_channels(net, maps_engine.plan(net, "m", apart, out, opts))
    batches = maps_engine.figure_batches(apart, opts, opts.batch)
    assert [i for _, i in batches] == [0, 1, 2]  # 12 frames, batches of 4: all of them
    samples: dict[str, list] = {"a": [], "b": []}
    kept: dict = {}
    for group, index in batches:  # each batch on a "worker" of its own
        thinned, chosen = maps_engine.sample_batch(
            net, maps_engine.plan(net, "m", group, out, opts), group[0].seeds, index
        )
        for name, part in thinned.items():
            samples[name].append(part)
        if index == 1:
            kept = {tuple(group[0].seeds): {1: chosen}}
    figures = {name: maps_engine.figures_from_samples(parts) for name, parts in samples.items()}
    flush = maps_engine.plan(net, "m", apart, out, opts, clean_temps=False)
    flush.set_figures(figures)
    assert maps_engine.write_batches(net, flush, kept, only_kept=True) == 8  # batch 1 of both clips
    for i in range(3):
        shard = maps_engine.plan(net, "m", apart, out, opts, shard=(i, 3), clean_temps=False)
        shard.set_figures(figures)
        maps_engine.write_batches(net, shard)
        maps_engine.finish(shard)
    final = maps_engine.plan(net, "m", apart, out, opts)
    assert sum(len(c.todo) for c in final.clips) == 0
    results = maps_engine.finish(final)
    assert [r.written for r in results] == [0, 0] and all(len(r.channels) == 3 for r in results)
    for name in ("a", "b"):
        local, here = tmp_path / "local" / name, out / name
        assert sorted(p.name for p in here.iterdir()) == sorted(p.name for p in local.iterdir())
        for path in local.iterdir():
            assert (here / path.name).read_bytes() == path.read_bytes(), path.name


def test_write_batches_needs_the_figures(net, tmp_path):
    opts = MapsOptions(frames_per_seed=2, norm="global", batch=2)
    planned = maps_engine.plan(net, "m", [ClipJob("c", LAYER, [0, 1, 2], [1, 2])], tmp_path, opts)
    with pytest.raises(RuntimeError, match="figures of c were not measured"):
        maps_engine.write_batches(net, planned)


def test_loop_start_turns_the_loop(net, tmp_path):
    """`--loop-start 0.5`: the same seamless loop, its first frame half way round."""
    opts = MapsOptions(frames_per_seed=2, norm="fixed")  # 3 seeds: 6 frames
    job = ClipJob("c", LAYER, [0, 1, 2], [1, 2, 3])
    (plain,) = render_clips(net, "m", [job], tmp_path / "plain", opts)
    (turned,) = render_clips(net, "m", [job], tmp_path / "turned", replace(opts, loop_start=0.5))
    frames = lambda r: [read_exr(r.path / f"c_{i + 1:05d}.exr")[0].astype(np.float32) for i in range(6)]  # noqa: E731
    before, after = frames(plain), frames(turned)
    for i in range(6):  # the same pictures (but for half-float rounding: other batch mates)
        gaps = [np.abs(after[i] - before[j]).max() for j in range(6)]
        assert gaps[(i + 3) % 6] < 2e-3 and sorted(gaps)[1] > 0.1, gaps
    assert json.loads((turned.path / "clip.json").read_text())["loop_start"] == 0.5
