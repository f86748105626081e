"""A whole VJ pack from one TOML file: `irep3d release PACK.toml --out DIR`.

A release file describes everything an artist delivers from one network: the walk, the
packs (locked and/or unique seed sequences), composites of pack clips, 3D displacement
variants and the encoded loops. `load_release` checks it completely (unknown keys, layers,
presets, codecs, patterns that match nothing, clips that do not fit together) before any
work starts; `plan_release` expands its patterns into concrete jobs; `run_release` makes
them, stage by stage, with the library calls the single-clip commands use:

    maps        irep3d.pack.pack_jobs + irep3d.maps_engine.render_clips (or irep3d.farm.render_maps)
    composites  irep3d.recipe.run_recipe
    scenes      irep3d.blender.build_scenes + render_scenes (or irep3d.farm.render_chunks)
    deliveries  irep3d.encode.encode_clip
    summary     DIR/release.json and DIR/contact.png

Every stage resumes: finished clips, composites, scenes and frames are skipped by their own
rules, a loop is encoded again only when its source changed, and manifests are rewritten
only when their content changes. An interrupted release, run again, ends byte for byte
where an uninterrupted one does.

Names. Pack clips are `<mode>/<clip>` (`locked/L7_148_64_clip01`); composites
`comp/<name>_NN`; scenes `scene/<clip>__<preset>[__colour-<clip>]`, the clips' `/` as `-`
(`scene/locked-L7_148_64_clip01__edge-point-light__colour-comp-hl_01`).
Patterns (`fnmatch`: `*`, `?`, `[...]`) in the file choose among these names.

The file (every key but `model` and `[pack].layers` optional; see scenes/release/):

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
[[composites]]                    # name, recipe = "file.toml" or a shipped recipe's name
                                  # ("hardlight-pair"), or steps/ramps/output inline,
                                  # size, inputs = {id = "pattern"}, pairing = "zip" | "product"
[[scenes]]                        # clips = "pattern", presets = [...], colour_from = "pattern",
                                  # samples, resolution = [w, h], strength, midlevel,
                                  # height_source, detail, light_position, light_height,
                                  # format = "png" | "exr": as `blender build`
[[deliveries]]                    # codecs = ["hap", "h264", "prores"], loops = ["pattern", ...],
                                  # quality = {h264 = "18"}
```

Layout under DIR: `maps/<mode>/` (pack folders with pack.json), `composites/<name>/`,
`scenes/*.blend` + `scenes.json`, `renders/<scene>/frame_NNNNN.png` (or .exr), `loops/` (the
deliveries), `release.json`, `contact.png`.
"""

from .file import Composite, Delivery, Release, SceneVariant, load_release
from .plan import Loop, ReleasePlan, plan_release
from .run import run_release

__all__ = [
    "Composite",
    "Delivery",
    "Loop",
    "Release",
    "ReleasePlan",
    "SceneVariant",
    "load_release",
    "plan_release",
    "run_release",
]
