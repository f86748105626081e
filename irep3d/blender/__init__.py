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
  `pack_scene_jobs`), `scenes.json` and each scene's build identity (`read_scenes`);
* `render`: rendering `.blend` files into frames (`render_frames`, `render_scenes`), their
  options, scene files, output folders and frame names (`rendered_frames` lists a
  folder's), and the scenes' frame ranges.
"""

from .addon import REPO_ROOT, build_addon_zip
from .process import BLENDER_ENV, find_blender
from .render import (
    DEVICES,
    FRAME_NAME,
    check_blends,
    check_frame_range,
    check_render_options,
    frame_file_name,
    make_out_dirs,
    parse_frames,
    parse_resolution,
    render_frames,
    render_scenes,
    rendered_frames,
    scene_frame_ranges,
    scene_out_dirs,
)
from .scenes import (
    HEIGHT_SOURCES,
    OUTPUT_FORMATS,
    PACK_NAME,
    SCENES_NAME,
    SETTING_NAMES,
    SETTINGS_KEYS,
    SceneJob,
    build_scene,
    build_scenes,
    pack_scene_jobs,
    read_scenes,
)

__all__ = [
    "BLENDER_ENV",
    "DEVICES",
    "FRAME_NAME",
    "HEIGHT_SOURCES",
    "OUTPUT_FORMATS",
    "PACK_NAME",
    "REPO_ROOT",
    "SCENES_NAME",
    "SETTINGS_KEYS",
    "SETTING_NAMES",
    "SceneJob",
    "build_addon_zip",
    "build_scene",
    "build_scenes",
    "check_blends",
    "check_frame_range",
    "check_render_options",
    "find_blender",
    "frame_file_name",
    "make_out_dirs",
    "pack_scene_jobs",
    "parse_frames",
    "parse_resolution",
    "read_scenes",
    "render_frames",
    "render_scenes",
    "rendered_frames",
    "scene_frame_ranges",
    "scene_out_dirs",
]
