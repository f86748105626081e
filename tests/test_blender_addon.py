"""The Blender add-on (`blender_addon/`): presets, the scene builder, operators, portability.

Runs against the real `bpy` (Blender 5.0 as a Python module) on tiny clips and renders.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.blender_util import (
    ADDON_DIR,
    BLENDER_EXT,
    render_frame,
    reset_blender,
    scene_summary,
)
from tests.clip_util import make_clip

# isort: split
# blender_util points Blender's user folders at a temp folder before bpy is first imported.
import addon_utils
import bpy
from mathutils import Vector

from blender_addon import presets, scene
from blender_addon import render as frames
from blender_addon.presets import Preset, PresetError, load_preset, load_presets, preset_dirs
from blender_addon.scene import ClipError, SceneSettings, build_displacement_scene, read_clip, save_blend

BUILTIN = ("edge-point-light", "volumetric-edge-light", "soft-overhead", "activation-albedo")
TINY = SceneSettings(resolution=(64, 48), samples=8)


@pytest.fixture(autouse=True)
def fresh_blender(monkeypatch):
    monkeypatch.delenv(presets.PRESETS_ENV, raising=False)
    reset_blender()
    yield
    reset_blender()


@pytest.fixture
def clip(tmp_path: Path) -> Path:
    return make_clip(tmp_path / "clips" / "blob")


@pytest.fixture
def addon():
    module = addon_utils.enable("blender_addon", default_set=True, handle_error=None)
    assert module is not None and hasattr(bpy.types.Scene, "irep3d")
    yield module
    addon_utils.disable("blender_addon", default_set=True, handle_error=None)


def _objects(sc: bpy.types.Scene) -> dict[str, bpy.types.Object]:
    return {obj.type: obj for obj in sc.objects if obj.get(scene.TAG)}


# --- presets ---------------------------------------------------------------------------------


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


def test_panel_defaults_are_the_default_preset():
    """The panel starts with `Preset()` defaults and the default preset listed first."""
    default = load_preset("edge-point-light")
    for name in ("displacement_strength", "midlevel", "height_source", "subdivision_detail"):
        assert getattr(Preset(), name) == getattr(default, name), name
    for name in ("light_position", "light_height", "samples", "output_format"):
        assert getattr(Preset(), name) == getattr(default, name), name


def test_readme_documents_every_key():
    readme = (ADDON_DIR.parent / "scenes" / "README.md").read_text()
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
    monkeypatch.setenv(presets.PRESETS_ENV, f"{env_a}{presets.os.pathsep}{env_b}")

    dirs = preset_dirs([extra])
    assert dirs[0] == presets.builtin_preset_dir() == ADDON_DIR.parent / "scenes"
    assert dirs[1:] == [env_a, env_b, extra]
    found = load_presets(dirs)
    assert found["edge-point-light"].light_energy == 5.0  # a user folder overrides the built-in
    assert found["mine"].description == "extra wins"
    assert load_preset("mine", dirs).description == "extra wins"
    assert load_preset(str(env_b / "mine.toml")).description == "b"  # a path works too


def test_extension_zip_presets_folder_comes_first(tmp_path):
    """Inside a built extension the presets sit in `presets/` next to presets.py."""
    (tmp_path / "presets").mkdir()
    shutil.copy(ADDON_DIR / "presets.py", tmp_path / "presets.py")
    shutil.copy(ADDON_DIR.parent / "scenes" / "soft-overhead.toml", tmp_path / "presets")
    code = "import presets; print(presets.builtin_preset_dir()); print(sorted(presets.load_presets()))"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True
    )
    assert out.stdout.split("\n")[:2] == [str(tmp_path / "presets"), "['soft-overhead']"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[light]\nwatts = 3\n", "unknown key 'light.watts'"),
        ("[lights]\nenergy = 3\n", "unknown section [lights]"),
        ('[light]\ntype = "laser"\n', "expected one of POINT, AREA, SPOT"),
        ("[light]\nposition = 2.0\n", "expected a number in 0..1"),
        ("[render]\nsamples = 0\n", "whole number >= 1"),
        ('[surface]\nbase_colour = "red"\n', "expected a colour"),
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


# --- clips -----------------------------------------------------------------------------------


def test_read_clip_accepts_folder_or_manifest(clip):
    info = read_clip(clip)
    assert info == read_clip(clip / "clip.json")
    assert (info["frames"], info["fps"], info["loop"], info["name"]) == (4, 24.0, True, "blob")
    assert info["first_file"] == str(clip.resolve() / "blob_00001.exr")


def test_bad_clips_are_one_clear_line(tmp_path, clip):
    with pytest.raises(ClipError, match="does not exist"):
        read_clip(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ClipError, match=r"has no clip\.json"):
        read_clip(tmp_path / "empty")
    (clip / "blob_00003.exr").unlink()
    with pytest.raises(ClipError, match=r"lacks 1 of its 4 frames \(first missing: blob_00003.exr\)"):
        read_clip(clip)
    with pytest.raises(ClipError, match="no clip folder given"):
        read_clip("")


# --- the scene -------------------------------------------------------------------------------


def test_scene_contents(clip):
    sc = build_displacement_scene(str(clip), load_preset("edge-point-light"), TINY)
    objs = _objects(sc)
    assert set(objs) == {"MESH", "LIGHT", "CAMERA"}
    plane, light, camera = objs["MESH"], objs["LIGHT"], objs["CAMERA"]

    # The plane: UVs, adaptive Simple subdivision, square (32x32 clip) and 2 m tall.
    assert plane.data.uv_layers.active is not None
    xs, ys = [v.co.x for v in plane.data.vertices], [v.co.y for v in plane.data.vertices]
    assert (min(xs), max(xs), min(ys), max(ys)) == (-1, 1, -1, 1)
    (mod,) = plane.modifiers
    assert mod.type == "SUBSURF" and mod.use_adaptive_subdivision and mod.adaptive_space == "PIXEL"

    # True displacement from the image sequence.
    mat = plane.active_material
    assert mat.displacement_method == "DISPLACEMENT"
    nodes = mat.node_tree.nodes
    tex = next(n for n in nodes if n.bl_idname == "ShaderNodeTexImage")
    assert tex.image.source == "SEQUENCE" and tex.image.colorspace_settings.name == "Non-Color"
    user = tex.image_user
    assert (user.frame_duration, user.frame_start, user.frame_offset) == (4, 1, 0)
    assert user.use_cyclic and user.use_auto_refresh
    disp = next(n for n in nodes if n.bl_idname == "ShaderNodeDisplacement")
    assert disp.inputs["Scale"].default_value == pytest.approx(0.25)
    assert disp.inputs["Midlevel"].default_value == pytest.approx(0.5)
    height = disp.inputs["Height"].links[0].from_node
    assert height.bl_idname == "ShaderNodeRGBToBW"
    assert height.inputs["Color"].links[0].from_node == tex
    out = next(n for n in nodes if n.bl_idname == "ShaderNodeOutputMaterial")
    assert out.inputs["Displacement"].links[0].from_node == disp

    # A point light low on the plane's left edge, aimed across it.
    assert light.data.type == "POINT" and light.data.energy == pytest.approx(
        load_preset("edge-point-light").light_energy
    )
    assert light.location.x == pytest.approx(-1.0)
    assert light.location.y == pytest.approx(0.0)
    assert 0 < light.location.z < 0.25
    aim = light.matrix_world.to_3x3() @ Vector((0, 0, -1))
    assert aim.x > 0.9  # pointing across the plane, nearly level

    # The camera sees all four corners.
    assert sc.camera == camera
    from bpy_extras.object_utils import world_to_camera_view

    for v in plane.data.vertices:
        ndc = world_to_camera_view(sc, camera, v.co)
        assert 0 <= ndc.x <= 1 and 0 <= ndc.y <= 1 and ndc.z > 0

    # Cycles, frames and output from the preset and clip.json.
    assert sc.render.engine == "CYCLES" and sc.cycles.device == "CPU"
    assert sc.cycles.samples == 8 and sc.cycles.use_adaptive_sampling
    assert sc.cycles.use_denoising and sc.cycles.denoiser == "OPENIMAGEDENOISE"
    assert (sc.cycles.max_bounces, sc.cycles.diffuse_bounces) == (32, 16)
    assert (sc.frame_start, sc.frame_end, sc.render.fps, sc.render.fps_base) == (1, 4, 24, 1.0)
    assert (sc.render.resolution_x, sc.render.resolution_y) == (64, 48)
    assert sc.render.image_settings.file_format == "PNG" and sc.render.image_settings.color_depth == "16"


def test_settings_override_the_preset(clip):
    settings = SceneSettings(
        displacement_strength=0.4,
        midlevel=0.2,
        height_source="G",
        subdivision_detail=2.0,
        light_position=0.0,
        light_height=0.3,
        samples=3,
        resolution=(40, 30),
        output_format="EXR",
    )
    sc = build_displacement_scene(str(clip), load_preset("edge-point-light"), settings)
    plane, light = _objects(sc)["MESH"], _objects(sc)["LIGHT"]
    disp = plane.active_material.node_tree.nodes["irep3d displacement"]
    assert disp.inputs["Scale"].default_value == pytest.approx(0.4)
    assert disp.inputs["Midlevel"].default_value == pytest.approx(0.2)
    (link,) = disp.inputs["Height"].links
    assert (link.from_node.bl_idname, link.from_socket.name) == ("ShaderNodeSeparateColor", "Green")
    assert plane.modifiers[0].adaptive_pixel_size == pytest.approx(0.5)
    assert tuple(light.location) == pytest.approx((-1.0, -1.0, 0.3))
    assert sc.cycles.samples == 3 and (sc.render.resolution_x, sc.render.resolution_y) == (40, 30)
    assert sc.render.image_settings.file_format == "OPEN_EXR"

    build_displacement_scene(
        str(clip), load_preset("edge-point-light"), SceneSettings(output_format="FFMPEG")
    )
    assert sc.render.image_settings.file_format == "FFMPEG" and sc.render.ffmpeg.codec == "H264"
    bad_view = presets.dataclasses.replace(load_preset("edge-point-light"), view_transform="Nope")
    with pytest.raises(scene.SettingsError, match="view transform 'Nope' is not available"):
        build_displacement_scene(str(clip), bad_view)
    with pytest.raises(scene.SettingsError, match="height_source = 'alpha' is invalid: expected one of"):
        build_displacement_scene(
            str(clip), load_preset("edge-point-light"), SceneSettings(height_source="alpha")
        )


@pytest.mark.parametrize("name", BUILTIN)
def test_every_builtin_preset_builds(clip, name):
    preset = load_preset(name)
    sc = build_displacement_scene(str(clip), preset, TINY)
    plane, light = _objects(sc)["MESH"], _objects(sc)["LIGHT"]
    assert light.data.type == preset.light_type
    base = plane.active_material.node_tree.nodes["Principled BSDF"].inputs["Base Color"]
    source = base.links[0].from_node.bl_idname if base.is_linked else None
    expected = {"activation": "ShaderNodeTexImage", "ramp": "ShaderNodeValToRGB", "flat": None}
    assert source == expected[preset.colour_mode]
    volume = sc.world.node_tree.nodes.get("irep3d volume")
    assert (volume is not None) == (preset.volume_density > 0)
    if volume is not None:
        assert volume.outputs["Volume"].links[0].to_node.bl_idname == "ShaderNodeOutputWorld"


# --- a colour clip (cross-clip material) -----------------------------------------------------

GREEN = (0.05, 0.8, 0.1)


def _base_colour_node(sc: bpy.types.Scene) -> bpy.types.Node | None:
    base = _objects(sc)["MESH"].active_material.node_tree.nodes["Principled BSDF"].inputs["Base Color"]
    return base.links[0].from_node if base.is_linked else None


def test_colour_clip_colours_the_surface(clip, tmp_path):
    """Height from the blob clip, colour from a green clip: the render turns green."""
    green = make_clip(clip.parent / "green", name="green", rgb=GREEN)
    look = load_preset("activation-albedo")  # colours with the height clip itself (red-orange)
    small = {"resolution": (32, 24), "samples": 2}
    sc = build_displacement_scene(str(clip), look, SceneSettings(**small))
    own = render_frame(sc, 2, tmp_path / "own.png")[..., :3].reshape(-1, 3).mean(axis=0)

    sc = build_displacement_scene(str(clip), look, SceneSettings(colour_clip=str(green), **small))
    tex = _base_colour_node(sc)
    assert tex.name == "irep3d colour frames" and tex.image.source == "SEQUENCE"
    assert bpy.path.abspath(tex.image.filepath) == str(green.resolve() / "green_00001.exr")
    assert tex.image.colorspace_settings.name == "Linear Rec.709"  # linear colour, not data
    height_tex = _objects(sc)["MESH"].active_material.node_tree.nodes["irep3d frames"]
    for user in (tex.image_user, height_tex.image_user):  # the two sequences step together
        assert (user.frame_duration, user.frame_start, user.use_cyclic) == (4, 1, True)
    crossed = render_frame(sc, 2, tmp_path / "crossed.png")[..., :3].reshape(-1, 3).mean(axis=0)
    share, crossed_share = own / own.sum(), crossed / crossed.sum()  # chromaticity (AgX desaturates)
    assert share[1] < 0.3  # the blob's own colours: red blob on blue ground, little green
    assert crossed_share[1] > 0.45 and crossed_share[1] > share[1] + 0.15  # the green clip's colour


def test_colour_clip_from_a_preset_key(clip, tmp_path):
    """`[surface] colour = "clip"` + `colour_from`: a sibling clip's name is enough."""
    make_clip(clip.parent / "green", name="green", rgb=GREEN)
    path = tmp_path / "crossed.toml"
    path.write_text('[surface]\ncolour = "clip"\ncolour_from = "green"\n')
    sc = build_displacement_scene(str(clip), load_preset(str(path)), TINY)
    assert _base_colour_node(sc).image.filepath.endswith("green_00001.exr")

    path.write_text('[surface]\ncolour = "flat"\ncolour_from = "green"\n')
    with pytest.raises(PresetError, match=re.escape("surface.colour must be \"clip\", not 'flat'")):
        load_preset(str(path))
    path.write_text('[surface]\ncolour = "clip"\n')
    reset_blender()
    with pytest.raises(scene.SettingsError, match="needs a colour clip"):
        build_displacement_scene(str(clip), load_preset(str(path)), TINY)
    assert not _objects(bpy.context.scene)


