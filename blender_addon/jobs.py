"""The jobs irep3d runs in a Blender process: build scenes, render frames, read frame ranges.

`irep3d.blender` runs this file as a script, in a real Blender
(`blender --background --factory-startup --python-exit-code 3 --python jobs.py -- ARGS.json`)
or with the bpy module (`python jobs.py -- ARGS.json`). ARGS.json holds `job` (`build`,
`render` or `ranges`), `repo_root` (the folder holding `blender_addon/`) and the job's
arguments. The jobs use the add-on's own modules, so the CLI builds the scene the add-on's
button builds and renders frames as its Render button does.

The jobs talk back through stdout lines; `irep3d.blender` reads every one of them:

    IREP3D_SAVED i                     build: scene i is saved (under its temp name)
    IREP3D_RANGE i first last          ranges: the frame range of .blend i
    IREP3D_PLAN i first last todo ext  render: scene i's frames, how many to render, .png/.exr
    IREP3D_DEVICE description          render with --device gpu: the GPU Cycles renders on
    IREP3D_FRAME i n                   render: frame n of scene i is in place
    IREP3D_ERROR message               a problem the user can fix; the job stops (exit code 3)
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any, NoReturn

import bpy

#: The exit code of a job that stopped with IREP3D_ERROR: the one irep3d passes to Blender
#: as `--python-exit-code` for an uncaught exception (any non-zero code would do).
ERROR_EXIT = 3


def fail(message: object) -> NoReturn:
    """Report a problem the user can fix as one line, and stop."""
    print("IREP3D_ERROR " + " ".join(str(message).split()), flush=True)
    sys.stdout.flush()
    os._exit(ERROR_EXIT)


def say(*fields: object) -> None:
    """One protocol line: `IREP3D_<fields...>`, flushed at once (it feeds the progress bar)."""
    print("IREP3D_" + " ".join(str(f) for f in fields), flush=True)


def open_scene(blend: str) -> Any:
    """Open a .blend; its scene."""
    try:
        bpy.ops.wm.open_mainfile(filepath=blend)
    except Exception as exc:
        fail(f"cannot open {blend}: {' '.join(str(exc).split())}")
    return bpy.context.scene


def build(args: dict[str, Any]) -> None:
    """Build each scene of `args["scenes"]` into a clean file and save it (its `blend`)."""
    from blender_addon import scene

    try:  # the installed add-on (a wheel's share/) carries a copy of the module
        from blender_addon import presets
    except ImportError:  # a checkout: irep3d's own, next to blender_addon/
        from irep3d import presets

    dirs = presets.preset_dirs(extra=args["presets_dirs"])
    for index, item in enumerate(args["scenes"]):  # one Blender for all scenes; a clean file each
        try:
            preset = presets.load_preset(item["preset"], dirs=dirs)
            settings = dict(item["settings"])  # checked by irep3d; JSON lists become tuples in the check
            if item["colour_dir"]:
                settings["colour_clip"] = item["colour_dir"]
            bpy.ops.wm.read_factory_settings(use_empty=True)
            scene.build_displacement_scene(item["clip_dir"], preset, scene.SceneSettings(**settings))
        except (presets.PresetError, scene.ClipError) as exc:
            fail(exc)
        try:
            scene.save_blend(item["blend"])
        except (OSError, RuntimeError) as exc:  # bpy reports a failed save (a full disk) as RuntimeError
            reason = str(exc).strip().removeprefix("Error:").strip()
            fail(f"cannot write {item['final']}: {reason}")
        say("SAVED", index)


def ranges(args: dict[str, Any]) -> None:
    """The frame range each .blend of `args["blends"]` renders by default."""
    for index, blend in enumerate(args["blends"]):
        scene = open_scene(blend)
        say("RANGE", index, scene.frame_start, scene.frame_end)


def render(args: dict[str, Any]) -> None:
    """Render the frames of each scene of `args["scenes"]` that are not there yet, each into
    its render folder `out_dir` (`renders`: `frame_00001.png`, … and `render.json`)."""
    from blender_addon import render as frames

    # First every scene: open it, set it up, check its clips and its folder (frames of
    # another scene or other settings are refused), plan its frames (one progress total).
    plans = []
    for index, item in enumerate(args["scenes"]):
        scene = open_scene(item["blend"])
        try:
            frames.check_inputs()
            frames.configure(scene, args["samples"], args["resolution"], "cpu", args["threads"])
            folder, manifest = frames.render_folder(scene, item["out_dir"], item["blend"])
            ext = frames.output_ext(scene)
        except frames.RenderError as exc:
            fail(exc)
        first, last = args["frames"] or (scene.frame_start, scene.frame_end)
        wanted = frames.shard_range(first, last, args["shard"])
        todo = frames.todo_frames(wanted, lambda n, folder=folder, ext=ext: folder.frame_path(n, ext))
        say("PLAN", index, wanted.start, wanted.stop - 1, len(todo), ext)
        plans.append((folder, manifest, todo, ext))
    for folder, manifest, _, _ in plans:  # every folder checked: each manifest before its frames
        try:
            frames.write_manifest(folder, manifest)
        except frames.RenderError as exc:
            fail(exc)

    # Then render them, frame by frame, each to a temp name renamed into place.
    opened = len(plans) - 1
    for index, (item, (folder, _, todo, ext)) in enumerate(zip(args["scenes"], plans, strict=True)):
        if not todo:
            continue
        scene = open_scene(item["blend"]) if index != opened else bpy.context.scene
        opened = index
        try:
            gpu = frames.configure(
                scene, args["samples"], args["resolution"], args["device"], args["threads"]
            )
            if gpu is not None:
                say("DEVICE", gpu)
            for n in todo:
                frames.render_frame(scene, n, str(folder.frame_path(n, ext)), args["tag"])
                say("FRAME", index, n)
        except frames.RenderError as exc:
            fail(exc)


JOBS = {"build": build, "ranges": ranges, "render": render}


def main() -> None:
    """Read ARGS.json (the argument after `--`), put the add-on's folder on `sys.path`, run the job."""
    with open(sys.argv[sys.argv.index("--") + 1], encoding="utf-8") as fh:
        args = json.load(fh)
    root = os.path.abspath(args["repo_root"])
    here = os.path.realpath(os.path.join(root, "blender_addon"))
    # `python jobs.py` puts this folder first on sys.path: its modules are the add-on's, by
    # their package name only, never top-level modules named `scene` or `render`.
    sys.path[:] = [p for p in sys.path if os.path.realpath(p or os.curdir) != here]
    sys.path.insert(0, root)
    try:
        import blender_addon  # noqa: F401 - fails here, in one line, for a broken checkout
    except Exception as exc:
        fail(f"cannot load the irep3d add-on from {root}: {type(exc).__name__}: {exc}")
    JOBS[args["job"]](args)


if __name__ == "__main__":
    main()
