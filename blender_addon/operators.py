"""Operators: thin wrappers over `scene.build_displacement_scene` and `render.render_frame`.

From Python every setting is a keyword argument, and one left out keeps the preset's value:
`bpy.ops.irep3d.build_displacement_scene(clip_dir=..., preset="edge-point-light",
displacement_strength=0.3)` builds the same scene as
`scene.build_displacement_scene(clip_dir, load_preset("edge-point-light"),
SceneSettings(displacement_strength=0.3))`. Called with no arguments at all (the panel's
button, or `bpy.ops.irep3d.build_displacement_scene()` in a script, with a window or in
background mode alike) it builds what the panel (`scene.irep3d`) says.

The build goes into a scene of irep3d's own: the current scene when it is empty or holds an
earlier irep3d build (which the build replaces), else a new scene named after the clip, made
the window's scene. Blender's startup scene thus keeps its Cube, Light and Camera, which
would otherwise hide the plane and flatten the grazing light.

`poll` greys out what cannot run: building outside Object Mode, rendering a scene irep3d
did not build (the panel also greys out Build while it has no clip folder).
"""

import os

import bpy
from bpy.props import StringProperty

from . import properties
from . import render as frames
from .scene import TAG, ClipError, SceneSettings, build_displacement_scene, read_clip, resolve_settings

try:  # the installed add-on (extension zip, a wheel's share/) carries a copy of the module
    from .presets import DEFAULT_PRESET, SCENE_SETTINGS, Preset, PresetError, Setting, load_preset
except ImportError:  # a checkout: irep3d's own, next to blender_addon/
    from irep3d.presets import DEFAULT_PRESET, SCENE_SETTINGS, Preset, PresetError, Setting, load_preset

#: The tag of the add-on's temp frame names (`render.temp_name`).
TEMP_TAG = f"irep3d-addon-{os.getpid()}"


class IREP3D_OT_build_displacement_scene(bpy.types.Operator):
    """Build a displaced plane, light, camera and Cycles settings for an irep3d clip, in a scene of its own"""

    bl_idname = "irep3d.build_displacement_scene"
    bl_label = "Build displacement scene"
    bl_options = {"REGISTER", "UNDO"}  # noqa: RUF012 - Blender reads a plain set

    __annotations__ = {  # Blender reads the properties from the class annotations
        "clip_dir": properties.clip_dir_property(),
        "preset": StringProperty(
            name="Preset",
            description="A preset name (see the panel) or the path of a .toml preset",
            default=DEFAULT_PRESET,
        ),
        **properties.setting_properties(),  # one a scene setting; left out: the preset's value
    }

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        """A scene to build in, in Object Mode (a build replaces objects)."""
        if context.scene is None:
            cls.poll_message_set("no scene to build in")
            return False
        if context.mode != "OBJECT":
            cls.poll_message_set("switch to Object Mode to build the displacement scene")
            return False
        return True

    def execute(self, context: bpy.types.Context) -> set[str]:
        names = ("clip_dir", "preset", *(s.field for s in SCENE_SETTINGS))
        if not any(self.properties.is_property_set(n) for n in names) and hasattr(context.scene, "irep3d"):
            for name, value in properties.panel_kwargs(context.scene.irep3d).items():  # no arguments
                setattr(self, name, value)
        given = {s.field: self._value(s) for s in SCENE_SETTINGS if self.properties.is_property_set(s.field)}
        settings = SceneSettings(**given)
        try:
            preset = load_preset(self.preset)
            clip = read_clip(bpy.path.abspath(self.clip_dir))
            look = resolve_settings(preset, settings)  # checked before any scene changes
            target, left = _scene_to_build_in(context, clip["name"])
            try:
                build_displacement_scene(clip["dir"], preset, settings, target)
            except BaseException:
                if left is not None:  # nothing half-built: the new scene goes, the old one comes back
                    _make_current(context, left)
                    bpy.data.scenes.remove(target)
                raise
        except (ClipError, PresetError) as e:
            self.report({"ERROR"}, str(e))
            return {"CANCELLED"}
        built = (
            f"irep3d: built clip '{clip['name']}' with the '{preset.name}' look, frames 1-{target.frame_end}"
        )
        if left is None:
            self.report({"INFO"}, f"{built}, in scene '{target.name}'")
            return {"FINISHED"}
        self._store_in_panel(target, look)
        self.report(
            {"INFO"},
            f"{built}, in a new scene '{target.name}' of its own: scene '{left.name}' holds other objects "
            "and is left as it was",
        )
        return {"FINISHED"}

    def _value(self, setting: Setting) -> object:
        value = getattr(self, setting.field)
        if setting.type == "clip":
            return bpy.path.abspath(value) if value else value  # "//..." is relative to the .blend
        return tuple(value) if setting.type == "size" else value

    def _store_in_panel(self, scene: bpy.types.Scene, look: Preset) -> None:
        """A new scene's panel shows what was built in it: the clip, the preset (when it
        is one of the panel's) and the settings."""
        props = scene.irep3d
        props.clip_dir = self.clip_dir
        if self.preset in {item[0] for item in properties.preset_items(props, None)}:
            props.preset = self.preset  # copies the preset's values, the built ones follow
        for setting in SCENE_SETTINGS:
            setattr(props, setting.field, getattr(look, setting.field))


