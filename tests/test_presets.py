"""The presets module (`irep3d/presets.py`): preset files, and the one declaration of every
scene setting that the CLI, a release file, the add-on and a web form all derive from."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import typer.main

from irep3d import presets
from irep3d.blender import SceneJob, build_scene, scene_settings
from irep3d.blender.addon import VENDORED
from irep3d.cli import app
from irep3d.errors import OptionError, UsageError
from irep3d.presets import (
    DEFAULT_PRESET,
    PRESET_KEYS,
    SCENE_SETTINGS,
    Preset,
    PresetError,
    SceneSettings,
    check_settings,
    describe_settings,
    load_preset,
    load_presets,
    override,
    preset_dirs,
)

REPO = Path(__file__).resolve().parents[1]
BUILTIN = ("edge-point-light", "volumetric-edge-light", "soft-overhead", "activation-albedo")


@pytest.fixture(autouse=True)
def no_user_presets(monkeypatch):
    monkeypatch.delenv(presets.PRESETS_ENV, raising=False)


# --- preset files ----------------------------------------------------------------------------


def test_builtin_presets_load_and_describe_themselves():
    found = load_presets()
    assert set(BUILTIN) <= set(found)
    for name in BUILTIN:
        assert found[name].name == name
        assert found[name].description
    edge = found["edge-point-light"]
    assert (edge.light_type, edge.light_edge) == ("POINT", "left")
    assert edge.max_bounces >= 16 and edge.light_height < 0.5
    assert found["volumetric-edge-light"].volume_density > 0
    assert found["activation-albedo"].colour_mode == "activation"
    assert found["soft-overhead"].light_type == "AREA"


def test_readme_documents_every_key():
    readme = (REPO / "scenes" / "README.md").read_text()
    for key in presets.preset_keys():
        assert f"| `{key}` |" in readme, key
    for name in BUILTIN:
        assert f"| `{name}` |" in readme, name


def test_preset_dirs_order_and_override(tmp_path, monkeypatch):
    env_a, env_b, extra = tmp_path / "a", tmp_path / "b", tmp_path / "extra"
    for folder in (env_a, env_b, extra):
        folder.mkdir()
    (env_a / "edge-point-light.toml").write_text('description = "mine"\n[light]\nenergy = 5.0\n')
    (env_b / "mine.toml").write_text('description = "b"\n')
    (extra / "mine.toml").write_text('description = "extra wins"\n')
    monkeypatch.setenv(presets.PRESETS_ENV, f"{env_a}{os.pathsep}{env_b}")

    dirs = preset_dirs([extra])
    assert dirs[0] == presets.builtin_preset_dir() == REPO / "scenes"
    assert dirs[1:] == [env_a, env_b, extra]
    found = load_presets(dirs)
    assert found["edge-point-light"].light_energy == 5.0  # a user folder overrides the built-in
    assert found["mine"].description == "extra wins"
    assert load_preset("mine", dirs).description == "extra wins"
    assert load_preset(str(env_b / "mine.toml")).description == "b"  # a path works too


#: Where the module can live (its path) and where the presets shipped with it are then.
LAYOUTS = {
    "checkout": ("repo/irep3d/presets.py", "repo/scenes"),
    "installed wheel": (
        "prefix/lib/python3.11/site-packages/irep3d/presets.py",
        "prefix/share/irep3d/scenes",
    ),
    "extension zip": ("irep3d_blender/presets.py", "irep3d_blender/presets"),
    "a wheel's add-on copy": ("prefix/share/irep3d/blender_addon/presets.py", "prefix/share/irep3d/scenes"),
}


@pytest.mark.parametrize("layout", LAYOUTS)
def test_the_shipped_presets_are_found_wherever_the_module_lives(tmp_path, layout):
    module, shipped = (tmp_path / p for p in LAYOUTS[layout])
    module.parent.mkdir(parents=True)
    shipped.mkdir(parents=True)
    shutil.copy(REPO / "irep3d" / "presets.py", module)
    shutil.copy(REPO / "scenes" / "soft-overhead.toml", shipped)
    (tmp_path / "repo" / "scenes").mkdir(parents=True, exist_ok=True)  # a decoy for the others
    code = (
        f"import sys; sys.path.insert(0, {str(module.parent)!r}); import presets; "
        "print(presets.builtin_preset_dir()); print(sorted(presets.load_presets()))"
    )
    env = {k: v for k, v in os.environ.items() if k != presets.PRESETS_ENV}
    out = subprocess.run(
        [sys.executable, "-I", "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.split("\n")[:2] == [str(shipped), "['soft-overhead']"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[light]\nwatts = 3\n", "unknown key 'light.watts'"),
        ("[lights]\nenergy = 3\n", "unknown section [lights]"),
        ('[light]\ntype = "laser"\n', "expected one of POINT, AREA, SPOT"),
        ("[light]\nposition = 2.0\n", "expected a number in 0..1"),
        ("[render]\nsamples = 0\n", "whole number >= 1"),
        ('[surface]\nbase_colour = "red"\n', "expected a colour"),
        ("[world]\nvolume_anisotropy = 1.0\n", "expected a number in (-1, 1)"),
        ("[render\n", "invalid TOML"),
    ],
)
def test_bad_preset_file_is_one_clear_line(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(PresetError, match=re.escape(message)) as info:
        load_preset(str(path))
    assert "\n" not in str(info.value)


def test_unknown_preset_lists_the_valid_names():
    with pytest.raises(PresetError, match=r"unknown preset 'nope'; valid presets: .*edge-point-light"):
        load_preset("nope")
    with pytest.raises(PresetError, match="does not exist"):
        load_preset("/no/such/preset.toml")


# --- the declaration -------------------------------------------------------------------------


def test_every_preset_field_is_declared_once():
    fields = [s.field for s in PRESET_KEYS]
    assert sorted(fields) == sorted(f.name for f in dataclasses.fields(Preset) if f.name != "name")
    assert len({s.key for s in PRESET_KEYS}) == len(PRESET_KEYS)
    names = [s.name for s in SCENE_SETTINGS]
    assert len(set(names)) == len(names) and all(s.label and s.help for s in SCENE_SETTINGS)
    assert [f.name for f in dataclasses.fields(SceneSettings)] == [s.field for s in SCENE_SETTINGS]


def test_a_preset_file_takes_what_an_override_takes():
    """One check: a key in a preset file and the same setting as an override convert alike."""
    for setting, value, expected in (
        ("output_format", "video", "FFMPEG"),
        ("height_source", "r", "R"),
        ("resolution", [64, 48], (64, 48)),
        ("samples", 3, 3),
    ):
        key = next(s.key for s in PRESET_KEYS if s.field == setting)
        section, _, name = key.rpartition(".")
        parsed = presets.parse_preset({section: {name: value}}, "p")
        assert getattr(parsed, setting) == expected
        assert getattr(override(Preset(), **{setting: value}), setting) == expected
        assert check_settings({setting: value}) == {setting: expected}


BAD = {
    "strength": ("high", "expected a number"),
    "midlevel": (1.5, "expected a number in 0..1"),
    "height_source": ("alpha", "expected one of luminance, R, G, B"),
    "detail": (0.0, "expected a number in 0.01..10"),
    "light_position": (2.0, "expected a number in 0..1"),
    "light_height": (-1.0, "expected a number in 0.001..100"),
    "samples": (0, "expected a whole number >= 1"),
    "resolution": ((2, 2), "expected [width, height] in pixels, each side in 4..65536"),
    "format": ("tiff", "expected one of png, exr, video"),
}


@pytest.mark.parametrize("name", BAD)
def test_a_bad_setting_is_said_in_each_place_s_words(name):
    """The presets module checks every setting (once); the add-on shows its message, the CLI
    the flag and a release file the key (`OptionError.key`)."""
    value, reason = BAD[name]
    setting = presets.scene_setting(name)
    with pytest.raises(PresetError) as info:
        check_settings({setting.field: value})
    assert str(info.value) == f"{setting.field} = {value!r} is invalid: {reason}"
    assert (info.value.setting, info.value.reason) == (setting, reason)
    with pytest.raises(OptionError) as option:
        scene_settings({name: value})
    shown = "2x2" if name == "resolution" else repr(value)  # as users write a size
    assert str(option.value) == f"{setting.flag} {shown} is invalid: {reason}"
    assert (option.value.key, option.value.problem) == (name, f"{shown} is invalid: {reason}")


def test_every_scene_setting_has_its_flag_and_its_release_key():
    """`blender build` offers every scene setting as a flag, and a release's [[scenes]] takes
    it as a key: both are made from the declaration."""
    from irep3d.release import file as release_file

    command = typer.main.get_command(app)
    build = command.commands["blender"].commands["build"]  # type: ignore[attr-defined]
    flags = {opt for param in build.params for opt in param.opts}
    for setting in SCENE_SETTINGS:
        assert setting.flag in flags, setting.flag
        assert setting.name in release_file._SCENE, setting.name
    assert "--format" in flags and "--detail" in flags  # the short names users give


def test_settings_by_name_become_a_scene_job_s_settings():
    given = {"strength": 0.4, "format": "exr", "detail": 2, "resolution": (40, 20), "samples": None}
    assert scene_settings(given) == {
        "displacement_strength": 0.4,
        "output_format": "EXR",
        "subdivision_detail": 2.0,
        "resolution": (40, 20),
    }
    with pytest.raises(UsageError, match="unknown scene setting 'strenght'; valid: strength, midlevel"):
        scene_settings({"strenght": 0.4})


def test_a_scene_job_s_bad_setting_is_refused_before_blender(tmp_path):
    from tests.clip_util import make_clip

    clip = make_clip(tmp_path / "blob", frames=2)
    with pytest.raises(OptionError, match=r"--light-position 2\.0 is invalid: expected a number in 0\.\.1"):
        build_scene(
            clip, tmp_path / "x.blend", "edge-point-light", {"light_position": 2.0}, blender="/nowhere"
        )
    with pytest.raises(UsageError, match="colour clip is a SceneJob's colour_dir"):
        build_scene(clip, tmp_path / "x.blend", "edge-point-light", {"colour_clip": "g"}, blender="/nowhere")
    assert SceneJob(clip, "edge-point-light", tmp_path / "x.blend").settings == {}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blob"]


def test_describe_settings_is_plain_data_a_form_can_use():
    described = describe_settings()
    assert json.loads(json.dumps(described)) == described  # JSON as it is
    default = load_preset(DEFAULT_PRESET)
    assert [d["name"] for d in described] == [s.field for s in SCENE_SETTINGS]
    by_key = {d["key"]: d for d in described}
    strength = by_key["strength"]
    assert (strength["flag"], strength["preset_key"], strength["type"]) == (
        "--strength",
        "displacement.strength",
        "number",
    )
    assert (strength["low"], strength["high"], strength["soft_high"], strength["unit"]) == (
        -10.0,
        10.0,
        1.0,
        "m",
    )
    assert by_key["resolution"]["default"] == list(default.resolution)
    assert [c["name"] for c in by_key["format"]["choices"]] == ["png", "exr", "video"]
    assert by_key["format"]["choices"][2] == {
        "value": "FFMPEG",
        "name": "video",
        "label": "Video (MP4)",
        "help": "One H.264 MP4 file",
    }
    for entry in described:
        assert entry["help"] and entry["label"]
        value = entry["default"]
        assert value == (list(v) if isinstance(v := getattr(default, entry["name"]), tuple) else v)
        if entry["type"] in ("number", "whole") and entry["low"] is not None:
            assert entry["low"] <= value and (entry["high"] is None or value <= entry["high"])
    soft = describe_settings(load_preset("soft-overhead"))
    assert [d["default"] for d in soft if d["key"] == "light_height"] == [
        load_preset("soft-overhead").light_height
    ]


def test_the_vendored_modules_travel_in_a_wheel():
    """The add-on's copies of irep3d's standard-library modules (`VENDORED`) are data files
    of the wheel, beside the add-on in `share/irep3d/blender_addon`."""
    data_files = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["data-files"]
    shipped = data_files["share/irep3d/blender_addon"]
    assert "presets.py" in VENDORED
    for name in VENDORED:
        assert f"irep3d/{name}" in shipped, name
