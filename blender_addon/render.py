"""Step "render" of the flow inside Blender: frames of a scene, one at a time, resumable.

What `irep3d blender render` runs in its Blender process (`jobs.py`) and what the add-on's
Render animation button runs, so both write the same render folder (`renders`: frames
`frame_00001.png`, … and `render.json`) and each resumes the other's frames:

* `check_inputs`: Blender renders a missing texture as pink, and a damaged frame as a flat
  plane, and calls it success, so every image the file reads, and every frame of every
  image sequence (the height and colour clips), must exist and be whole before the first
  frame renders;
* `render_folder`: the folder's manifest of this render (`manifest_fields`: the .blend,
  `scene_fingerprint`, resolution, samples, format, frame range, fps), checked against the
  one already there (`renders.RenderFolder.conflict`: frames of another scene or other
  settings are never mixed in), and written before the first frame (`write_manifest`);
* `todo_frames`: the frames whose file is not there yet, or is damaged (a re-run resumes; a
  finished frame is never rendered again);
* `render_frame`: one frame, rendered into a hidden temp name next to its file, checked to
  be a whole image, and renamed into place: a frame file is never half-written, and a write
  that failed (a full disk) is an error naming the file, not a finished frame;
* `configure` (the CLI's renders only): the job's samples, resolution, device and threads,
  frames as 16-bit PNG unless the scene writes EXR, and no metadata in the files, so a frame
  rendered again (a resumed or farmed render) is the same bytes.

bpy, the standard library, `integrity` and `renders` (irep3d's whole-file checks and its
render-folder layout, standard-library modules the installed add-on carries copies of)
only: the add-on's other modules are not needed here.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import struct
from collections.abc import Callable, Iterable
from typing import Any

import bpy

try:  # the installed add-on (extension zip, a wheel's share/) carries copies of the modules
    from . import integrity, renders
except ImportError:  # a checkout: irep3d's own, next to blender_addon/
    from irep3d import integrity, renders

__all__ = [
    "EXR_FORMATS",
    "GPU_KINDS",
    "RenderError",
    "check_inputs",
    "configure",
    "manifest_fields",
    "output_ext",
    "output_folder",
    "render_folder",
    "render_frame",
    "scene_fingerprint",
    "scene_frames",
    "sequence_files",
    "shard_range",
    "strip_png_text",
    "temp_name",
    "todo_frames",
    "use_gpu",
    "write_manifest",
    "writes_metadata",
]

EXR_FORMATS = ("OPEN_EXR", "OPEN_EXR_MULTILAYER")
GPU_KINDS = ("OPTIX", "CUDA", "HIP", "ONEAPI", "METAL")
_PNG_TEXT = (b"tEXt", b"iTXt", b"zTXt", b"tIME")


class RenderError(ValueError):
    """A scene that cannot be rendered as asked (a missing clip frame, no GPU): one line."""


def shard_range(first: int, last: int, shard: Iterable[int] = (0, 1)) -> range:
    """The frames of shard (i, n) of `first..last` (inclusive): the i-th of n contiguous
    slices. The same arithmetic as `irep3d.shards.shard_range` (a real Blender cannot import
    irep3d; irep3d checks the shard before Blender starts, and a test keeps the two equal)."""
    i, n = shard
    count = last - first + 1
    return range(first + i * count // n, first + (i + 1) * count // n)


# --------------------------------------------------------------------------- inputs


def sequence_files(image: bpy.types.Image, user: bpy.types.ImageUser) -> list[str]:
    """Every file an image sequence's user reads: the digits of its first file counted on."""
    head, tail = os.path.split(bpy.path.abspath(image.filepath, library=image.library))
    stem, ext = os.path.splitext(tail)
    digits = len(stem) - len(stem.rstrip("0123456789"))
    if not digits:
        return []
    start = int(stem[len(stem) - digits :])
    base = stem[: len(stem) - digits]
    count = max(1, user.frame_duration)
    return [os.path.join(head, f"{base}{start + i:0{digits}d}{ext}") for i in range(count)]