@pytest.mark.parametrize(("frames", "fps"), [(3, 24.0), (4, 30.0)])
def test_a_colour_clip_of_another_length_or_fps_is_refused(clip, frames, fps):
    other = make_clip(clip.parent / "other", name="other", frames=frames, fps=fps)
    with pytest.raises(ClipError, match=f"colour clip other has {frames} frames at {fps:g} fps but height "
                       "clip blob has 4 frames at 24 fps"):  # fmt: skip
        build_displacement_scene(
            str(clip), load_preset("edge-point-light"), SceneSettings(colour_clip=str(other))
        )
    assert not _objects(bpy.context.scene)


def test_panel_colour_clip_reaches_the_scene(clip, addon):
    green = make_clip(clip.parent / "green", name="green", rgb=GREEN)
    props = bpy.context.scene.irep3d
    props.clip_dir, props.colour_clip = str(clip), str(green)
    props.preset = "soft-overhead"  # a preset without a colour clip keeps the panel's
    assert props.colour_clip == str(green)
    assert bpy.ops.irep3d.build_displacement_scene(**addon.properties.panel_kwargs(props)) == {"FINISHED"}
    assert _base_colour_node(bpy.context.scene).name == "irep3d colour frames"


def test_rebuild_replaces_only_irep3d_data(clip):
    keep = bpy.data.objects.new("user_empty", None)
    bpy.context.scene.collection.objects.link(keep)
    for name in ("edge-point-light", "soft-overhead"):
        build_displacement_scene(str(clip), load_preset(name), TINY)
    sc = bpy.context.scene
    assert sorted(o.name for o in sc.objects) == [
        "irep3d_camera",
        "irep3d_light",
        "irep3d_plane",
        "user_empty",
    ]
    assert len(bpy.data.materials) == len(bpy.data.images) == len(bpy.data.worlds) == 1
    assert len(bpy.data.meshes) == len(bpy.data.lights) == len(bpy.data.cameras) == 1
    assert _objects(sc)["LIGHT"].data.type == "AREA"