def _scene_to_build_in(
    context: bpy.types.Context, name: str
) -> tuple[bpy.types.Scene, bpy.types.Scene | None]:
    """Where a build goes: the current scene when it is empty or an earlier irep3d build,
    else a new scene named `name`, made the window's; and the scene left for it, if any."""
    current = context.scene
    objects = list(current.objects)
    if not objects or any(obj.get(TAG) for obj in objects):
        return current, None
    scene = bpy.data.scenes.new(name)
    _make_current(context, scene)
    return scene, current


def _make_current(context: bpy.types.Context, scene: bpy.types.Scene) -> None:
    if context.window is not None:
        context.window.scene = scene


class IREP3D_OT_render_animation(bpy.types.Operator):
    """Render the scene's animation (every frame of the clip) into a render folder: the folder of the
    output path, as frame_00001.png, ... and render.json, which `irep3d encode` takes; frames already
    there are kept, so a stopped render resumes"""

    bl_idname = "irep3d.render_animation"
    bl_label = "Render animation"

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        """A scene irep3d built, with its camera."""
        scene = context.scene
        if scene is None or not any(obj.get(TAG) for obj in scene.objects):
            cls.poll_message_set("no irep3d scene here: build the displacement scene first")
            return False
        if scene.camera is None:
            cls.poll_message_set("the scene has no camera: build the displacement scene again")
            return False
        return True

    def invoke(self, context: bpy.types.Context, _event: bpy.types.Event) -> set[str]:
        """From the button: one frame a timer tick, so the window shows progress between
        frames and Esc stops the render after the frame being rendered."""
        plan = self._plan(context)
        if plan is None:
            return {"CANCELLED"}
        if plan == "video":
            return bpy.ops.render.render("INVOKE_DEFAULT", animation=True)
        if context.window is None or not self._todo:  # no window to tick in, or nothing to do
            return self._render_all(context)
        wm = context.window_manager
        self._done = 0
        self._timer = wm.event_timer_add(0.05, window=context.window)
        wm.progress_begin(0, len(self._todo))
        wm.modal_handler_add(self)
        return {"RUNNING_MODAL"}

    def modal(self, context: bpy.types.Context, event: bpy.types.Event) -> set[str]:
        if event.type == "ESC":
            self._finish(context)
            self.report({"WARNING"}, f"irep3d: stopped after {self._done} frames; render again to resume")
            return {"CANCELLED"}
        if event.type != "TIMER":
            return {"PASS_THROUGH"}
        try:
            self._step(context)
        except frames.RenderError as e:
            self._finish(context)
            self.report({"ERROR"}, str(e))
            return {"CANCELLED"}
        context.window_manager.progress_update(self._done)
        if self._todo:
            return {"RUNNING_MODAL"}
        self._finish(context)
        self._report_done()
        return {"FINISHED"}

    def execute(self, context: bpy.types.Context) -> set[str]:
        plan = self._plan(context)
        if plan is None:
            return {"CANCELLED"}
        if plan == "video":
            return bpy.ops.render.render(animation=True, scene=context.scene.name)
        return self._render_all(context)

    def _plan(self, context: bpy.types.Context) -> str | None:
        """Check the scene and its clips, and list the frames to render: "frames", "video"
        (one file that Blender's own animation render writes), or None after an error."""
        scene = context.scene
        if not any(obj.get(TAG) for obj in scene.objects):
            self.report({"ERROR"}, "no irep3d scene here: build the displacement scene first")
            return None
        if scene.camera is None:
            self.report({"ERROR"}, "the scene has no camera: build the displacement scene again")
            return None
        try:
            frames.check_inputs()
        except frames.RenderError as e:
            self.report({"ERROR"}, str(e))
            return None
        if scene.render.is_movie_format:
            return "video"
        try:  # the render folder: the same layout, manifest and resume rule as `irep3d blender render`
            ext = frames.output_ext(scene)
            self._folder, manifest = frames.render_folder(scene, frames.output_folder(scene))
            frames.write_manifest(self._folder, manifest)  # first, before any frame
        except frames.RenderError as e:
            self.report({"ERROR"}, str(e))
            return None
        self._scene = scene
        self._files = {n: str(self._folder.frame_path(n, ext)) for n in frames.scene_frames(scene)}
        self._todo = frames.todo_frames(self._files, self._files.__getitem__)
        self._done = 0
        return "frames"

    def _step(self, _context: bpy.types.Context) -> None:
        """Render the next frame of the plan (temp name, then renamed into place)."""
        n = self._todo.pop(0)
        frames.render_frame(self._scene, n, self._files[n], TEMP_TAG)
        self._done += 1

    def _render_all(self, context: bpy.types.Context) -> set[str]:
        try:
            while self._todo:
                self._step(context)
        except frames.RenderError as e:
            self.report({"ERROR"}, str(e))
            return {"CANCELLED"}
        self._report_done()
        return {"FINISHED"}

    def _finish(self, context: bpy.types.Context) -> None:
        wm = context.window_manager
        wm.event_timer_remove(self._timer)
        wm.progress_end()

    def _report_done(self) -> None:
        kept = len(self._files) - self._done
        self.report(
            {"INFO"}, f"irep3d: {self._done} frames rendered, {kept} already there, in {self._folder.path}"
        )