def check_inputs() -> None:
    """Raise `RenderError` when an image of the open file, or a frame of one of its image
    sequences (the clips), does not exist."""
    for image in bpy.data.images:
        if image.source in ("FILE", "SEQUENCE") and image.filepath and not image.packed_file:
            path = bpy.path.abspath(image.filepath, library=image.library)
            if not os.path.exists(path):
                raise RenderError(
                    f"image {image.name!r} needs {path}, which does not exist (was the clip moved?)"
                )
    for material in bpy.data.materials:  # every sequence (height and colour clips) complete
        for node in material.node_tree.nodes if material.node_tree else []:
            image = getattr(node, "image", None)
            if image is not None and image.source == "SEQUENCE" and not image.packed_file:
                files = sequence_files(image, node.image_user)
                gone = [f for f in files if not os.path.exists(f)]
                if gone:
                    raise RenderError(
                        f"the clip of image {image.name!r} is missing {len(gone)} frames, e.g. {gone[0]}"
                    )
                damage = integrity.first_damage(files)
                if damage:
                    raise RenderError(
                        f"the clip of image {image.name!r} has a damaged frame: {damage}; run the "
                        "command that made the clip again: it renders damaged frames anew"
                    )


# --------------------------------------------------------------------------- frames


def output_ext(scene: bpy.types.Scene) -> str:
    """The extension of the scene's frames: .exr or .png (`configure` makes every other
    image format PNG; the Render button refuses one with a `RenderError`)."""
    file_format = scene.render.image_settings.file_format
    if file_format in EXR_FORMATS:
        return ".exr"
    if file_format == "PNG":
        return ".png"
    raise RenderError(
        f"irep3d renders frames as PNG or OpenEXR, not {file_format}; choose one of them (or FFmpeg "
        "video) as the file format in Output Properties"
    )


def scene_frames(scene: bpy.types.Scene) -> range:
    """The frames of the scene's range, with its frame step: what its animation renders."""
    return range(scene.frame_start, scene.frame_end + 1, max(1, scene.frame_step))


def output_folder(scene: bpy.types.Scene) -> str:
    """The render folder of the Render button: the folder of the scene's output path
    (Output Properties; `//render/blob/blob_` is the folder `render/blob/` next to the
    .blend). The file-name part of the path is not used: frames are `frame_#####`."""
    return os.path.dirname(bpy.path.abspath(scene.render.filepath)) or os.getcwd()


# --------------------------------------------------------------------------- the folder


