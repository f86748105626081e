"""Step "render" of the flow inside Blender: frames of a scene, one at a time, resumable.

What `irep3d blender render` runs in its Blender process (`jobs.py`) and what the add-on's
Render animation button runs, so both behave the same:

* `check_inputs`: Blender renders a missing texture as pink, and a damaged frame as a flat
  plane, and calls it success, so every image the file reads, and every frame of every
  image sequence (the height and colour clips), must exist and be whole before the first
  frame renders;
* `todo_frames`: the frames whose file is not there yet, or is damaged (a re-run resumes; a
  finished frame is never rendered again);
* `render_frame`: one frame, rendered into a hidden temp name next to its file, checked to
  be a whole image, and renamed into place: a frame file is never half-written, and a write
  that failed (a full disk) is an error naming the file, not a finished frame;
* `configure` (the CLI's renders only): the job's samples, resolution, device and threads,
  frames as 16-bit PNG unless the scene writes EXR, and no metadata in the files, so a frame
  rendered again (a resumed or farmed render) is the same bytes.

bpy, the standard library and `integrity` (irep3d's whole-file checks, a standard-library
module the installed add-on carries a copy of) only: the add-on's other modules are not
needed here.
"""

from __future__ import annotations

import contextlib
import os
import struct
from collections.abc import Callable, Iterable

import bpy

try:  # the installed add-on (extension zip, a wheel's share/) carries a copy of the module
    from . import integrity
except ImportError:  # a checkout: irep3d's own, next to blender_addon/
    from irep3d import integrity

__all__ = [
    "EXR_FORMATS",
    "GPU_KINDS",
    "RenderError",
    "check_inputs",
    "configure",
    "output_ext",
    "render_frame",
    "scene_frame_files",
    "sequence_files",
    "shard_range",
    "strip_png_text",
    "temp_name",
    "todo_frames",
    "use_gpu",
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
    """The extension of the frames `configure` makes the scene write: .exr or .png."""
    return ".exr" if scene.render.image_settings.file_format in EXR_FORMATS else ".png"


def scene_frame_files(scene: bpy.types.Scene) -> dict[int, str]:
    """Each frame of the scene's range (with its frame step) and the file Blender's own
    animation render writes it to: the output path, its '#'s filled in, the extension."""
    render = scene.render
    frames = range(scene.frame_start, scene.frame_end + 1, max(1, scene.frame_step))
    return {n: bpy.path.abspath(render.frame_path(frame=n)) for n in frames}


def todo_frames(frames: Iterable[int], final: Callable[[int], str]) -> list[int]:
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
