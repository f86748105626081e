"""Operators: thin wrappers over `scene.build_displacement_scene` and Blender's renderer.

From Python every setting is a keyword argument, and one left out keeps the preset's value:
`bpy.ops.irep3d.build_displacement_scene(clip_dir=..., preset="edge-point-light",
displacement_strength=0.3)` builds the same scene as
`scene.build_displacement_scene(clip_dir, load_preset("edge-point-light"),
SceneSettings(displacement_strength=0.3))`. The panel's button invokes the operator, which
then takes every setting not given from the panel (`scene.irep3d`).
"""

import bpy
from bpy.props import IntVectorProperty, StringProperty

from . import properties
from .presets import PresetError, load_preset
from .scene import TAG, ClipError, SceneSettings, build_displacement_scene


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
    """Render the scene's animation (every frame of the clip) to its output path"""

    bl_idname = "irep3d.render_animation"
    bl_label = "Render animation"

    def invoke(self, context: bpy.types.Context, _event: bpy.types.Event) -> set[str]:
        if not self._ready(context):
            return {"CANCELLED"}
        return bpy.ops.render.render("INVOKE_DEFAULT", animation=True)

    def execute(self, context: bpy.types.Context) -> set[str]:
        if not self._ready(context):
            return {"CANCELLED"}
        return bpy.ops.render.render(animation=True, scene=context.scene.name)

    def _ready(self, context: bpy.types.Context) -> bool:
        scene = context.scene
        if not any(obj.get(TAG) for obj in scene.objects):
            self.report({"ERROR"}, "no irep3d scene here: build the displacement scene first")
            return False
        if scene.camera is None:
            self.report({"ERROR"}, "the scene has no camera: build the displacement scene again")
            return False
        return True
