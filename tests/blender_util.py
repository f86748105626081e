"""Helpers for the Blender tests: a clean Blender, renders read back, scene summaries."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

# Blender reads its user folders when bpy is imported: keep it away from the real ones.
os.environ.setdefault("BLENDER_USER_RESOURCES", tempfile.mkdtemp(prefix="irep3d-blender-"))
_home = os.environ.get("HOME")
os.environ["HOME"] = tempfile.mkdtemp(prefix="irep3d-home-")
try:
    import bpy
finally:
    if _home is None:
        os.environ.pop("HOME", None)
    else:
        os.environ["HOME"] = _home

REPO = Path(__file__).resolve().parent.parent
ADDON_DIR = REPO / "blender_addon"
BLENDER_EXT = Path(bpy.utils.system_resource("SCRIPTS")) / "addons_core" / "bl_pkg" / "cli" / "blender_ext.py"


def reset_blender() -> None:
    bpy.ops.wm.read_factory_settings(use_empty=True)


def render_frame(scene: bpy.types.Scene, frame: int, path: Path) -> np.ndarray:
    """Render one frame to a PNG and read it back as float RGBA [h, w, 4]."""
    scene.frame_set(frame)
    scene.render.filepath = str(path)
    bpy.ops.render.render(write_still=True, scene=scene.name)
    image = bpy.data.images.load(str(path), check_existing=False)
    try:
        w, h = image.size
        pixels = np.empty(w * h * 4, dtype=np.float32)
        image.pixels.foreach_get(pixels)
    finally:
        bpy.data.images.remove(image)
    return pixels.reshape(h, w, 4)


def _round(value: object) -> object:
    if isinstance(value, float):
        return round(value, 5)
    if hasattr(value, "__len__") and not isinstance(value, str):
        return tuple(_round(v) for v in value)
    return value


def scene_summary(scene: bpy.types.Scene) -> dict:
    """What a user would see of a built scene, as plain values (for comparing builds)."""
    out: dict = {}
    for obj in sorted(scene.objects, key=lambda o: o.name):
        entry = {
            "type": obj.type,
            "location": _round(tuple(obj.location)),
            "rotation": _round(tuple(obj.rotation_euler)),
        }
        if obj.type == "MESH":
            entry["vertices"] = _round([tuple(v.co) for v in obj.data.vertices])
            entry["modifiers"] = [
                (m.type, m.subdivision_type, m.use_adaptive_subdivision, _round(m.adaptive_pixel_size))
                for m in obj.modifiers
            ]
        elif obj.type == "LIGHT":
            entry["light"] = (obj.data.type, _round(obj.data.energy), _round(obj.data.shadow_soft_size))
        elif obj.type == "CAMERA":
            entry["lens"] = _round(obj.data.lens)
        out[obj.name] = entry
    for mat in bpy.data.materials:
        nodes = {}
        for node in mat.node_tree.nodes:
            nodes[node.name] = {
                i.name: _round(i.default_value)
                for i in node.inputs
                if hasattr(i, "default_value") and not i.is_linked
            }
        links = sorted(
            (lk.from_node.name, lk.from_socket.name, lk.to_node.name, lk.to_socket.name)
            for lk in mat.node_tree.links
        )
        out[f"material:{mat.name}"] = {"method": mat.displacement_method, "nodes": nodes, "links": links}
    cycles, render = scene.cycles, scene.render
    out["render"] = {
        "engine": render.engine,
        "samples": cycles.samples,
        "bounces": (cycles.max_bounces, cycles.diffuse_bounces, cycles.glossy_bounces, cycles.volume_bounces),
        "denoise": (cycles.use_denoising, cycles.denoiser),
        "adaptive": (cycles.use_adaptive_sampling, _round(cycles.adaptive_threshold)),
        "resolution": (render.resolution_x, render.resolution_y),
        "frames": (scene.frame_start, scene.frame_end, render.fps, _round(render.fps_base)),
        "format": (render.image_settings.file_format, render.image_settings.color_depth),
        "filepath": render.filepath,
    }
    return out
