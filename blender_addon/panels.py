"""The sidebar panel "irep3d" in the 3D viewport (N panel, tab "irep3d")."""

from __future__ import annotations

import bpy

from .operators import IREP3D_OT_build_displacement_scene, IREP3D_OT_render_animation


class IREP3D_PT_displacement(bpy.types.Panel):
    """Clip, preset and the main settings of the displacement scene, and the two actions."""

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
        layout.prop(props, "colour_clip")
        layout.prop(props, "preset")

        col = layout.column(heading="Displacement")
        col.prop(props, "displacement_strength")
        col.prop(props, "midlevel")
        col.prop(props, "height_source")
        col.prop(props, "subdivision_detail")

        col = layout.column(heading="Light")
        col.prop(props, "light_position", text="Along edge")
        col.prop(props, "light_height", text="Height")

        col = layout.column(heading="Render")
        col.prop(props, "samples")
        col.prop(props, "output_format")

        layout.separator()
        col = layout.column(align=True)
        col.operator(IREP3D_OT_build_displacement_scene.bl_idname, icon="MOD_DISPLACE")
        col.operator(IREP3D_OT_render_animation.bl_idname, icon="RENDER_ANIMATION")