# --- the add-on ------------------------------------------------------------------------------


def test_operator_equals_library_call(clip, addon):
    kwargs = {"displacement_strength": 0.3, "light_position": 0.25, "resolution": (64, 48), "samples": 8}
    result = bpy.ops.irep3d.build_displacement_scene(clip_dir=str(clip), preset="edge-point-light", **kwargs)
    assert result == {"FINISHED"}
    by_operator = scene_summary(bpy.context.scene)

    reset_blender()
    build_displacement_scene(str(clip), load_preset("edge-point-light"), SceneSettings(**kwargs))
    assert scene_summary(bpy.context.scene) == by_operator
    disp = bpy.data.materials[0].node_tree.nodes["irep3d displacement"]
    assert disp.inputs["Scale"].default_value == pytest.approx(0.3)  # the keyword, not the preset's 0.25


def test_operator_reports_errors_and_builds_nothing(clip, addon):
    with pytest.raises(RuntimeError, match="unknown preset 'nope'; valid presets"):
        bpy.ops.irep3d.build_displacement_scene(clip_dir=str(clip), preset="nope")
    with pytest.raises(RuntimeError, match=r"has no clip\.json"):
        bpy.ops.irep3d.build_displacement_scene(clip_dir=str(clip.parent), preset="edge-point-light")
    with pytest.raises(RuntimeError, match="build the displacement scene first"):
        bpy.ops.irep3d.render_animation()
    assert not _objects(bpy.context.scene)


