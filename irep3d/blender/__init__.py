"""Steps "scene" and "render" of the flow: Blender, in a subprocess, builds and renders.

Blender runs in a process of its own (a real binary, else the `bpy` module), where the
add-on's `blender_addon/jobs.py` runs the job: `build` calls the add-on's scene builder,
`render` renders frames with the add-on's `render.render_frame` (the Render button's
too), `ranges` reads frame ranges. The jobs talk back through stdout lines that start with
`IREP3D_` (`jobs.py` lists them) and this package reads every one. Options and settings
are checked here before Blender starts (`UsageError`, one line); any failure in Blender is
one `BlenderError` line, never a traceback.

The modules, by what they do:

* `process`: finding Blender (`find_blender`), running a job process, its one error line;
* `addon`: where the add-on and the presets are (`REPO_ROOT`), running one of its jobs,
  the installable extension zip (`build_addon_zip`);
* `scenes`: building `.blend` files of clips and presets (`build_scene`, `build_scenes`,
  `pack_scene_jobs`), the scene settings users give (`scene_settings`, checked by
  `irep3d.presets`, whose errors `preset_errors` turns into irep3d's), `scenes.json` and
  each scene's build identity (`read_scenes`);
* `render`: rendering `.blend` files into render folders (`render_frames`,
  `render_scenes`; `irep3d.renders` owns their layout and `render.json`), their options,
  scene files, where each scene's folder is (`scene_out_dir`: `renders/<blend stem>/`),
  reading a folder back (`rendered_frames`, `render_manifest`), and the scenes' frame ranges.
"""

from .addon import REPO_ROOT, build_addon_zip
from .process import BLENDER_ENV, find_blender
from .render import (
    DEVICES,
    RENDERS_DIR,
    check_blends,
    check_frame_range,
    check_render_options,
    make_out_dirs,
    parse_frames,
    parse_resolution,
    render_frames,
    render_manifest,
    render_scenes,
    rendered_frames,
    scene_frame_ranges,
    scene_out_dir,
    scene_out_dirs,
)
from .scenes import (
    BUILD_SETTINGS,
    PACK_NAME,
    SCENES_NAME,
    SceneJob,
    build_scene,
    build_scenes,
    check_scene_settings,
    pack_scene_jobs,
    preset_errors,
    read_scenes,
    scene_settings,
)

__all__ = [
    "BLENDER_ENV",
    "BUILD_SETTINGS",
    "DEVICES",
    "PACK_NAME",
    "RENDERS_DIR",
    "REPO_ROOT",
    "SCENES_NAME",
    "SceneJob",
    "build_addon_zip",
    "build_scene",
    "build_scenes",
    "check_blends",
    "check_frame_range",
    "check_render_options",
    "check_scene_settings",
    "find_blender",
    "make_out_dirs",
    "pack_scene_jobs",
    "parse_frames",
    "parse_resolution",
    "preset_errors",
    "read_scenes",
    "render_frames",
    "render_manifest",
    "render_scenes",
    "rendered_frames",
    "scene_frame_ranges",
    "scene_out_dir",
    "scene_out_dirs",
    "scene_settings",
]
