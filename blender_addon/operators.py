"""Operators: thin wrappers over `scene.build_displacement_scene` and `render.render_frame`.

From Python every setting is a keyword argument, and one left out keeps the preset's value:
`bpy.ops.irep3d.build_displacement_scene(clip_dir=..., preset="edge-point-light",
displacement_strength=0.3)` builds the same scene as
`scene.build_displacement_scene(clip_dir, load_preset("edge-point-light"),
SceneSettings(displacement_strength=0.3))`. The panel's button invokes the operator, which
then takes every setting not given from the panel (`scene.irep3d`).
"""

import os

import bpy
from bpy.props import IntVectorProperty, StringProperty

from . import properties
from . import render as frames
from .presets import PresetError, load_preset
from .scene import TAG, ClipError, SceneSettings, build_displacement_scene

#: The tag of the add-on's temp frame names (`render.temp_name`).
TEMP_TAG = f"irep3d-addon-{os.getpid()}"


class IREP3D_OT_build_displacement_scene(bpy.types.Operator):
    """Build a displaced plane, light, camera and Cycles settings for an irep3d clip"""

    bl_idname = "irep3d.build_displacement_scene"
    bl_label = "Build displacement scene"
    bl_options = {"REGISTER", "UNDO"}  # noqa: RUF012 - Blender reads a plain set

    clip_dir: properties.clip_dir_property()
    preset: StringProperty(
        name="Preset",
        description="A preset name (see the panel) or the path of a .toml preset",
        default=properties.DEFAULT_PRESET,
    )
    displacement_strength: properties.displacement_strength_property()
    midlevel: properties.midlevel_property()
    height_source: properties.height_source_property()
    subdivision_detail: properties.subdivision_detail_property()
    light_position: properties.light_position_property()
    light_height: properties.light_height_property()
    samples: properties.samples_property()
    output_format: properties.output_format_property()
    colour_clip: properties.colour_clip_property()
    resolution: IntVectorProperty(
        name="Resolution",
        description="Render size in pixels (width, height); left out: the preset's",
        size=2,
        default=(1920, 1080),
        min=4,
        max=65536,
    )

    def invoke(self, context: bpy.types.Context, _event: bpy.types.Event) -> set[str]:
        """From the panel: every setting not passed explicitly comes from `scene.irep3d`."""
        for name, value in properties.panel_kwargs(context.scene.irep3d).items():
            if not self.properties.is_property_set(name):
                setattr(self, name, value)
        return self.execute(context)

    def execute(self, context: bpy.types.Context) -> set[str]:
        given = {
            name: self._value(name)
            for name in (*properties.PANEL_SETTINGS, "resolution")
            if self.properties.is_property_set(name)
        }
        try:
            preset = load_preset(self.preset)
            build_displacement_scene(
                bpy.path.abspath(self.clip_dir), preset, SceneSettings(**given), context.scene
            )
        except (ClipError, PresetError) as e:
            self.report({"ERROR"}, str(e))
            return {"CANCELLED"}
        self.report({"INFO"}, f"irep3d: built the '{preset.name}' scene, frames {context.scene.frame_end}")
        return {"FINISHED"}

    def _value(self, name: str) -> object:
        value = getattr(self, name)
        if name == "colour_clip":
            return bpy.path.abspath(value) if value else value  # "//..." is relative to the .blend
        return tuple(value) if name == "resolution" else value


class IREP3D_OT_render_animation(bpy.types.Operator):
    """Render the scene's animation (every frame of the clip) to its output path; frames
    already there are kept, so a stopped render resumes"""

    bl_idname = "irep3d.render_animation"
    bl_label = "Render animation"

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
        self._scene = scene
        self._files = frames.scene_frame_files(scene)
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
        folder = os.path.dirname(next(iter(self._files.values()), "")) or "."
        kept = len(self._files) - self._done
        self.report({"INFO"}, f"irep3d: {self._done} frames rendered, {kept} already there, in {folder}")