def test_panel_and_preset_choice(clip, addon):
    panel = bpy.types.IREP3D_PT_displacement
    assert (panel.bl_space_type, panel.bl_region_type, panel.bl_category) == ("VIEW_3D", "UI", "irep3d")
    props = bpy.context.scene.irep3d
    items = [item[0] for item in addon.properties.preset_items(props, bpy.context)]
    assert items[0] == "edge-point-light" and set(BUILTIN) <= set(items)

    props.preset = "soft-overhead"  # copies the preset's values into the panel
    assert props.displacement_strength == pytest.approx(load_preset("soft-overhead").displacement_strength)
    props.clip_dir = str(clip)
    props.samples = 5
    # The button's invoke fills every setting not given from the panel (no window here to invoke).
    assert bpy.ops.irep3d.build_displacement_scene(**addon.properties.panel_kwargs(props)) == {"FINISHED"}
    sc = bpy.context.scene
    assert _objects(sc)["LIGHT"].data.type == "AREA" and sc.cycles.samples == 5


def test_render_animation_operator_writes_frames(clip, addon, tmp_path):
    bpy.ops.irep3d.build_displacement_scene(clip_dir=str(clip), resolution=(32, 24), samples=2)
    sc = bpy.context.scene
    sc.frame_end = 2
    sc.render.filepath = str(tmp_path / "out" / "f_")
    assert bpy.ops.irep3d.render_animation() == {"FINISHED"}
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["f_0001.png", "f_0002.png"]


