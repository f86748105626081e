"""`irep3d maps`, `pack`, `channels`, `preview` as a user runs them."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from irep3d.cli import app
from irep3d.exr_clip import read_exr

runner = CliRunner()
MODEL = "builtin:sg3t-256"


def run(*args: str):
    return runner.invoke(app, list(args))


def test_maps_writes_a_clip_folder(tmp_path):
    result = run("maps", MODEL, "--layer", "L3_52_64", "--channels", "1,2,3", "--seeds", "5,6", "-k", "3",
                 "--out", str(tmp_path), "--norm", "none")  # fmt: skip
    assert result.exit_code == 0, result.output
    clip = tmp_path / "L3_52_64_c1-2-3"
    assert sorted(p.name for p in clip.glob("*.exr")) == [f"L3_52_64_c1-2-3_{i:05d}.exr" for i in range(1, 7)]
    manifest = json.loads((clip / "clip.json").read_text())
    assert manifest["seeds"] == [5, 6] and manifest["norm"] == "none" and manifest["channels"] == [1, 2, 3]


def test_maps_precision_is_recorded_and_changes_the_pixels(tmp_path):
    """bf16 runs NVIDIA's fp16 layers (L3 on of this 256 px network) in bfloat16: the clip
    says so and differs from the float32 one, which `auto` equals on the CPU."""
    frames = {}
    for precision in ("auto", "fp32", "bf16"):
        result = run("maps", MODEL, "--layer", "L3_52_64", "--channels", "1,2,3", "--seeds", "5", "--no-loop",
                     "--out", str(tmp_path / precision), "--norm", "none", "--precision", precision)  # fmt: skip
        assert result.exit_code == 0, result.output
        clip = tmp_path / precision / "L3_52_64_c1-2-3"
        assert json.loads((clip / "clip.json").read_text())["precision"] == precision
        frames[precision] = (clip / "L3_52_64_c1-2-3_00001.exr").read_bytes()
    assert frames["auto"] == frames["fp32"] != frames["bf16"]


def test_maps_any_width_and_height(tmp_path):
    result = run("maps", MODEL, "--layer", "L3_52_64", "--channels", "1,2,3", "--seeds", "5", "--no-loop",
                 "--out", str(tmp_path), "--size", "96x54:pad", "--norm", "fixed")  # fmt: skip
    assert result.exit_code == 0, result.output
    clip = tmp_path / "L3_52_64_c1-2-3"
    manifest = json.loads((clip / "clip.json").read_text())
    assert manifest["resolution"] == [96, 54] and manifest["size_mode"] == "pad"
    rgb, _ = read_exr(clip / "L3_52_64_c1-2-3_00001.exr")
    assert rgb.shape == (54, 96, 3) and not rgb[:, :21].any() and rgb[:, 21:75].any()


def test_maps_and_pack_walk_keyframes_from_a_file(tmp_path):
    import numpy as np

    from irep3d.generator import load_generator, seeds_to_ws

    np.savez(tmp_path / "proj.npz", w=seeds_to_ws(load_generator(MODEL, "cpu"), [8, 9]).numpy())
    result = run("maps", MODEL, "--layer", "L3_52_64", "--channels", "1,2,3", "--ws", str(tmp_path / "proj.npz"),
                 "-k", "2", "--out", str(tmp_path / "m"), "--cutoff", "3", "--psi", "0.7")  # fmt: skip
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "m" / "L3_52_64_c1-2-3" / "clip.json").read_text())
    assert manifest["seeds"] == ["w0", "w1"] and manifest["cutoff"] == 3 and manifest["frames"] == 4
    result = run("pack", MODEL, "--layers", "L3_52_64", "--clips-per-layer", "2", "--seeds-mode", "unique",
                 "--ws", str(tmp_path / "proj.npz"), "--seeds", "w1,4", "-k", "2", "--out", str(tmp_path / "p"))  # fmt: skip
    assert result.exit_code == 0, result.output
    pack = json.loads((tmp_path / "p" / "pack.json").read_text())
    assert [c["seeds"] for c in pack["clips"]] == [["w1", 6], ["w1", 8]]  # rows stay, seeds continue past 4


def test_maps_animated_controls_are_recorded(tmp_path):
    result = run("maps", MODEL, "--layer", "L1_36_64", "--channels", "1,2,3", "--seeds", "5,6", "-k", "2",
                 "--out", str(tmp_path), "--psi", "0.5:1", "--rotate", "-1", "--translate", "0.1,0",
                 "--mix-seeds", "7", "--mix-layers", "2-")  # fmt: skip
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "L1_36_64_c1-2-3" / "clip.json").read_text())
    assert (manifest["psi"], manifest["psi_to"], manifest["rotate"]) == (0.5, 1.0, -1)
    assert (
        manifest["translate"] == [0.1, 0.0]
        and manifest["mix_seeds"] == [7]
        and manifest["mix_layers"] == [2, None]
    )


def test_pack_writes_pack_json_with_unique_channels(tmp_path):
    result = run("pack", MODEL, "--layers", "L3_52_64,L5_84_64", "--clips-per-layer", "2", "--seeds", "1-2",
                 "-k", "2", "--out", str(tmp_path))  # fmt: skip
    assert result.exit_code == 0, result.output
    pack = json.loads((tmp_path / "pack.json").read_text())
    assert [c["name"] for c in pack["clips"]] == [
        "L3_52_64_clip01", "L3_52_64_clip02", "L5_84_64_clip01", "L5_84_64_clip02",
    ]  # fmt: skip
    for layer in ("L3_52_64", "L5_84_64"):
        chans = [ch for c in pack["clips"] if c["layer"] == layer for ch in c["channels"]]
        assert len(set(chans)) == 6
    assert all((tmp_path / c["path"] / "clip.json").exists() for c in pack["clips"])


def test_channels_and_preview(tmp_path):
    sheet = tmp_path / "sheet.png"
    assert run("channels", MODEL, "--layer", "L3_52_64", "--seed", "4", "--out", str(sheet)).exit_code == 0
    assert sheet.stat().st_size > 1000
    run(
        "maps",
        MODEL,
        "--layer",
        "L3_52_64",
        "--seeds",
        "1,2",
        "-k",
        "2",
        "--out",
        str(tmp_path),
        "--name",
        "c",
    )
    result = run("preview", str(tmp_path / "c"), "--out", str(tmp_path / "c.gif"))
    assert result.exit_code == 0, result.output
    assert (tmp_path / "c.gif").exists()


@pytest.mark.parametrize(
    "args,needle",
    [
        (["maps", MODEL, "--layer", "L99"], "unknown layer 'L99'; this network has: input, L0_36_64"),
        (["maps", MODEL, "--layer", "L3_52_64", "--channels", "1,2,64"], "has 64 channels"),
        (["maps", MODEL, "--layer", "L3_52_64", "--seeds", "3-x"], "bad seed spec"),
        (
            ["maps", MODEL, "--layer", "L3_52_64", "--norm", "wild"],
            "unknown --norm 'wild'; use one of: none, global",
        ),
        (["maps", MODEL, "--layer", "L3_52_64", "-k", "0"], "--frames-per-seed must be at least 1, not 0"),
        (["maps", MODEL, "--layer", "L3_52_64", "--fps", "0"], "--fps must be positive, not 0.0"),
        (["pack", MODEL, "--layers", "L3_52_64", "--batch", "0"], "--batch must be at least 1, not 0"),
        (["maps", MODEL, "--layer", "L3_52_64", "--psi", "x"], "bad --psi 'x': use a number"),
        (["maps", MODEL, "--layer", "L3_52_64", "--precision", "fp8"], "auto, fp32, fp16, bf16"),
        (
            ["maps", MODEL, "--layer", "L3_52_64", "--size", "1920x"],
            "bad --size '1920x': use SIZE or WIDTHxHEIGHT",
        ),
        (["pack", MODEL, "--layers", "L3_52_64", "--size", "0x5"], "bad --size '0x5'"),
        (
            ["maps", MODEL, "--layer", "L3_52_64", "--ws", "/nonexistent.npz"],
            "cannot read --ws /nonexistent.npz",
        ),
        (["maps", MODEL, "--layer", "L3_52_64", "--seeds", "w0"], "give one with --ws FILE.npz"),
        (["maps", MODEL, "--layer", "L3_52_64", "--cutoff", "99"], "--cutoff must be from 1 to 16"),
        (["maps", MODEL, "--layer", "L3_52_64", "--class", "1"], "--class needs a conditional network"),
        (["maps", MODEL, "--layer", "L3_52_64", "--psi", "0.5:2.5"], "a ψ sweep runs within [0, 2]"),
        (["maps", MODEL, "--layer", "L3_52_64", "--translate", "0.1"], "bad --translate '0.1'"),
        (["maps", MODEL, "--layer", "L3_52_64", "--mix-layers", "4-"], "--mix-layers needs --mix-seeds"),
        (["maps", MODEL, "--layer", "L3_52_64", "--mix-seeds", "1", "--mix-layers", "3-40"], "out of range"),
        (["maps", "builtin:sg2-256", "--layer", "b8.conv0", "--rotate", "1"], "move StyleGAN3's input"),
        (["pack", MODEL, "--layers", "L3_52_64", "--clips-per-layer", "22"], "not enough for 22 clips"),
        (["pack", MODEL, "--layers", "L3_52_64", "--seeds-mode", "both"], "locked, unique"),
        (
            [
                "pack",
                MODEL,
                "--layers",
                "L3_52_64",
                "--seeds-mode",
                "unique",
                "--seeds",
                "w0",
                "--ws",
                "{npz}",
            ],
            "these keyframes are all keyframe-file rows",
        ),
        (["preview", "/nonexistent/clip", "--out", "x.gif"], "/nonexistent/clip"),
    ],
)
def test_bad_input_is_one_clear_line(tmp_path, args, needle):
    if "{npz}" in args:
        import numpy as np

        from irep3d.generator import load_generator, seeds_to_ws

        np.savez(tmp_path / "w.npz", w=seeds_to_ws(load_generator(MODEL, "cpu"), [8]).numpy())
        args = [str(tmp_path / "w.npz") if a == "{npz}" else a for a in args]
    result = run(*args, *(["--out", str(tmp_path / "o")] if args[0] != "preview" else []))
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], result.stderr
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").rglob("*.exr"))


def test_keyframe_file_of_the_wrong_width_is_one_line(tmp_path):
    import numpy as np

    np.savez(tmp_path / "w.npz", w=np.zeros((2, 512), np.float32))
    result = run(
        "maps", MODEL, "--layer", "L3_52_64", "--ws", str(tmp_path / "w.npz"), "--out", str(tmp_path / "o")
    )
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "do not fit this network: it needs w as [n, 16, 128] or [n, 128]" in lines[0]
    assert not (tmp_path / "o").exists()


def test_unwritable_output_is_one_clear_line(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    result = run("maps", MODEL, "--layer", "L3_52_64", "--seeds", "1", "--out", str(blocker / "sub"))
    assert result.exit_code == 2
    assert "cannot create clip folder" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_pack_shards_together_equal_the_whole(tmp_path):
    args = ["pack", MODEL, "--layers", "L3_52_64", "--clips-per-layer", "2", "--seeds", "1-3", "-k", "2"]
    assert run(*args, "--out", str(tmp_path / "whole")).exit_code == 0
    for i in range(3):
        result = run(*args, "--out", str(tmp_path / "parts"), "--shard", f"{i}/3")
        assert result.exit_code == 0, result.output
    whole = sorted(p.relative_to(tmp_path / "whole") for p in (tmp_path / "whole").rglob("*.*"))
    parts = sorted(p.relative_to(tmp_path / "parts") for p in (tmp_path / "parts").rglob("*.*"))
    assert whole == parts and len(whole) == 2 * (6 + 1) + 1  # 2 clips x (6 frames + clip.json) + pack.json
    for rel in whole:
        assert (tmp_path / "whole" / rel).read_bytes() == (tmp_path / "parts" / rel).read_bytes(), rel


@pytest.mark.parametrize("shard", ["3/3", "x", "1/0", "-1/2"])
def test_bad_shard_is_one_line(tmp_path, shard):
    result = run("maps", MODEL, "--layer", "L3_52_64", "--out", str(tmp_path), "--shard", shard)
    assert result.exit_code == 2 and "use i/n" in result.stderr


@pytest.mark.parametrize("command", ["maps", "pack"])
def test_help_shows_the_keyframe_shapes_in_square_brackets(command):
    """rich reads `[n, num_ws, w_dim]` as a style tag: unescaped, `--help` showed `w  or , or z ;`."""
    result = run(command, "--help")
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.replace("│", " ").split())  # the help box's borders and line breaks
    assert "one array w [n, num_ws, w_dim] or [n, w_dim], or z [n, z_dim]; --seeds names its rows" in text
