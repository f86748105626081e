"""The sidebar panel "irep3d" in the 3D viewport (N panel, tab "irep3d")."""

from __future__ import annotations

from itertools import groupby

import bpy

from .operators import IREP3D_OT_build_displacement_scene, IREP3D_OT_render_animation

try:  # the installed add-on (extension zip, a wheel's share/) carries a copy of the module
    from .presets import SCENE_SETTINGS
except ImportError:  # a checkout: irep3d's own, next to blender_addon/
    from irep3d.presets import SCENE_SETTINGS


class IREP3D_PT_displacement(bpy.types.Panel):
    """Clip, preset and every scene setting (`presets.SCENE_SETTINGS`, by the section of its
    preset key), and the two actions."""

    bl_label = "irep3d"
    bl_idname = "IREP3D_PT_displacement"
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "irep3d"

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        layout.use_property_split = True
        layout.use_property_decorate = False
        props = context.scene.irep3d

        layout.prop(props, "clip_dir")
        for setting in SCENE_SETTINGS:
            if setting.type == "clip":  # the clips first, then the look
                layout.prop(props, setting.field)
        layout.prop(props, "preset")

        values = [s for s in SCENE_SETTINGS if s.type != "clip"]
        for section, settings in groupby(values, key=lambda s: s.section):
            col = layout.column(heading=section.title())
            for setting in settings:
                col.prop(props, setting.field)

        layout.separator()
        col = layout.column(align=True)
        build = col.row()
        build.enabled = bool(props.clip_dir)  # the button builds the panel's clip
        build.operator(IREP3D_OT_build_displacement_scene.bl_idname, icon="MOD_DISPLACE")
        col.operator(IREP3D_OT_render_animation.bl_idname, icon="RENDER_ANIMATION")
        if not props.clip_dir:
            layout.label(text="Choose a clip folder to build", icon="INFO")