def test_render_button_resumes_and_keeps_finished_frames(clip, addon, tmp_path):
    """Render animation renders only the frames not there yet, each through a temp name
    renamed into place, as `irep3d blender render` does (the same `render.render_frame`)."""
    bpy.ops.irep3d.build_displacement_scene(clip_dir=str(clip), resolution=(32, 24), samples=2)
    sc = bpy.context.scene
    sc.frame_end = 3
    out = tmp_path / "out"
    out.mkdir()
    sc.render.filepath = str(out / "f_")
    Image.new("RGB", (32, 24), (9, 9, 9)).save(out / "f_0002.png")  # finished: never rendered again
    finished = (out / "f_0002.png").read_bytes()
    assert bpy.ops.irep3d.render_animation() == {"FINISHED"}
    assert sorted(p.name for p in out.iterdir()) == ["f_0001.png", "f_0002.png", "f_0003.png"]  # no temps
    assert (out / "f_0002.png").read_bytes() == finished
    assert sc.render.filepath == str(out / "f_")  # the output path is left as it was
    first = bpy.data.images.load(str(out / "f_0001.png"))
    assert tuple(first.size) == (32, 24)
    bpy.data.images.remove(first)

    mtimes = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    whole = (out / "f_0003.png").read_bytes()
    (out / "f_0003.png").write_bytes(whole[: len(whole) // 2])  # resume: a damaged frame again
    assert bpy.ops.irep3d.render_animation("INVOKE_DEFAULT") == {"FINISHED"}  # no window: at once
    assert sorted(p.name for p in out.iterdir()) == ["f_0001.png", "f_0002.png", "f_0003.png"]
    assert {n: out.joinpath(n).stat().st_mtime_ns for n in ("f_0001.png", "f_0002.png")} == {
        n: mtimes[n] for n in ("f_0001.png", "f_0002.png")
    }
    again = (out / "f_0003.png").read_bytes()
    assert len(again) > len(whole) // 2 and again.endswith(b"IEND\xaeB`\x82")  # rendered whole again


def test_render_button_refuses_a_clip_with_missing_frames(clip, addon, tmp_path):
    """A clip frame gone would render pink: the button stops before the first frame."""
    bpy.ops.irep3d.build_displacement_scene(clip_dir=str(clip), resolution=(32, 24), samples=2)
    bpy.context.scene.render.filepath = str(tmp_path / "out" / "f_")
    sorted(clip.glob("*.exr"))[2].unlink()
    with pytest.raises(RuntimeError, match=r"the clip of image .* is missing 1 frames"):
        bpy.ops.irep3d.render_animation()
    assert not (tmp_path / "out").exists()


def test_render_button_writes_a_video_with_blenders_own_render(clip, addon, tmp_path):
    """A video is one file, not frames: Blender's animation render writes it (clips checked first)."""
    bpy.ops.irep3d.build_displacement_scene(
        clip_dir=str(clip), resolution=(32, 24), samples=1, output_format="FFMPEG"
    )
    sc = bpy.context.scene
    sc.frame_end = 2
    sc.render.filepath = str(tmp_path / "out" / "v_")
    assert bpy.ops.irep3d.render_animation() == {"FINISHED"}
    assert [p.suffix for p in (tmp_path / "out").iterdir()] == [".mp4"]


def test_the_addon_slices_shards_as_irep3d_does():
    """The render job slices frames in Blender (no irep3d there): the same slices."""
    from irep3d.shards import shard_range

    for first, last in ((1, 1), (1, 3), (0, 47), (5, 104), (7, 6)):
        for n in range(1, 10):
            for i in range(n):
                assert frames.shard_range(first, last, (i, n)) == shard_range(first, last, (i, n))


def test_saved_blend_is_relative_and_renders_elsewhere(clip, tmp_path):
    """A .blend plus its clip folder moved elsewhere renders with plain Blender (no add-on)."""
    project = clip.parent.parent  # tmp_path: clips/blob + scene.blend
    build_displacement_scene(
        str(clip), load_preset("edge-point-light"), SceneSettings(resolution=(64, 48), samples=6)
    )
    save_blend(project / "scene.blend")
    image = next(i for i in bpy.data.images if i.get(scene.TAG))
    assert image.filepath == "//clips/blob/blob_00001.exr"
    assert bpy.context.scene.render.filepath.startswith("//")

    moved = tmp_path.parent / (tmp_path.name + "_moved")
    shutil.move(str(project), str(moved))
    try:
        reset_blender()
        assert not hasattr(bpy.types.Scene, "irep3d")  # the add-on is not registered
        bpy.ops.wm.open_mainfile(filepath=str(moved / "scene.blend"))
        sc = bpy.context.scene
        # Plain data only: nothing that needs the add-on (or any script) to render.
        assert not bpy.data.node_groups and not bpy.data.texts
        assert all(o.animation_data is None for o in sc.objects) and sc.animation_data is None
        first = render_frame(sc, 1, moved / "f1.png")
        third = render_frame(sc, 3, moved / "f3.png")
    finally:
        shutil.rmtree(moved, ignore_errors=True)
    assert first.shape == (48, 64, 4)
    assert first[..., :3].mean() > 0.02  # lit, not black
    diff = np.abs(first[..., :3] - third[..., :3])
    assert diff.mean() > 0.01 and (diff.max(axis=-1) > 0.1).mean() > 0.02  # the relief moved


def test_extension_validates_and_builds(tmp_path):
    run = subprocess.run(
        [sys.executable, str(BLENDER_EXT), "validate", str(ADDON_DIR)], capture_output=True, text=True
    )
    assert run.returncode == 0, run.stdout + run.stderr
    run = subprocess.run(
        [
            sys.executable,
            str(BLENDER_EXT),
            "build",
            "--source-dir",
            str(ADDON_DIR),
            "--output-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    (zip_path,) = tmp_path.glob("irep3d-*.zip")
    names = zipfile.ZipFile(zip_path).namelist()
    for module in (
        "__init__.py",
        "blender_manifest.toml",
        "scene.py",
        "presets.py",
        "operators.py",
        "panels.py",
        "render.py",
        "jobs.py",
    ):
        assert module in names
