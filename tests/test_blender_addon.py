"""The Blender add-on (`blender_addon/`): presets, the scene builder, operators, portability.

Runs against the real `bpy` (Blender 5.0 as a Python module) on tiny clips and renders.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from tests.blender_util import render_frame, reset_blender, scene_summary
from tests.clip_util import make_clip
from tests.proc_util import run_cli

# isort: split
# blender_util points Blender's user folders at a temp folder before bpy is first imported.
import addon_utils
import bpy
from mathutils import Vector

from blender_addon import render as frames
from blender_addon import scene
from blender_addon.scene import ClipError, SceneSettings, build_displacement_scene, read_clip, save_blend
from irep3d import presets
from irep3d.presets import PresetError, load_preset

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


def test_panel_defaults_are_the_default_preset(addon):
    """A scene's panel starts with the default preset's value of every scene setting."""
    default = load_preset(presets.DEFAULT_PRESET)
    props = bpy.context.scene.irep3d
    for setting in presets.SCENE_SETTINGS:
        value = getattr(props, setting.field)
        value = tuple(value) if setting.type == "size" else value
        expected = getattr(default, setting.field)
        assert value == (pytest.approx(expected) if setting.type == "number" else expected), setting.field


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
        light_energy=7.5,
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
    assert light.data.energy == pytest.approx(7.5)
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
    assert bpy.ops.irep3d.build_displacement_scene(**addon.properties.panel_kwargs(props)) == {"FINISHED"}
    sc = bpy.context.scene
    assert _objects(sc)["LIGHT"].data.type == "AREA" and sc.cycles.samples == 5


def test_panel_and_operator_properties_come_from_the_declaration(addon):
    """Every scene setting is a property of the panel and of the build operator, with the
    label, help, bounds and choices of its one declaration (`presets.SCENE_SETTINGS`)."""
    panel = bpy.types.Scene.bl_rna.properties["irep3d"].fixed_type.properties
    operator = bpy.ops.irep3d.build_displacement_scene.get_rna_type().properties
    for rna in (panel, operator):
        for setting in presets.SCENE_SETTINGS:
            prop = rna[setting.field]
            assert (prop.name, prop.description) == (setting.label, setting.help)
            if setting.type == "choice":
                assert tuple(item.identifier for item in prop.enum_items) == setting.values
            if setting.low is not None:
                assert prop.hard_min == pytest.approx(setting.low)
            if setting.high is not None:
                assert prop.hard_max == pytest.approx(setting.high)
            if setting.soft_high is not None:
                assert prop.soft_max == pytest.approx(setting.soft_high)
    assert panel["displacement_strength"].unit == "LENGTH" and panel["midlevel"].subtype == "FACTOR"
    assert panel["colour_clip"].subtype == "DIR_PATH"


@pytest.mark.parametrize("call", ["EXEC_DEFAULT", "INVOKE_DEFAULT"])
def test_a_script_s_build_with_no_arguments_builds_what_the_panel_says(clip, addon, call):
    """`bpy.ops.irep3d.build_displacement_scene('INVOKE_DEFAULT')` in a background script
    reads the panel as the button does (it used to say "no clip folder given")."""
    props = bpy.context.scene.irep3d
    props.clip_dir = str(clip)
    props.preset = "soft-overhead"
    props.samples, props.resolution, props.light_height = 5, (40, 30), 0.7
    assert bpy.ops.irep3d.build_displacement_scene(call) == {"FINISHED"}
    sc = bpy.context.scene
    assert _objects(sc)["LIGHT"].data.type == "AREA" and _objects(sc)["LIGHT"].location.z == pytest.approx(
        0.7
    )
    assert (sc.cycles.samples, sc.render.resolution_x, sc.render.resolution_y) == (5, 40, 30)

    # With arguments, the ones left out are the preset's, not the panel's.
    bpy.ops.irep3d.build_displacement_scene(call, clip_dir=str(clip), preset="soft-overhead")
    assert sc.cycles.samples == load_preset("soft-overhead").samples


def test_unavailable_actions_are_greyed_out(clip, addon):
    """`poll` says what an action needs before it is clicked: Render needs a scene irep3d
    built, with its camera; Build needs Object Mode."""
    render, build = bpy.ops.irep3d.render_animation, bpy.ops.irep3d.build_displacement_scene
    assert not render.poll() and build.poll()
    with pytest.raises(RuntimeError, match="no irep3d scene here: build the displacement scene first"):
        render()
    assert build(clip_dir=str(clip), resolution=(16, 16), samples=1) == {"FINISHED"}
    assert render.poll()
    sc = bpy.context.scene
    camera, sc.camera = sc.camera, None
    assert not render.poll()
    sc.camera = camera

    plane = _objects(sc)["MESH"]
    bpy.context.view_layer.objects.active = plane
    bpy.ops.object.mode_set(mode="EDIT")
    assert not build.poll()
    with pytest.raises(RuntimeError, match="switch to Object Mode"):
        build(clip_dir=str(clip))
    bpy.ops.object.mode_set(mode="OBJECT")
    assert build.poll()


def test_a_build_from_the_startup_scene_goes_into_a_scene_of_its_own(clip, addon, tmp_path):
    """Blender's startup scene has a 2 m Cube at the origin (hiding the 2 m plane) and a Light
    (flattening the grazing light): the panel's first render used to be black with a grey
    strip. The build goes into a new scene named after the clip, made current; the startup
    scene is left as it was, and the render is the one of a build in an empty file."""
    small = {"resolution": (48, 36), "samples": 4}
    alone = build_displacement_scene(str(clip), load_preset("edge-point-light"), SceneSettings(**small))
    expected = render_frame(alone, 2, tmp_path / "alone.png")[..., :3]

    bpy.ops.wm.read_homefile(use_factory_startup=True)  # the startup file a user sees
    startup = bpy.context.scene
    assert sorted(o.name for o in startup.objects) == ["Camera", "Cube", "Light"]
    props = startup.irep3d
    props.clip_dir = str(clip)
    props.resolution, props.samples = small["resolution"], small["samples"]
    assert bpy.ops.irep3d.build_displacement_scene() == {"FINISHED"}

    sc = bpy.context.scene
    assert sc.name == "blob" and sc != startup
    assert sorted(o.name for o in sc.objects) == ["irep3d_camera", "irep3d_light", "irep3d_plane"]
    assert sorted(o.name for o in bpy.data.scenes["Scene"].objects) == ["Camera", "Cube", "Light"]
    assert (sc.irep3d.clip_dir, sc.irep3d.preset, sc.irep3d.samples) == (str(clip), "edge-point-light", 4)
    got = render_frame(sc, 2, tmp_path / "panel.png")[..., :3]
    assert got.mean() > 0.5 * expected.mean()
    assert np.abs(got - expected).mean() < 0.01

    assert bpy.ops.irep3d.build_displacement_scene() == {"FINISHED"}  # again: rebuilt in place
    assert sorted(s.name for s in bpy.data.scenes) == ["Scene", "blob"]


def test_a_build_that_fails_leaves_no_new_scene(clip, addon):
    bpy.ops.wm.read_homefile(use_factory_startup=True)
    other = make_clip(clip.parent / "other", name="other", frames=3)
    with pytest.raises(RuntimeError, match="colour clip other has 3 frames"):
        bpy.ops.irep3d.build_displacement_scene(clip_dir=str(clip), colour_clip=str(other))
    assert [s.name for s in bpy.data.scenes] == ["Scene"] and bpy.context.scene.name == "Scene"


def test_render_button_writes_a_render_folder_that_irep3d_encodes(clip, addon, tmp_path):
    """The button renders into the folder of the scene's output path (the builder's, for a
    file not saved yet: `renders/<clip>/` next to the clip folder) as `irep3d blender render`
    does: frame_00001.png,
    … and render.json, which `irep3d encode` takes, at the scene's fps (it used to write
    `blob_0001.png`, which encode refused: "no EXR frames (<clip>_00001.exr, …)")."""
    import av

    bpy.ops.irep3d.build_displacement_scene(clip_dir=str(clip), resolution=(32, 24), samples=2)
    sc = bpy.context.scene
    sc.frame_end = 2
    assert bpy.ops.irep3d.render_animation() == {"FINISHED"}
    folder = Path(os.path.dirname(bpy.path.abspath(sc.render.filepath)))
    assert folder == clip.parent / "renders" / clip.name
    assert sorted(p.name for p in folder.iterdir()) == ["frame_00001.png", "frame_00002.png", "render.json"]
    manifest = json.loads((folder / "render.json").read_text())
    assert (manifest["blend"], manifest["scene"]) == (None, sc.name)  # a scene never saved
    assert (manifest["resolution"], manifest["samples"], manifest["frames"], manifest["fps"]) == (
        [32, 24], 2, [1, 2], 24.0
    )  # fmt: skip
    result = run_cli("encode", folder, "--codec", "h264", "--out", tmp_path / "loop.mp4", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    with av.open(str(tmp_path / "loop.mp4")) as video:
        assert (video.streams.video[0].frames, video.streams.video[0].average_rate) == (2, 24)


def test_render_button_resumes_and_keeps_finished_frames(clip, addon, tmp_path):
    """Render animation renders only the frames not there yet (or damaged), each through a
    temp name renamed into place, as `irep3d blender render` does (the same `render.render_frame`)."""
    bpy.ops.irep3d.build_displacement_scene(clip_dir=str(clip), resolution=(32, 24), samples=2)
    sc = bpy.context.scene
    sc.frame_end = 3
    out = tmp_path / "out"
    sc.render.filepath = str(out / "f_")  # the folder of the output path; frames are frame_#####
    assert bpy.ops.irep3d.render_animation() == {"FINISHED"}
    names = ["frame_00001.png", "frame_00002.png", "frame_00003.png", "render.json"]
    assert sorted(p.name for p in out.iterdir()) == names  # no temps
    assert sc.render.filepath == str(out / "f_")  # the output path is left as it was
    first = bpy.data.images.load(str(out / "frame_00001.png"))
    assert tuple(first.size) == (32, 24)
    bpy.data.images.remove(first)

    mtimes = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    (out / "frame_00001.png").unlink()  # resume: a missing frame
    whole = (out / "frame_00003.png").read_bytes()
    (out / "frame_00003.png").write_bytes(whole[: len(whole) // 2])  # and a damaged one
    assert bpy.ops.irep3d.render_animation("INVOKE_DEFAULT") == {"FINISHED"}  # no window: at once
    assert sorted(p.name for p in out.iterdir()) == names
    kept = ("frame_00002.png", "render.json")
    assert {n: out.joinpath(n).stat().st_mtime_ns for n in kept} == {n: mtimes[n] for n in kept}
    again = (out / "frame_00003.png").read_bytes()
    assert len(again) > len(whole) // 2 and again.endswith(b"IEND\xaeB`\x82")  # rendered whole again


def test_the_button_and_the_cli_resume_each_others_frames(clip, addon, tmp_path):
    """One render folder for both: the button's frames of a saved scene in `renders/<blend
    name>/` are the frames `irep3d blender render scene.blend` makes there, and the other
    way round; a scene changed since is refused, never mixed in."""
    bpy.ops.irep3d.build_displacement_scene(clip_dir=str(clip), resolution=(32, 24), samples=2)
    sc = bpy.context.scene
    sc.frame_end = 2
    blend = tmp_path / "scene.blend"
    save_blend(blend)
    sc.render.filepath = "//renders/scene/"  # where the CLI renders scene.blend by default
    folder = tmp_path / "renders" / "scene"
    assert bpy.ops.irep3d.render_animation() == {"FINISHED"}
    by_button = {p.name: p.stat().st_mtime_ns for p in sorted(folder.glob("frame_*.png"))}
    assert list(by_button) == ["frame_00001.png", "frame_00002.png"]

    cli = run_cli("blender", "render", blend, cwd=tmp_path)
    assert cli.returncode == 0, cli.stdout + cli.stderr
    assert "0 frames rendered, 2 already there" in cli.stdout
    assert {p.name: p.stat().st_mtime_ns for p in sorted(folder.glob("frame_*.png"))} == by_button
    (folder / "frame_00002.png").unlink()
    cli = run_cli("blender", "render", blend, cwd=tmp_path)
    assert "1 frames rendered, 1 already there" in cli.stdout, cli.stdout + cli.stderr
    by_cli = {p.name: p.stat().st_mtime_ns for p in sorted(folder.glob("frame_*.png"))}
    assert bpy.ops.irep3d.render_animation() == {"FINISHED"}  # the CLI's frame: kept
    assert {p.name: p.stat().st_mtime_ns for p in sorted(folder.glob("frame_*.png"))} == by_cli

    _objects(sc)["LIGHT"].data.energy *= 2  # another look: not these frames
    with pytest.raises(
        RuntimeError, match=r"holds frames of another scene \(\.\./\.\./scene\.blend\); render into"
    ):
        bpy.ops.irep3d.render_animation()
    assert {p.name: p.stat().st_mtime_ns for p in sorted(folder.glob("frame_*.png"))} == by_cli


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


INSTALLED = """
import json, sys
import bpy
zip_path, clip = sys.argv[-2:]
assert bpy.ops.extensions.package_install_files(
    filepath=zip_path, repo="user_default", enable_on_install=True
) == {"FINISHED"}
addon = sys.modules["bl_ext.user_default.irep3d"]
props = bpy.context.scene.irep3d
props.clip_dir, props.resolution, props.samples = clip, (32, 24), 1
assert bpy.ops.irep3d.build_displacement_scene() == {"FINISHED"}
scene = bpy.context.scene
print("RESULT " + json.dumps({
    "presets": str(sys.modules[addon.__name__ + ".presets"].builtin_preset_dir()),
    "preset_module": addon.scene.Preset.__module__,
    "integrity": addon.scene.integrity.__name__,
    "objects": sorted(o.name for o in scene.objects),
    "size": [scene.render.resolution_x, scene.render.resolution_y],
}))
"""


def test_the_extension_zip_installs_into_blender_and_builds(tmp_path, clip):
    """`irep3d blender addon` builds the zip (its own modules and copies of irep3d's
    standard-library ones: `VENDORED`); Blender installs and enables it, and its panel builds
    a scene with the presets and modules inside the zip, not the checkout's."""
    from irep3d.blender import build_addon_zip
    from irep3d.blender.addon import VENDORED

    zip_path = build_addon_zip(tmp_path / "irep3d.zip")
    names = zipfile.ZipFile(zip_path).namelist()
    for module in (
        "__init__.py",
        "blender_manifest.toml",
        "scene.py",
        "operators.py",
        "panels.py",
        *VENDORED,
    ):
        assert module in names
    assert "presets/edge-point-light.toml" in names
    user = tmp_path / "user"
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "BLENDER_USER_RESOURCES": str(user),
    }
    run = subprocess.run(
        [sys.executable, "-I", "-c", INSTALLED, str(zip_path), str(clip)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    found = json.loads(run.stdout.split("RESULT ", 1)[1])
    installed = user / "extensions" / "user_default" / "irep3d"
    assert found == {
        "presets": str(installed / "presets"),
        "preset_module": "bl_ext.user_default.irep3d.presets",
        "integrity": "bl_ext.user_default.irep3d.integrity",
        "objects": ["irep3d_camera", "irep3d_light", "irep3d_plane"],
        "size": [32, 24],
    }
