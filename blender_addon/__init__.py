"""irep3d for Blender: displacement scenes from irep3d activation clips.

The scene builder (`scene.py`) and the frame renderer (`render.py`) are plain modules that
the irep3d CLI also runs, in a Blender process (`jobs.py`), with the presets and the one
declaration of the scene settings (irep3d's standard-library `presets.py`, copied beside
them in the extension zip); this file only registers the UI.
"""

import bpy

from . import operators, panels, properties

classes = (
    properties.IREP3D_PG_scene,
    operators.IREP3D_OT_build_displacement_scene,
    operators.IREP3D_OT_render_animation,
    panels.IREP3D_PT_displacement,
)


def register() -> None:
    for cls in classes:
        bpy.utils.register_class(cls)
    bpy.types.Scene.irep3d = bpy.props.PointerProperty(type=properties.IREP3D_PG_scene)


def unregister() -> None:
    del bpy.types.Scene.irep3d
    for cls in reversed(classes):
        bpy.utils.unregister_class(cls)
