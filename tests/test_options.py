"""Every walk/clip option declared once (`irep3d.options`): the flags of `maps` and `pack`,
a release file's keys, the checks and a clip's identity all come from the declaration."""

from __future__ import annotations

import json
import wave

import numpy as np
import pytest
import typer

from irep3d.cli import app
from irep3d.cli.maps import option_flags
from irep3d.errors import OptionError
from irep3d.keyframes import load_keyfile
from irep3d.options import OPTIONAL_IDENTITY, OPTIONS, ClipJob, MapsOptions, clip_identity, describe_options
from irep3d.release import load_release

JOB = ClipJob("c", "L3_52_64", [0, 1, 2], [1, "w0"])


def test_identity_records_optional_settings_only_when_used():
    job = ClipJob("c", "L3", [0, 1, 2], [1, 2])
    plain = clip_identity(job, MapsOptions(), "m")
    assert plain["seeds"] == [1, 2] and plain["layer"] == "L3" and plain["model"] == "m"
    assert "cutoff" not in plain and "psi_to" not in plain and "size_mode" not in plain
    swept = clip_identity(job, MapsOptions(psi=0.5, psi_to=1.0, cutoff=4), "m")
    assert swept["psi_to"] == 1.0 and swept["cutoff"] == 4
    assert {k: v for k, v in swept.items() if k not in ("psi", "psi_to", "cutoff")} == {
        k: v for k, v in plain.items() if k != "psi"
    }


def test_identity_keys_and_their_order_are_those_clips_were_made_with(tmp_path):
    """clip.json's identity is how a resumed run recognises its clip: its keys and their
    order must stay as they were before the options were declared (pinned here)."""
    track = tmp_path / "t.wav"
    track.write_bytes(b"any bytes: only hashed")
    keys = tmp_path / "k.npz"
    np.savez(keys, w=np.zeros((2, 64), np.float32))
    every = MapsOptions(
        frames_per_seed=5, loop=False, psi=0.5, norm="fixed", gain_db=3.0, size=(64, 32), crop_margin=True,
        compression="piz", precision="fp32", size_mode="fill", cutoff=4, class_idx=1, psi_to=1.0,
        translate=(0.1, 0.2), rotate=1, mix_seeds=(5, 6), mix_layers=(3, None), audio=str(track),
        audio_speed=2.0, audio_psi=(0.5, 1.0), audio_gain=6.0, ws=load_keyfile(keys),
    )  # fmt: skip
    identity = clip_identity(JOB, every, "m")
    assert list(identity) == [
        "model", "layer", "seeds", "frames_per_seed", "loop", "psi", "norm", "gain_db", "size",
        "crop_margin", "compression", "precision", "size_mode", "cutoff", "class", "psi_to",
        "translate", "rotate", "mix_seeds", "mix_layers", "audio_sha256", "audio_speed",
        "audio_psi", "audio_gain", "ws_sha256",
    ]  # fmt: skip
    assert identity["size"] == [64, 32] and identity["translate"] == [0.1, 0.2]
    assert identity["mix_layers"] == [3, None] and identity["audio_psi"] == [0.5, 1.0]
    json.dumps(identity)  # clip.json holds it
    plain = clip_identity(JOB, MapsOptions(), "m")
    assert not set(plain) & set(OPTIONAL_IDENTITY)  # nothing optional recorded unused


@pytest.mark.parametrize("command", ["maps", "pack"])
def test_every_option_has_its_flag_on_maps_and_pack(command):
    click = typer.main.get_command(app).commands[command]
    flags = {flag for param in click.params for flag in (*param.opts, *param.secondary_opts)}
    for name in OPTIONS:
        for flag in option_flags(name):
            for part in flag.split("/"):
                assert part in flags, f"{name}: {part} is not a flag of {command}"


def _wav(path) -> str:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes(b"\0\0" * 8000)
    return path.name


# One sample a release file may give for every option: (extra TOML lines, its value as a
# line, the field's value it must make). A declared option missing here fails the test.
def _samples(tmp_path) -> dict[str, tuple[str, str, object]]:
    np.savez(tmp_path / "keys.npz", w=np.zeros((2, 64), np.float32))
    audio = f'audio = "{_wav(tmp_path / "beat.wav")}"'
    return {
        "frames_per_seed": ("", "frames_per_seed = 5", 5),
        "loop": ("", "loop = false", False),
        "fps": ("", "fps = 24", 24),
        "psi": ("", 'psi = "0.5:1.0"', 0.5),
        "norm": ("", 'norm = "fixed"', "fixed"),
        "gain_db": ("", "gain_db = 3.5", 3.5),
        "size": ("", 'size = "64x32:fill"', (64, 32)),
        "crop_margin": ("", "crop_margin = true", True),
        "compression": ("", 'compression = "PIZ"', "piz"),
        "batch": ("", "batch = 2", 2),
        "precision": ("", 'precision = "fp32"', "fp32"),
        "cutoff": ("", "cutoff = 4", 4),
        "class_idx": ("", "class = 1", 1),
        "translate": ("", "translate = [0.1, 0.2]", (0.1, 0.2)),
        "rotate": ("", "rotate = -1", -1),
        "mix_seeds": ("", "mix_seeds = [5, 6]", (5, 6)),
        "mix_layers": ("mix_seeds = [5]", 'mix_layers = "3-"', (3, None)),
        "audio": ("", audio, str(tmp_path / "beat.wav")),
        "audio_speed": (audio, "audio_speed = 2.0", 2.0),
        "audio_psi": (audio, 'audio_psi = "0.5:1.0"', (0.5, 1.0)),
        "audio_gain": (audio, "audio_gain = 6", 6),
        "ws": ("", 'ws = "keys.npz"', 2),
        "loop_start": ("", "loop_start = 0.25", 0.25),
    }