def manifest_fields(scene: bpy.types.Scene, folder: str, blend: str | None = None) -> dict[str, Any]:
    """`render.json`'s fields (see `renders`) of rendering `scene` now into `folder`, as it
    is set up (after `configure`): `blend` is the .blend that holds it (default the open
    file; none when it was never saved), stored relative to the folder."""
    render = scene.render
    blend = blend if blend is not None else (bpy.data.filepath or None)
    if blend:
        with contextlib.suppress(ValueError):  # another drive (Windows): keep it absolute
            blend = os.path.relpath(blend, folder)
    scale = render.resolution_percentage
    if render.engine == "CYCLES":
        samples = scene.cycles.samples
    else:
        samples = getattr(scene.eevee, "taa_render_samples", None) if hasattr(scene, "eevee") else None
    ext = output_ext(scene)
    return {
        "blend": blend or None,
        "scene": scene.name,
        "fingerprint": scene_fingerprint(scene, folder),
        "resolution": [render.resolution_x * scale // 100, render.resolution_y * scale // 100],
        "samples": samples,
        "image_format": render.image_settings.file_format,
        "color_depth": render.image_settings.color_depth,
        "frames": [scene.frame_start, scene.frame_end],
        "fps": round(render.fps / render.fps_base, 6),
        "files": renders.RenderFolder.pattern(ext),
    }


def render_folder(
    scene: bpy.types.Scene, folder: str, blend: str | None = None
) -> tuple[renders.RenderFolder, dict[str, Any]]:
    """The render folder `folder` for rendering `scene` now, and the manifest this render
    writes into it (`manifest_fields`).

    Raises `RenderError` (one line) when the folder holds frames another render made: of
    another scene, with other settings, or that no manifest describes.
    """
    target = renders.RenderFolder(folder)
    fields = manifest_fields(scene, folder, blend)
    try:
        problem = target.conflict(fields)
    except renders.RenderFolderError as exc:
        raise RenderError(str(exc)) from None
    if problem:
        raise RenderError(problem)
    return target, fields


def write_manifest(folder: renders.RenderFolder, fields: dict[str, Any]) -> None:
    """Write the folder's `render.json` (before its first frame); `RenderError` if it cannot be."""
    try:
        folder.write_manifest(fields)
    except renders.RenderFolderError as exc:
        raise RenderError(str(exc)) from None


def todo_frames(frames: Iterable[int], final: Callable[[int], str | os.PathLike[str]]) -> list[int]:
    """The frames whose file (`final(frame)`) is not there yet, or is not a whole image
    (one a full disk cut short before frames were checked: rendered again)."""
    return [n for n in frames if not os.path.exists(final(n)) or integrity.image_problem(final(n))]


def temp_name(final: str, tag: str) -> str:
    """The hidden temp name a frame is rendered to before it is renamed to `final`:
    `.frame_00001.<tag>.tmp.png` next to `frame_00001.png` (irep3d removes the temps of a
    render cut short by their tag)."""
    folder, name = os.path.split(final)
    stem, ext = os.path.splitext(name)
    return os.path.join(folder, f".{stem}.{tag}.tmp{ext}")


def writes_metadata(render: bpy.types.RenderSettings) -> bool:
    """Whether the scene asks for metadata in its files (Blender's Metadata panel)."""
    return any(getattr(render, name) for name in dir(render) if name.startswith("use_stamp_"))


def render_frame(scene: bpy.types.Scene, frame: int, final: str, tag: str) -> str:
    """Render `frame` of `scene` into `final`, through a temp name renamed into place once
    it is a whole image (`temp_name`, `integrity.image_problem`). A PNG loses its text
    chunks (Cycles' render timings) unless the scene asks for metadata. The scene's output
    path is left as it was. Returns `final`.

    Raises `RenderError`, naming `final`, when the frame could not be written whole: Blender
    only logs a failed write (a full disk leaves an empty or cut file) and carries on.
    """
    temp = temp_name(final, tag)
    render = scene.render
    try:
        os.makedirs(os.path.dirname(final) or ".", exist_ok=True)
    except OSError as exc:
        raise RenderError(f"cannot write frame {frame} to {final}: {exc.strerror or exc}") from None
    scene.frame_set(frame)
    saved = render.filepath
    # A still is written to exactly this name (no '#' to substitute, the extension given).
    render.filepath = temp
    written: list[str] = []
    try:
        bpy.ops.render.render(write_still=True, scene=scene.name)
        written = [p for p in (temp, render.frame_path(frame=frame)) if os.path.exists(p)]
        if not written:
            raise RenderError(f"cannot write frame {frame} to {final}: Blender wrote no file")
        if final.lower().endswith(".png") and not writes_metadata(render):
            strip_png_text(written[0])
        problem = integrity.image_problem(written[0])
        if problem:
            raise RenderError(
                f"cannot write frame {frame} to {final}: the file Blender wrote {problem} (is the disk full?)"
            )
        os.replace(written[0], final)
    except OSError as exc:
        raise RenderError(f"cannot write frame {frame} to {final}: {exc.strerror or exc}") from None
    finally:
        render.filepath = saved
        for path in {temp, *written} - {final}:
            with contextlib.suppress(OSError):
                os.unlink(path)
    return final


def strip_png_text(path: str) -> None:
    """Drop every text and time chunk of a PNG: Cycles stores its render timings there
    whatever the stamp settings say, and a frame rendered again must be the same bytes."""
    with open(path, "rb") as fh:
        data = fh.read()
    out, pos = [data[:8]], 8
    while pos + 8 <= len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        end = pos + 12 + length
        if kind not in _PNG_TEXT:
            out.append(data[pos:end])
        pos = end
    with open(path, "wb") as fh:
        fh.write(b"".join(out))


# --------------------------------------------------------------------------- settings


def use_gpu(scene: bpy.types.Scene) -> str:
    """Make Cycles render `scene` on the first kind of GPU found; which one, in words."""
    prefs = bpy.context.preferences.addons["cycles"].preferences
    for kind in GPU_KINDS:
        try:
            devices = prefs.get_devices_for_type(kind)
        except Exception:
            continue
        gpus = [d for d in devices if d.type == kind]
        if gpus:
            prefs.compute_device_type = kind
            for d in prefs.devices:
                d.use = d.type == kind
            scene.cycles.device = "GPU"
            return kind + " (" + ", ".join(d.name for d in gpus) + ")"
    raise RenderError(
        "--device gpu: Cycles finds no GPU (OptiX, CUDA, HIP, oneAPI or Metal) here; use --device cpu"
    )


def configure(
    scene: bpy.types.Scene,
    samples: int | None = None,
    resolution: Iterable[int] | None = None,
    device: str = "cpu",
    threads: int | None = None,
) -> str | None:
    """Set a scene up for `irep3d blender render`: the overrides given (None keeps the
    scene's), frames as 16-bit PNG (or the scene's EXR), no metadata stamps.

    Returns the GPU Cycles renders on (`use_gpu`) with `device="gpu"`, else None.
    """
    render = scene.render
    gpu = None
    if threads:
        render.threads_mode = "FIXED"
        render.threads = threads
    if resolution:
        render.resolution_x, render.resolution_y = resolution
        render.resolution_percentage = 100
    if samples:
        if render.engine == "CYCLES":
            scene.cycles.samples = samples
        else:
            scene.eevee.taa_render_samples = samples
    if render.engine == "CYCLES":
        if device == "gpu":
            gpu = use_gpu(scene)
        else:
            scene.cycles.device = "CPU"
    elif device == "gpu":
        raise RenderError(f"--device gpu needs the Cycles engine; this scene renders with {render.engine}")
    settings = render.image_settings
    if settings.file_format not in EXR_FORMATS:  # PNG, or a video scene rendered as frames
        if settings.media_type != "IMAGE":
            settings.media_type = "IMAGE"
        settings.file_format = "PNG"
        settings.color_depth = "16"
        settings.color_mode = "RGBA" if render.film_transparent else "RGB"
    render.use_file_extension = True
    # No render date, time or timings in the files: the same frame rendered again (a
    # resumed or farmed render) is then the same bytes, not only the same pixels.
    for name in dir(render):
        if name.startswith("use_stamp") and name != "use_stamp":
            setattr(render, name, False)
    render.use_stamp = False
    return gpu


# --------------------------------------------------------------------------- fingerprint

_SIMPLE = frozenset({"BOOLEAN", "INT", "FLOAT", "STRING", "ENUM"})
#: Property names that set what the viewport or the UI shows, never a rendered pixel.
_UI_ONLY = ("show_", "display_", "preview", "paint_", "open_", "use_preview", "is_")
#: The render settings that change a frame's pixels, besides what `render.json` records on
#: its own (resolution, samples, format); output paths, threads and stamps do not.
_RENDER_KEYS = (
    "engine",
    "film_transparent",
    "pixel_aspect_x",
    "pixel_aspect_y",
    "filter_size",
    "dither_intensity",
    "use_motion_blur",
    "motion_blur_shutter",
    "motion_blur_position",
    "use_border",
    "border_min_x",
    "border_min_y",
    "border_max_x",
    "border_max_y",
    "use_crop_to_border",
    "use_compositing",
    "use_sequencer",
    "use_freestyle",
    "line_thickness_mode",
    "line_thickness",
    "use_simplify",
    "simplify_subdivision_render",
    "simplify_volumes",
    "use_high_quality_normals",
    "hair_type",
    "hair_subdiv",
    "use_multiview",
    "use_single_layer",
)
#: Cycles and EEVEE settings left out: recorded on their own (samples), the device (CPU and
#: GPU renders of a scene are one render), or viewport- and bake-only.
_ENGINE_SKIP = frozenset(
    {"device", "samples", "taa_render_samples", "taa_samples", "texture_limit", "ao_bounces", "bake_type"}
)
#: Left out everywhere: `use_nodes` (deprecated in Blender 5; the node tree is read instead).
_ALWAYS_SKIP = frozenset({"use_nodes"})
_GENERATED = (
    "generated_type",
    "generated_width",
    "generated_height",
    "generated_color",
    "use_generated_float",
)
_OBJECT_FLAGS = (
    "hide_render",
    "visible_camera",
    "visible_diffuse",
    "visible_glossy",
    "visible_transmission",
    "visible_volume_scatter",
    "visible_shadow",
    "is_holdout",
    "is_shadow_catcher",
    "pass_index",
)


def scene_fingerprint(scene: bpy.types.Scene, folder: str) -> str:
    """SHA-256 (hex) of what decides the pixels of `scene`'s frames, besides the settings
    `render.json` records on their own (resolution, samples, format).

    Read from the scene as it is, so a .blend saved again, built again from the same clip
    and preset, or moved together with its clips and renders keeps its fingerprint, and
    the Render button and `irep3d blender render` agree on it: every object's transform,
    render visibility, geometry, modifiers and materials; lights and the camera; the
    material and world node trees with their values and links, and the images they read
    (their paths relative to `folder`, how they are read as sequences); Cycles (or EEVEE)
    settings, the render settings that change pixels, colour management and the output's
    colour mode. Transforms are taken at the scene's first frame. Viewport-only settings
    are left out, so changing what the viewport shows never refuses a resume.
    """
    frame = scene.frame_current
    scene.frame_set(scene.frame_start)  # evaluates the scene: transforms as they render
    try:
        render = scene.render
        engine = scene.cycles if render.engine == "CYCLES" else getattr(scene, "eevee", None)
        objects = sorted(scene.objects, key=lambda o: o.name)
        materials = {s.material.name: s.material for o in objects for s in o.material_slots if s.material}
        data = {
            "render": {k: _plain(getattr(render, k)) for k in _RENDER_KEYS if hasattr(render, k)},
            "engine": _values(engine, skip=_ENGINE_SKIP) if engine is not None else None,
            "view": _values(scene.view_settings),
            "display": scene.display_settings.display_device,
            "output": {
                "color_mode": render.image_settings.color_mode,
                "exr_codec": getattr(render.image_settings, "exr_codec", None),
            },
            "camera": scene.camera.name if scene.camera else None,
            "objects": [_object(obj) for obj in objects],
            "materials": {name: _material(mat, folder) for name, mat in sorted(materials.items())},
            "world": _material(scene.world, folder) if scene.world else None,
        }
    finally:
        scene.frame_set(frame)
    text = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _plain(value: Any) -> Any:
    """A property value as JSON: floats rounded (to 6 places), vectors and matrices as lists."""
    if isinstance(value, float):
        return round(value, 6)
    if isinstance(value, bool | int | str) or value is None:
        return value
    if isinstance(value, set | frozenset):  # an enum flag
        return sorted(value)
    try:
        return [_plain(v) for v in value]
    except TypeError:
        return str(value)


def _values(block: Any, base: Any = None, skip: Iterable[str] = ()) -> dict[str, Any]:
    """The plain values (numbers, flags, names) of `block`'s own properties: not those of
    the type `base` it extends (an ID's name and users, a node's place in the editor), not
    `skip`, nor the viewport-only ones (`_UI_ONLY`)."""
    inherited = {p.identifier for p in base.bl_rna.properties} if base is not None else set()
    left_out = inherited | _ALWAYS_SKIP | set(skip)
    values = {}
    for prop in block.bl_rna.properties:
        name = prop.identifier
        if prop.type in _SIMPLE and name not in left_out and not name.startswith(_UI_ONLY):
            values[name] = _plain(getattr(block, name))
    return values


def _object(obj: bpy.types.Object) -> dict[str, Any]:
    """An object as it renders: transform, visibility, data, materials, modifiers."""
    return {
        "name": obj.name,
        "type": obj.type,
        "matrix": _plain(obj.matrix_world),
        "flags": [_plain(getattr(obj, k, None)) for k in _OBJECT_FLAGS],
        "data": _data(obj.data),
        "materials": [s.material.name if s.material else None for s in obj.material_slots],
        "modifiers": [
            [m.type, m.name, m.show_render, _values(m, bpy.types.Modifier, skip=("levels",))]
            for m in obj.modifiers
        ],
    }


def _data(data: Any) -> Any:
    """An object's data: a mesh by its geometry (vertices, faces, UVs), a light, camera or
    other data by its values (a camera with its depth of field)."""
    if data is None:
        return None
    if isinstance(data, bpy.types.Mesh):
        digest = hashlib.sha256()
        for items, attribute, width in (
            (data.vertices, "co", 3),
            (data.loops, "vertex_index", 1),
            (data.polygons, "loop_total", 1),
            (data.uv_layers.active.data if data.uv_layers.active else (), "uv", 2),
        ):
            kind = "i" if attribute in ("vertex_index", "loop_total") else "f"
            values = [0] * (len(items) * width) if kind == "i" else [0.0] * (len(items) * width)
            if values:
                items.foreach_get(attribute, values)
            digest.update(struct.pack(f"<{len(values)}{kind}", *values))
        return digest.hexdigest()
    values = _values(data, bpy.types.ID)
    if isinstance(data, bpy.types.Camera):
        values["dof"] = _values(data.dof)
    return values


def _material(block: Any, folder: str) -> dict[str, Any]:
    """A material or world: its values and its node tree."""
    tree = getattr(block, "node_tree", None)
    return {"values": _values(block, bpy.types.ID), "nodes": _tree(tree, folder) if tree else None}


def _tree(tree: bpy.types.NodeTree, folder: str) -> dict[str, Any]:
    """A node tree: each node's type, values, unlinked inputs, image and ramp; the links."""
    nodes = {}
    for node in tree.nodes:
        entry: dict[str, Any] = {
            "type": node.bl_idname,
            "mute": node.mute,
            "values": _values(node, bpy.types.Node),
            "inputs": {
                s.identifier: _plain(s.default_value)
                for s in node.inputs
                if hasattr(s, "default_value") and not s.is_linked
            },
        }
        if getattr(node, "image", None) is not None:
            entry["image"] = _image(node.image, folder)
        if getattr(node, "image_user", None) is not None:
            entry["image_user"] = _values(node.image_user, skip=("frame_current",))
        if getattr(node, "color_ramp", None) is not None:
            ramp = node.color_ramp
            entry["ramp"] = [
                ramp.interpolation,
                [[_plain(e.position), _plain(e.color)] for e in ramp.elements],
            ]
        if getattr(node, "node_tree", None) is not None:  # a group
            entry["group"] = _tree(node.node_tree, folder)
        nodes[node.name] = entry
    links = sorted(
        [lk.from_node.name, lk.from_socket.identifier, lk.to_node.name, lk.to_socket.identifier, lk.is_muted]
        for lk in tree.links
    )
    return {"nodes": nodes, "links": links}


def _image(image: bpy.types.Image, folder: str) -> dict[str, Any]:
    """An image as a render reads it: its file relative to the render folder (so a project
    moved as a whole keeps its fingerprint), how it is read, its colour space."""
    path = None
    if image.filepath and not image.packed_file:
        path = bpy.path.abspath(image.filepath, library=image.library)
        with contextlib.suppress(ValueError):  # another drive (Windows): keep it absolute
            path = os.path.relpath(path, folder)
    return {
        "path": path,
        "packed": image.packed_file is not None,
        "source": image.source,
        "colorspace": image.colorspace_settings.name,
        "alpha": image.alpha_mode,
        "generated": [_plain(getattr(image, k)) for k in _GENERATED] if image.source == "GENERATED" else None,
    }
