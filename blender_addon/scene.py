"""Step "scene" of the flow: an irep3d EXR clip becomes a displaced, lit, path-traced scene.

Pure `bpy`, no UI: the add-on's button, the tests and the irep3d CLI (in a Blender
subprocess) all call `build_displacement_scene`. What it builds, all as plain data so the
saved .blend renders with stock Blender and no add-on:

* a plane with UVs, the clip's aspect ratio, 2 m tall, with a Simple Subdivision modifier
  using adaptive subdivision (dicing in screen pixels; a fixed level where unavailable);
* a material reading the frames as an image SEQUENCE (Non-Color) into true displacement:
  Image -> height (luminance or one channel) -> Displacement -> Material Output, and a base
  colour that is the activation RGB, a flat colour, a ramp over the height, or the RGB of
  another clip of the same length and fps (a second image sequence, e.g. a shallow layer
  colouring the relief of a deep one in a locked pack);
* a light at the plane's edge, low and grazing (or above it), a camera framing the plane,
  an optional world volume that makes the light's beam visible;
* Cycles (CPU) with the preset's bounces, samples, adaptive sampling and OpenImageDenoise;
  frame range and fps from `clip.json`; 16-bit PNG frames by default.

Every datablock it creates carries the ID property `irep3d` (its role), so a re-build
removes exactly irep3d's previous objects and data. `save_blend` stores paths relative
to the .blend, so a .blend plus its clip folder can move to another machine.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
from dataclasses import asdict
from pathlib import Path
from typing import Any

import bpy
from mathutils import Vector

try:  # the installed add-on (extension zip, a wheel's share/) carries copies of the modules
    from . import integrity
    from .presets import OUTPUT_FORMATS, Preset, PresetError, SceneSettings, override
except ImportError:  # a checkout: irep3d's own, next to blender_addon/
    from irep3d import integrity
    from irep3d.presets import OUTPUT_FORMATS, Preset, PresetError, SceneSettings, override

__all__ = [
    "COLLECTION_NAME",
    "TAG",
    "ClipError",
    "SceneSettings",
    "SettingsError",
    "build_displacement_scene",
    "colour_clip",
    "read_clip",
    "resolve_settings",
    "save_blend",
]

TAG = "irep3d"  # ID property on every datablock the builder creates; its value is the role
COLLECTION_NAME = "irep3d"
MANIFEST_NAME = "clip.json"
PLANE_HEIGHT = 2.0  # metres; the width follows the clip's aspect ratio


class ClipError(ValueError):
    """A clip folder that cannot be used (missing, no clip.json, missing frames): one line."""


class SettingsError(PresetError):
    """A setting that overrides the preset has an invalid value: one line."""


def resolve_settings(preset: Preset, settings: SceneSettings | None = None) -> Preset:
    """The preset with `settings` applied: the values the builder uses.

    A colour clip in `settings` also sets the colour mode to "clip": asking for a colour
    clip means colouring the surface with it, whatever the preset's colour mode.
    """
    values = asdict(settings or SceneSettings())
    if values.get("colour_clip"):
        values["colour_mode"] = "clip"
    else:  # None or "" (an empty panel field): the preset's own colour clip, if any
        values["colour_clip"] = None
    try:
        return override(preset, **values)
    except SettingsError:
        raise
    except PresetError as e:
        raise SettingsError(str(e), e.setting, e.value, e.reason) from None


def read_clip(clip_dir: str | Path) -> dict[str, Any]:
    """Read and check a clip folder written by `irep3d maps` (the folder or its clip.json).

    Returns the manifest plus `dir` (the folder, absolute) and `first_file` (the first
    frame's absolute path). Raises `ClipError` when the folder, clip.json or a frame is
    missing, or the manifest lacks what a scene needs.
    """
    if not str(clip_dir).strip():
        raise ClipError("no clip folder given; choose a folder written by `irep3d maps` (or its clip.json)")
    path = Path(clip_dir).expanduser()
    if path.is_file():
        folder, manifest = path.parent, path
    else:
        folder, manifest = path, path / MANIFEST_NAME
    if not folder.is_dir():
        raise ClipError(f"clip folder {folder} does not exist; give a folder written by `irep3d maps`")
    if not manifest.is_file():
        raise ClipError(f"{folder} has no {MANIFEST_NAME}; give a clip folder written by `irep3d maps`")
    try:
        data = json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ClipError(f"cannot read {manifest}: {e}") from None
    if not isinstance(data, dict):
        raise ClipError(f"{manifest} is not a clip manifest (expected a JSON object)")
    frames = data.get("frames")
    if isinstance(frames, bool) or not isinstance(frames, int) or frames < 1:
        raise ClipError(f"{manifest}: 'frames' must be a whole number >= 1, not {frames!r}")
    pattern = data.get("files")
    if not isinstance(pattern, str) or "#" not in pattern:
        raise ClipError(f"{manifest}: 'files' must be a name pattern like 'clip_#####.exr', not {pattern!r}")
    first = data.get("first_frame", 1)
    if isinstance(first, bool) or not isinstance(first, int) or first < 0:
        raise ClipError(f"{manifest}: 'first_frame' must be a whole number >= 0, not {first!r}")
    fps = data.get("fps", 30.0)
    if isinstance(fps, bool) or not isinstance(fps, int | float) or fps <= 0:
        raise ClipError(f"{manifest}: 'fps' must be a number > 0, not {fps!r}")
    folder = folder.resolve()
    names = [_frame_name(pattern, first + i) for i in range(frames)]
    missing = [n for n in names if not (folder / n).is_file()]
    if missing:
        raise ClipError(
            f"clip {folder} lacks {len(missing)} of its {frames} frames (first missing: {missing[0]}); "
            "re-run `irep3d maps` to finish it"
        )
    if data.get("complete") is False:
        raise ClipError(
            f"clip {folder} is incomplete (its {MANIFEST_NAME} says so); re-run `irep3d maps` to finish it"
        )
    damage = integrity.first_damage(folder / n for n in names)
    if damage:
        raise ClipError(
            f"clip {folder} has a damaged frame: {damage}; run the command that made the clip "
            "again: it renders damaged frames anew"
        )
    resolution = data.get("resolution") or [1, 1]
    if not (isinstance(resolution, list) and len(resolution) == 2 and all(_positive(v) for v in resolution)):
        raise ClipError(f"{manifest}: 'resolution' must be [width, height], not {resolution!r}")
    return {
        **data,
        "name": str(data.get("name") or folder.name),
        "frames": frames,
        "first_frame": first,
        "fps": float(fps),
        "loop": bool(data.get("loop", False)),
        "resolution": [int(resolution[0]), int(resolution[1])],
        "dir": str(folder),
        "first_file": str(folder / names[0]),
    }


def build_displacement_scene(
    clip_dir: str | Path,
    preset: Preset,
    settings: SceneSettings | None = None,
    scene: bpy.types.Scene | None = None,
) -> bpy.types.Scene:
    """Build the displacement scene for a clip into `scene` (default: the current scene).

    Args:
        clip_dir: the clip folder (or its clip.json).
        preset: the look (`presets.load_preset`).
        settings: overrides of the preset's values (`None` fields keep the preset's).
        scene: where to build; irep3d's objects from an earlier build are replaced.

    Raises `ClipError` for an unusable clip (or a colour clip whose frame count or fps
    differs from the height clip's) and `SettingsError` for a bad override, before anything
    in the file changes.
    """
    clip = read_clip(clip_dir)
    look = resolve_settings(preset, settings)
    colour = colour_clip(clip, look)
    scene = scene or bpy.context.scene
    _colour_management(scene, look)  # the one setting only Blender can check
    remove_previous(scene)

    collection = _collection(scene)
    aspect = clip["resolution"][0] / clip["resolution"][1]
    half = Vector((PLANE_HEIGHT * aspect / 2, PLANE_HEIGHT / 2, 0.0))
    material = _material(clip, look, colour)
    _plane(collection, half, material, look)
    _light(collection, half, look)
    _render_settings(scene, clip, look)
    _world(scene, look)
    camera = _camera(collection, half, look)
    scene.camera = camera
    scene.frame_set(scene.frame_start)
    return scene


def colour_clip(clip: dict[str, Any], look: Preset) -> dict[str, Any] | None:
    """The colour clip of a look (`read_clip`'s dict), or None when the look has none.

    `look.colour_clip` is a clip folder, absolute or relative to the height clip's parent
    folder (so in a pack a sibling clip's name is enough). It must have the height clip's
    frame count and fps: the two sequences step together, and a loop stays a loop.
    """
    if look.colour_mode != "clip":
        return None
    if not look.colour_clip:
        raise SettingsError(
            'surface colour "clip" needs a colour clip: set surface.colour_from in the preset, '
            "or give one (--colour-from, or the panel's Colour clip)"
        )
    path = Path(look.colour_clip).expanduser()
    if not path.is_absolute():
        path = Path(clip["dir"]).parent / path
    colour = read_clip(path)
    if colour["frames"] != clip["frames"] or colour["fps"] != clip["fps"]:
        raise ClipError(
            f"colour clip {colour['name']} has {colour['frames']} frames at {colour['fps']:g} fps but height "
            f"clip {clip['name']} has {clip['frames']} frames at {clip['fps']:g} fps; "
            "give a colour clip of the same length and fps (e.g. another clip of the same locked pack)"
        )
    return colour


def save_blend(path: str | Path) -> None:
    """Save the current file to `path`, make every path relative to it, save again."""
    path = Path(path).expanduser().resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    bpy.ops.wm.save_as_mainfile(filepath=str(path))
    bpy.ops.file.make_paths_relative()
    for scene in bpy.data.scenes:
        if any(obj.get(TAG) for obj in scene.objects):  # irep3d's scene: where the CLI renders the file
            scene.render.filepath = f"//renders/{path.stem}/"
            continue
        out = scene.render.filepath
        if out and not out.startswith("//"):
            with contextlib.suppress(ValueError):  # another drive (Windows): keep it absolute
                scene.render.filepath = bpy.path.relpath(out)
    bpy.ops.wm.save_mainfile()


def remove_previous(scene: bpy.types.Scene) -> None:
    """Remove what an earlier build put into `scene` (objects, their data, material,
    images, world), leaving everything else untouched."""
    for obj in [o for o in scene.objects if o.get(TAG)]:
        bpy.data.objects.remove(obj)
    if scene.world is not None and scene.world.get(TAG):
        scene.world = None
    for data in (bpy.data.meshes, bpy.data.lights, bpy.data.cameras, bpy.data.materials, bpy.data.worlds):
        for block in [b for b in data if b.get(TAG) and b.users == 0]:
            data.remove(block)
    for image in [i for i in bpy.data.images if i.get(TAG) and i.users == 0]:
        bpy.data.images.remove(image)


# --- pieces ------------------------------------------------------------------------------


def _frame_name(pattern: str, frame: int) -> str:
    return re.sub(r"#+", lambda m: f"{frame:0{len(m.group())}d}", pattern, count=1)


def _positive(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value > 0


def _tag(block: bpy.types.ID, role: str) -> bpy.types.ID:
    block[TAG] = role
    return block


def _collection(scene: bpy.types.Scene) -> bpy.types.Collection:
    collection = next((c for c in scene.collection.children if c.get(TAG)), None)
    if collection is None:
        collection = _tag(bpy.data.collections.new(COLLECTION_NAME), "collection")
        scene.collection.children.link(collection)
    return collection


def _plane(
    collection: bpy.types.Collection, half: Vector, material: bpy.types.Material, look: Preset
) -> bpy.types.Object:
    mesh = _tag(bpy.data.meshes.new("irep3d_plane"), "plane")
    hx, hy = half.x, half.y
    mesh.from_pydata([(-hx, -hy, 0), (hx, -hy, 0), (hx, hy, 0), (-hx, hy, 0)], [], [(0, 1, 2, 3)])
    uv = mesh.uv_layers.new(name="UVMap")
    for loop, co in zip(uv.data, ((0, 0), (1, 0), (1, 1), (0, 1)), strict=True):
        loop.uv = co
    mesh.polygons.foreach_set("use_smooth", [True])
    mesh.materials.append(material)
    mesh.update()
    plane = _tag(bpy.data.objects.new("irep3d_plane", mesh), "plane")
    collection.objects.link(plane)

    # Simple (not Catmull-Clark) subdivision keeps the plane's square corners.
    mod = plane.modifiers.new("irep3d_subdivision", "SUBSURF")
    mod.subdivision_type = "SIMPLE"
    level = max(1, min(10, round(8 + math.log2(look.subdivision_detail))))
    mod.levels = min(level, 4)  # viewport
    mod.render_levels = level  # used only where adaptive subdivision is unavailable
    if hasattr(mod, "use_adaptive_subdivision"):  # Blender 5.0+
        mod.use_adaptive_subdivision = True
        mod.adaptive_space = "PIXEL"
        mod.adaptive_pixel_size = max(0.1, 1.0 / look.subdivision_detail)
    elif hasattr(plane, "cycles") and hasattr(plane.cycles, "use_adaptive_subdivision"):  # 4.x
        plane.cycles.use_adaptive_subdivision = True
        plane.cycles.dicing_rate = max(0.1, 1.0 / look.subdivision_detail)
    return plane


def _sequence_node(
    nodes: bpy.types.Nodes, clip: dict[str, Any], name: str, role: str, colorspace: str
) -> bpy.types.ShaderNodeTexImage:
    """An Image Texture node playing `clip` as an image sequence: frame N of the timeline is
    frame N of the clip, wrapping around (`use_cyclic`) when the clip loops."""
    tex = nodes.new("ShaderNodeTexImage")
    tex.name = tex.label = name
    tex.image = _image(clip, role, colorspace)
    tex.interpolation = "Cubic"  # smoother relief between the clip's pixels
    tex.extension = "EXTEND"
    user = tex.image_user
    user.frame_duration = clip["frames"]
    user.frame_start = 1
    user.frame_offset = clip["first_frame"] - 1
    user.use_cyclic = clip["loop"]
    user.use_auto_refresh = True
    return tex


def _material(clip: dict[str, Any], look: Preset, colour: dict[str, Any] | None = None) -> bpy.types.Material:
    mat = _tag(bpy.data.materials.new("irep3d_displacement"), "material")
    if bpy.app.version < (5, 0, 0):
        mat.use_nodes = True
    if hasattr(mat, "displacement_method"):
        mat.displacement_method = "DISPLACEMENT"
    else:  # older Cycles keeps it on the material's Cycles settings
        mat.cycles.displacement_method = "DISPLACEMENT"
    nodes, links = mat.node_tree.nodes, mat.node_tree.links
    nodes.clear()

    tex = _sequence_node(nodes, clip, "irep3d frames", "frames", "Non-Color")
    tex.location = (-900, 0)

    if look.height_source == "luminance":
        height_node = nodes.new("ShaderNodeRGBToBW")
        height_node.name = height_node.label = "irep3d height"
        links.new(tex.outputs["Color"], height_node.inputs["Color"])
        height = height_node.outputs["Val"]
    else:
        height_node = nodes.new("ShaderNodeSeparateColor")
        height_node.name = height_node.label = "irep3d height"
        links.new(tex.outputs["Color"], height_node.inputs["Color"])
        height = height_node.outputs[{"R": "Red", "G": "Green", "B": "Blue"}[look.height_source]]
    height_node.location = (-600, -250)

    disp = nodes.new("ShaderNodeDisplacement")
    disp.name = disp.label = "irep3d displacement"
    disp.space = "OBJECT"
    disp.inputs["Midlevel"].default_value = look.midlevel
    disp.inputs["Scale"].default_value = look.displacement_strength
    links.new(height, disp.inputs["Height"])
    disp.location = (-300, -250)

    bsdf = nodes.new("ShaderNodeBsdfPrincipled")
    bsdf.inputs["Roughness"].default_value = look.roughness
    bsdf.inputs["Metallic"].default_value = look.metallic
    bsdf.location = (-300, 250)
    if look.colour_mode == "activation":
        links.new(tex.outputs["Color"], bsdf.inputs["Base Color"])
    elif look.colour_mode == "clip" and colour is not None:
        # The clip's values are linear data; as albedo they are read as linear colour (the
        # scene's working space): the same numbers as Non-Color in Blender's default
        # Linear Rec.709 working space, and converted correctly in any other one.
        colour_tex = _sequence_node(nodes, colour, "irep3d colour frames", "colour frames", "Linear Rec.709")
        colour_tex.location = (-900, 400)
        links.new(colour_tex.outputs["Color"], bsdf.inputs["Base Color"])
    elif look.colour_mode == "ramp":
        ramp = nodes.new("ShaderNodeValToRGB")
        ramp.name = ramp.label = "irep3d colour ramp"
        ramp.location = (-600, 250)
        elements = ramp.color_ramp.elements
        while len(elements) > 1:
            elements.remove(elements[-1])
        elements[0].position = look.ramp[0][0]
        elements[0].color = (*look.ramp[0][1], 1.0)
        for position, colour in look.ramp[1:]:
            elements.new(position).color = (*colour, 1.0)
        links.new(height, ramp.inputs["Fac"])
        links.new(ramp.outputs["Color"], bsdf.inputs["Base Color"])
    else:
        bsdf.inputs["Base Color"].default_value = (*look.base_colour, 1.0)

    out = nodes.new("ShaderNodeOutputMaterial")
    out.target = "ALL"
    out.location = (0, 0)
    links.new(bsdf.outputs["BSDF"], out.inputs["Surface"])
    links.new(disp.outputs["Displacement"], out.inputs["Displacement"])
    return mat


def _image(clip: dict[str, Any], role: str = "frames", colorspace: str = "Non-Color") -> bpy.types.Image:
    image = _tag(bpy.data.images.load(clip["first_file"], check_existing=False), role)
    image.name = f"irep3d_{clip['name']}"
    image.source = "SEQUENCE"
    image.colorspace_settings.name = colorspace
    if bpy.data.filepath:  # already saved: store the path relative to the .blend now
        with contextlib.suppress(ValueError):  # another drive (Windows): keep it absolute
            image.filepath = bpy.path.relpath(clip["first_file"])
    return image


_EDGE_AXES = {  # edge -> (start corner, end corner, both in units of the half size)
    "left": ((-1, -1), (-1, 1)),
    "right": ((1, -1), (1, 1)),
    "front": ((-1, -1), (1, -1)),
    "back": ((-1, 1), (1, 1)),
    "centre": ((-1, 0), (1, 0)),
}


def light_location(half: Vector, edge: str, position: float, height: float) -> Vector:
    """Where the light sits: `position` (0..1) along `edge` of a plane of half size `half`,
    `height` metres above it."""
    (x0, y0), (x1, y1) = _EDGE_AXES[edge]
    t = position
    return Vector(((x0 + (x1 - x0) * t) * half.x, (y0 + (y1 - y0) * t) * half.y, height))


def _light(collection: bpy.types.Collection, half: Vector, look: Preset) -> bpy.types.Object:
    data = _tag(bpy.data.lights.new("irep3d_light", look.light_type), "light")
    data.energy = look.light_energy
    data.color = look.light_colour
    if look.light_type == "AREA":
        data.shape = "DISK"
        data.size = max(look.light_radius, 1e-4)
    else:
        data.shadow_soft_size = look.light_radius
    if look.light_type == "SPOT":
        data.spot_size = math.radians(min(look.light_spot_angle, 180.0))
        data.spot_blend = 0.3
    light = _tag(bpy.data.objects.new("irep3d_light", data), "light")
    light.location = light_location(half, look.light_edge, look.light_position, look.light_height)
    # Aim across the plane: at its centre from an edge, straight down from above it.
    target = Vector((light.location.x, light.location.y, 0.0)) if look.light_edge == "centre" else Vector()
    direction = target - light.location
    light.rotation_euler = direction.to_track_quat("-Z", "Y").to_euler()
    collection.objects.link(light)
    return light


def _camera(collection: bpy.types.Collection, half: Vector, look: Preset) -> bpy.types.Object:
    data = _tag(bpy.data.cameras.new("irep3d_camera"), "camera")
    data.lens = look.camera_lens
    data.sensor_width = 36.0
    data.sensor_fit = "AUTO"
    camera = _tag(bpy.data.objects.new("irep3d_camera", data), "camera")
    collection.objects.link(camera)

    elevation, azimuth = math.radians(look.camera_elevation), math.radians(look.camera_azimuth)
    towards_camera = Vector(
        (
            math.sin(azimuth) * math.cos(elevation),
            -math.cos(azimuth) * math.cos(elevation),
            math.sin(elevation),
        )
    )
    rotation = (-towards_camera).to_track_quat("-Z", "Y")
    camera.rotation_euler = rotation.to_euler()
    # Frame the plane's corners, at the lowest and highest displacement, tightly. With the
    # camera at d (towards it), u (up) and r (right) from the plane's centre, a point at
    # (a, b, c) in those axes is in view when |b - u| <= (d - c) tan(half vertical fov) and
    # |a - r| <= (d - c) tan(half horizontal fov): solved exactly for the nearest d.
    width, height = look.resolution
    tan_x = data.sensor_width / 2 / data.lens
    if height > width:  # sensor_fit AUTO: the sensor spans the longer side
        tan_x *= width / height
    tan_y = tan_x * height / width
    right, up, back = (rotation @ Vector(axis) for axis in ((1, 0, 0), (0, 1, 0), (0, 0, 1)))
    top = look.displacement_strength * (1.0 - look.midlevel)
    bottom = -look.displacement_strength * look.midlevel
    corners = [
        Vector((sx * half.x, sy * half.y, z)) * look.camera_margin
        for sx in (-1, 1)
        for sy in (-1, 1)
        for z in (top, bottom)
    ]
    offsets, distance = [], 0.0
    for axis, tan in ((right, tan_x), (up, tan_y)):
        high = max(p.dot(axis) + tan * p.dot(back) for p in corners)
        low = min(p.dot(axis) - tan * p.dot(back) for p in corners)
        offsets.append((high + low) / 2)
        distance = max(distance, (high - low) / (2 * tan))
    camera.location = back * distance + right * offsets[0] + up * offsets[1]
    data.clip_start = max(0.01, distance / 1000)
    data.clip_end = distance * 10
    return camera


def _world(scene: bpy.types.Scene, look: Preset) -> None:
    world = _tag(bpy.data.worlds.new("irep3d_world"), "world")
    if bpy.app.version < (5, 0, 0):
        world.use_nodes = True
    nodes, links = world.node_tree.nodes, world.node_tree.links
    nodes.clear()
    background = nodes.new("ShaderNodeBackground")
    background.inputs["Color"].default_value = (*look.world_colour, 1.0)
    background.inputs["Strength"].default_value = look.world_strength
    out = nodes.new("ShaderNodeOutputWorld")
    out.location = (300, 0)
    links.new(background.outputs["Background"], out.inputs["Surface"])
    if look.volume_density > 0:
        scatter = nodes.new("ShaderNodeVolumeScatter")
        scatter.name = scatter.label = "irep3d volume"
        scatter.inputs["Density"].default_value = look.volume_density
        scatter.inputs["Anisotropy"].default_value = look.volume_anisotropy
        scatter.location = (0, -200)
        links.new(scatter.outputs["Volume"], out.inputs["Volume"])
    scene.world = world


def _render_settings(scene: bpy.types.Scene, clip: dict[str, Any], look: Preset) -> None:
    render = scene.render
    render.engine = "CYCLES"
    cycles = scene.cycles
    cycles.device = "CPU"
    cycles.samples = look.samples
    cycles.use_adaptive_sampling = True
    cycles.adaptive_threshold = look.adaptive_threshold
    cycles.use_denoising = look.denoise
    cycles.denoiser = "OPENIMAGEDENOISE"
    if hasattr(cycles, "denoising_use_gpu"):
        cycles.denoising_use_gpu = False
    cycles.max_bounces = look.max_bounces
    cycles.diffuse_bounces = look.diffuse_bounces
    cycles.glossy_bounces = look.glossy_bounces
    cycles.transmission_bounces = look.transmission_bounces
    cycles.volume_bounces = look.volume_bounces
    cycles.dicing_rate = 1.0  # the modifier's pixel size decides; this is a global multiplier
    render.film_transparent = False

    render.resolution_x, render.resolution_y = look.resolution
    render.resolution_percentage = 100
    fps = clip["fps"]
    render.fps = max(1, round(fps))
    render.fps_base = render.fps / fps
    scene.frame_start = 1
    scene.frame_end = clip["frames"]
    scene.frame_step = 1

    _output_format(render, look.output_format)
    render.filepath = _render_folder(clip)
    render.use_file_extension = True


def _render_folder(clip: dict[str, Any]) -> str:
    """Where Render animation writes (`irep3d.renders`): the folder `irep3d blender render`
    uses for this .blend, `renders/<blend name>/` beside it, once the file is saved
    (`save_blend` sets it too); before that, `renders/<clip name>/` beside the clip's folder."""
    if bpy.data.filepath:
        return f"//renders/{Path(bpy.data.filepath).stem}/"
    return str(Path(clip["dir"]).parent / "renders" / clip["name"]) + "/"


def _colour_management(scene: bpy.types.Scene, look: Preset) -> None:
    try:
        scene.view_settings.view_transform = look.view_transform
    except TypeError:
        raise SettingsError(
            f"view transform '{look.view_transform}' is not available in this Blender; "
            "use one of Standard, Filmic, AgX, Khronos PBR Neutral"
        ) from None
    scene.view_settings.look = "None"
    scene.view_settings.exposure = look.exposure


def _output_format(render: bpy.types.RenderSettings, output_format: str) -> None:
    if output_format not in OUTPUT_FORMATS:  # resolve_settings checked it; a guard for callers
        raise SettingsError(f"unknown output format '{output_format}'; valid: {', '.join(OUTPUT_FORMATS)}")
    image = render.image_settings
    if output_format == "FFMPEG":
        if hasattr(image, "media_type"):  # Blender 5.0+: video is a media type
            image.media_type = "VIDEO"
        image.file_format = "FFMPEG"
        render.ffmpeg.format = "MPEG4"
        render.ffmpeg.codec = "H264"
        render.ffmpeg.constant_rate_factor = "HIGH"
        render.ffmpeg.ffmpeg_preset = "GOOD"
        return
    if hasattr(image, "media_type"):
        image.media_type = "IMAGE"
    if output_format == "PNG":
        image.file_format = "PNG"
        image.color_mode = "RGB"
        image.color_depth = "16"
        image.compression = 15
    else:
        image.file_format = "OPEN_EXR"
        image.color_mode = "RGB"
        image.color_depth = "16"
        image.exr_codec = "ZIP"