def test_every_option_is_a_key_of_a_release_file(tmp_path):
    samples = _samples(tmp_path)
    assert set(samples) == set(OPTIONS), "give the new option a sample here"
    for name, (extra, line, expected) in samples.items():
        walk, pack = [extra], ['layers = ["L3_52_64"]']  # the extra lines are [walk] keys
        (walk if OPTIONS[name].table == "walk" else pack).append(line)
        path = tmp_path / f"{name}.toml"
        path.write_text(
            'model = "builtin:sg3t-256"\n[walk]\n' + "\n".join(walk) + "\n[pack]\n" + "\n".join(pack)
        )
        value = getattr(load_release(path).options, name)
        assert (value.rows if name == "ws" else value) == expected, name


def test_each_bound_is_one_line_naming_the_option():
    for kwargs, key in [
        ({"frames_per_seed": 0}, "frames_per_seed"),
        ({"fps": 0.0}, "fps"),
        ({"fps": 5000.0}, "fps"),
        ({"norm": "loud"}, "norm"),
        ({"size": 0}, "size"),
        ({"size": (64, 99999)}, "size"),
        ({"size": 64, "size_mode": "stretch"}, "size"),
        ({"translate": (0.1, 11.0)}, "translate"),
        ({"psi": 3.0, "psi_to": 1.0}, "psi"),
        ({"psi_to": 2.5}, "psi"),
        ({"class_idx": -1}, "class"),
        ({"audio_speed": 2.0}, "audio_speed"),
        ({"loop_start": 1.5}, "loop_start"),
        ({"gain_db": float("nan")}, "gain_db"),  # no bounds, but a number
        ({"loop_start": 0.5, "loop": False}, "loop_start"),
    ]:
        with pytest.raises(OptionError) as caught:
            MapsOptions(**kwargs).check()
        assert caught.value.key == key, kwargs
        assert "\n" not in str(caught.value)


def test_the_description_is_every_option_as_plain_data():
    described = describe_options()
    assert [d["name"] for d in described] == list(OPTIONS)
    json.dumps(described)  # a page can be sent it as it is
    by_key = {d["key"]: d for d in described}
    assert by_key["frames_per_seed"]["flag"] == "--frames-per-seed" and by_key["frames_per_seed"]["low"] == 1
    assert by_key["norm"]["choices"] == ["none", "global", "fixed", "frame"]
    assert by_key["class"]["name"] == "class_idx" and by_key["class"]["table"] == "walk"
    assert all(d["help"] for d in described)


def test_the_command_line_starts_without_torch():
    """The flags come from a declaration that imports no torch: `irep3d --help` stays fast."""
    import subprocess
    import sys

    code = "import sys, irep3d.cli; import typer.main; typer.main.get_command(irep3d.cli.app); print('torch' in sys.modules)"
    assert (
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout.strip()
        == "False"
    )


def test_a_forms_text_is_read_as_the_flag_reads_it():
    """A page's form gives text: "15" is 15 frames, "true" a loop, "24" fps 24.0; text that
    is no number is one line naming the option."""
    from irep3d.options import maps_options

    options = maps_options(frames_per_seed="15", loop="false", fps="24", gain_db=3, rotate="-1")
    assert (options.frames_per_seed, options.loop, options.fps, options.gain_db, options.rotate) == (
        15,
        False,
        24.0,
        3.0,
        -1,
    )
    assert isinstance(options.fps, float) and isinstance(
        options.gain_db, float
    )  # clip.json: 24.0, as the flag
    for values, message in [
        ({"frames_per_seed": "many"}, "--frames-per-seed must be a whole number, not 'many'"),
        ({"loop": "maybe"}, "--loop must be true or false, not 'maybe'"),
        ({"fps": "fast"}, "--fps must be a number, not 'fast'"),
    ]:
        with pytest.raises(OptionError) as caught:
            maps_options(**values)
        assert str(caught.value) == message
