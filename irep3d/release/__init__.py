"""A whole VJ pack from one TOML file: `irep3d release PACK.toml --out DIR`.

A release file describes everything an artist delivers from one network: the walk, the
packs (locked and/or unique seed sequences), explicit clips (a layer, channels and a walk
each, as `irep3d maps` makes one), composites of those clips, 3D displacement variants and
the encoded loops. `load_release` checks it completely (unknown keys, layers, channels,
presets, codecs, patterns that match nothing, clips that do not fit together) before any
work starts; `plan_release` expands its patterns into concrete jobs; `run_release` makes
them, stage by stage, with the library calls the single-clip commands use:

    maps        irep3d.pack.pack_jobs + irep3d.maps_engine.render_clips (or irep3d.farm.render_maps)
    clips       irep3d.maps_engine.render_clips (or irep3d.farm.render_maps), as `irep3d maps`
    composites  irep3d.recipe.run_recipe
    scenes      irep3d.blender.build_scenes + render_scenes (or irep3d.farm.render_chunks)
    deliveries  irep3d.encode.encode_clip
    summary     DIR/release.json and DIR/contact.png

Every stage resumes: finished clips, composites, scenes and frames are skipped by their own
rules, a loop is encoded again only when its source changed, and manifests are rewritten
only when their content changes. An interrupted release, run again, ends byte for byte
where an uninterrupted one does.

Names. Pack clips are `<mode>/<clip>` (`locked/L7_148_64_clip01`); explicit clips
`clips/<name>` (`clips/faces-red`); composites `comp/<name>_NN`; scenes
`scene/<clip>__<preset>[__colour-<clip>]`, the clips' `/` as `-`
(`scene/locked-L7_148_64_clip01__edge-point-light__colour-comp-hl_01`).
Patterns (`fnmatch`: `*`, `?`, `[...]`) in the file choose among these names.

The file (every key but `model`, `[pack].layers` and a clip's `name` and `layer` optional,
but it makes clips: a `[pack]`, `[[clips]]` tables, or both; see scenes/release/):

```toml
description = "..."
model = "builtin:sg3t-256"        # or a .pkl / .safetensors path (relative to this file)
layout = "sg3t-1024"              # released configuration a dry run measures on without the file
device = "auto"                   # auto | cpu | cuda

[walk]                            # seeds = "0-14" or a list; frames_per_seed, psi, fps, loop;
                                  # cutoff, class, ws, translate, rotate, mix_seeds, mix_layers,
                                  # audio, audio_speed, audio_psi, audio_gain: as `irep3d maps`
[pack]                            # layers, clips_per_layer, modes = ["locked", "unique"], size
                                  # (2048 or "1920x1080:fill"), crop_margin, norm, gain_db,
                                  # precision, compression, batch: as `irep3d pack`
[[clips]]                         # name = "faces-red" (letters, digits, - _ .): DIR/maps/clips/<name>/
                                  # layer = "L7_148_64", channels = [12, 40, 3] (one: grey; or
                                  # "auto"), seeds = "3,17,42" (default: [walk].seeds), and any
                                  # [walk]/[pack] option (psi = "0.5:1.0", size = 512, ...) for this
                                  # clip only: its folder is the bytes of `irep3d maps MODEL
                                  # --layer L --channels ... --seeds ... --out DIR/maps/clips --name <name>`
[[composites]]                    # name, recipe = "file.toml" or a shipped recipe's name
                                  # ("hardlight-pair"), or steps/ramps/output inline,
                                  # size, inputs = {id = "pattern"} (over pack and [[clips]]
                                  # clips), pairing = "zip" | "product"
[[scenes]]                        # clips = "pattern", presets = [...], colour_from = "pattern",
                                  # samples, resolution = [w, h], strength, midlevel,
                                  # height_source, detail, light_position, light_height,
                                  # format = "png" | "exr": as `blender build`
[[deliveries]]                    # codecs = ["hap", "h264", "prores"], loops = ["pattern", ...],
                                  # quality = {h264 = "18"}
```

Clips of a composite, or a scene's height and colour clips, must agree in length and frame
rate; every loop is encoded at its clip's rate (a scene's: its height clip's).
`append_clip` adds a `[[clips]]` table to a file (what `irep3d explore`'s "Add to release"
does), keeping the user's text.

Layout under DIR: `maps/<mode>/` (pack folders with pack.json), `maps/clips/<name>/` (the
`[[clips]]` tables), `composites/<name>/`, `scenes/*.blend` + `scenes.json`,
`renders/<scene>/frame_NNNNN.png` (or .exr), `loops/` (the deliveries), `release.json`
(each loop's kind: maps, clip, composite or scene), `contact.png`.
"""

from .file import (
    Composite,
    Delivery,
    ExplicitClip,
    Release,
    SceneVariant,
    append_clip,
    check_clip_name,
    load_release,
)
from .plan import ClipRender, Loop, ReleasePlan, plan_release
from .run import run_release

__all__ = [
    "ClipRender",
    "Composite",
    "Delivery",
    "ExplicitClip",
    "Loop",
    "Release",
    "ReleasePlan",
    "SceneVariant",
    "append_clip",
    "check_clip_name",
    "load_release",
    "plan_release",
    "run_release",
]
