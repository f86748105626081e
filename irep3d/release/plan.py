"""The release plan: `plan_release` expands a `Release` into concrete jobs, checked against
the network and against itself."""

from __future__ import annotations

import fnmatch
import itertools
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..encode import CODEC_SUFFIXES, DEFAULT_QUALITY, check_size
from ..errors import OptionError, UsageError
from ..resize import parse_size
from .file import CLIPS_MODE, Release, file_error, option_error

# --------------------------------------------------------------------------- the plan


@dataclass(frozen=True)
class ReleaseClip:
    """A clip of the release (pack clip, [[clips]] clip or composite): its name, kind and
    folder, and the frames it holds, at what rate (its loops are encoded at it)."""

    name: str  # locked/L7_148_64_clip01, clips/faces-red, comp/hardlight_01
    kind: str  # maps | clip | composite
    folder: Path
    resolution: tuple[int, int]
    frames: int
    fps: float
    source: tuple[str, ...] = ()  # composites: the clips it is made from
    layer: str | None = None  # pack and [[clips]] clips: the layer it shows
    audio: str | None = None  # the sound file of an audio-driven walk (its loops carry it)


@dataclass
class ClipRender:
    """One `irep3d.maps_engine.render_clips` call of `[[clips]]` tables, into
    `DIR/maps/clips/`: one clip, or several of one layer, seed sequence and options with
    their channels given, which then share each forward pass. Nothing else is shared, so
    every folder is the bytes `irep3d maps` writes for that clip alone: the batch size (set
    by the layers a pass captures), the channels `auto` picks (it skips those of the other
    clips of its layer in a run) and the `global` figures (from the batches of that size)
    all stay what one clip gets."""

    jobs: list[Any]  # irep3d.options.ClipJob, named as the tables are
    options: Any  # irep3d.options.MapsOptions


@dataclass(frozen=True)
class CompositeJob:
    """One composite to run: its clip, recipe (inputs filled in) and where from."""

    clip: ReleaseClip
    recipe: Any  # irep3d.recipe.Recipe


@dataclass(frozen=True)
class SceneJobPlan:
    """One 3D variant: the loop name, the scene job and its render folder (`renders/<stem>/`)."""

    name: str  # scene/locked-L7_148_64_clip01__edge-point-light
    source: tuple[str, ...]  # height clip (, colour clip)
    job: Any  # irep3d.blender.SceneJob
    renders: Path


@dataclass(frozen=True)
class Loop:
    """One delivered file."""

    name: str  # the loop's name (pack clip, [[clips]] clip, composite or scene)
    kind: str  # maps | clip | composite | scene
    source: tuple[str, ...]
    codec: str
    quality: str
    frames_dir: Path  # clip folder or render folder
    path: Path  # the encoded file
    frames: int
    fps: float
    audio: str | None = None  # the track an audio-driven walk's loop carries


@dataclass
class ReleasePlan:
    """Everything a release makes, with concrete paths, in the order it is made."""

    release: Release
    out: Path
    frames: int  # of a pack clip ([walk]); each clip says its own (`ReleaseClip.frames`)
    fps: float  # of a pack clip ([walk])
    jobs: dict[str, list[Any]]  # mode -> ClipJob list
    clips: dict[str, ReleaseClip]  # every pack clip, [[clips]] clip and composite by name
    composites: list[CompositeJob]
    scenes: list[SceneJobPlan]
    loops: list[Loop]
    layer_sizes: dict[str, tuple[int, int]]  # clip resolution of each pack layer
    clip_renders: list[ClipRender] = field(default_factory=list)  # the [[clips]] tables


def _flat(name: str) -> str:
    return name.replace("/", "-")


def _match(patterns: Sequence[str], names: Sequence[str], where: str) -> list[str]:
    found = [n for n in names if any(fnmatch.fnmatchcase(n, p) for p in patterns)]
    if not found:
        shown = ", ".join(names[:6]) + (", ..." if len(names) > 6 else "")
        raise file_error(
            where, f"{' '.join(repr(p) for p in patterns)} matches no clip; the clips are: {shown}"
        )
    return found


def _size(value: Any) -> tuple[int, int]:
    """(width, height) of a size as `irep3d.resize.parse_size` reads it."""
    size, _ = parse_size(value)
    return (size, size) if isinstance(size, int) else size


def plan_release(release: Release, out: str | os.PathLike[str], net: Any) -> ReleasePlan:
    """Expand a release into concrete jobs under `out`, checked against the network `net`
    (layers, channels per clip) and against itself (patterns, sizes, pairings)."""
    from ..generator import layer_info, layer_margin
    from ..maps import check_walk, clip_resolution, walk_frames
    from ..pack import pack_jobs
    from ..recipe import recipe_from_dict

    out = Path(out).expanduser().resolve()
    where = release.path.name
    options = release.options
    frames = walk_frames(len(release.seeds), options)
    jobs: dict[str, list[Any]] = {}
    clips: dict[str, ReleaseClip] = {}
    sizes: dict[str, tuple[int, int]] = {}
    for layer in release.layers:
        try:
            info = layer_info(net, layer)
        except Exception as exc:  # LayerError: name the key
            raise file_error(f"{where} [pack].layers", str(exc)) from None
        margin = layer_margin(net, layer) if options.crop_margin else 0
        sizes[layer] = clip_resolution(info.width, info.height, margin, options)
    for mode in release.modes:
        try:
            jobs[mode] = pack_jobs(net, release.layers, release.clips_per_layer, release.seeds, mode)
            check_walk(net, jobs[mode], options)
        except OptionError as exc:  # a [walk] or [pack] value this network cannot take
            raise option_error(where, exc) from None
        except UsageError as exc:
            raise file_error(f"{where} [pack]", str(exc)) from None
        for job in jobs[mode]:
            name = f"{mode}/{job.name}"
            clips[name] = ReleaseClip(
                name,
                "maps",
                out / "maps" / mode / job.name,
                sizes[job.layer],
                frames,
                float(options.fps),
                layer=job.layer,
                audio=options.audio,
            )
    clip_renders = _explicit_clips(release, out, net, clips)
    pack_names = list(clips)  # pack clips, then [[clips]]: what composites are made of

    composites = []
    for comp in release.composites:
        cwhere = f"{where} [[composites]] {comp.name}"
        matched = {k: _match(p, pack_names, f"{cwhere}.inputs.{k}") for k, p in comp.inputs.items()}
        keys = list(matched)
        if comp.pairing == "zip":
            counts = {len(v) for v in matched.values()}
            if len(counts) != 1:
                shown = ", ".join(f"{k}: {len(v)}" for k, v in matched.items())
                raise file_error(
                    cwhere,
                    f"pairing 'zip' needs as many clips for every input ({shown}); use pairing = 'product'",
                )
            sets = list(zip(*matched.values(), strict=True))
        else:
            sets = list(itertools.product(*matched.values()))
        for index, chosen in enumerate(sets, start=1):
            name = f"comp/{comp.name}_{index:02d}"
            data = {
                **comp.recipe,
                "inputs": {k: str(clips[c].folder) for k, c in zip(keys, chosen, strict=True)},
            }
            recipe = recipe_from_dict(data, comp.base, where=cwhere)
            timing = {(clips[c].frames, clips[c].fps) for c in chosen}
            if len(timing) > 1:  # run_recipe would refuse them part-way through a release
                shown = ", ".join(f"{c} {clips[c].frames} frames at {clips[c].fps:g} fps" for c in chosen)
                raise file_error(cwhere, f"its clips differ in length or frame rate ({shown})")
            first = clips[chosen[0]]
            resolutions = {clips[c].resolution for c in chosen}
            if len(resolutions) > 1:  # run_recipe takes inputs of one size, whatever size it writes
                shown = ", ".join(f"{c} {clips[c].resolution[0]}x{clips[c].resolution[1]}" for c in chosen)
                raise file_error(
                    cwhere,
                    f"its clips differ in size ({shown}); give them one size ([pack].size, or size in "
                    "their [[clips]] tables)",
                )
            resolution = _size(recipe.size) if recipe.size else resolutions.pop()
            clip = ReleaseClip(
                name,
                "composite",
                out / "composites" / f"{comp.name}_{index:02d}",
                resolution,
                first.frames,
                first.fps,  # run_recipe records its first input's
                tuple(chosen),
                audio=first.audio,
            )
            clips[name] = clip
            composites.append(CompositeJob(clip, recipe))

    all_names = list(clips)
    if release.scenes:
        from ..blender import RENDERS_DIR, SceneJob, scene_out_dir
    scenes: list[SceneJobPlan] = []
    seen: set[str] = set()
    for i, variant in enumerate(release.scenes):
        swhere = f"{where} [[scenes]] #{i + 1}"
        height = _match(variant.clips, all_names, f"{swhere}.clips")
        colour: list[str | None] = [None] * len(height)
        if variant.colour_from:
            found = _match(variant.colour_from, all_names, f"{swhere}.colour_from")
            if len(found) == 1:
                colour = found * len(height)
            elif len(found) == len(height):
                colour = list(found)
            else:
                raise file_error(
                    f"{swhere}.colour_from",
                    f"matches {len(found)} clips for {len(height)} height clips; match one clip, or as many (paired in order)",
                )
        for h, c in zip(height, colour, strict=True):
            if c is not None and (clips[c].frames, clips[c].fps) != (clips[h].frames, clips[h].fps):
                raise file_error(  # the scene builder would refuse it part-way through a release
                    f"{swhere}.colour_from",
                    f"colour clip {c} has {clips[c].frames} frames at {clips[c].fps:g} fps, height clip "
                    f"{h} {clips[h].frames} at {clips[h].fps:g}; give a colour clip of the same length and rate",
                )
            for preset in variant.presets:
                stem = f"{_flat(h)}__{Path(preset).stem}" + (f"__colour-{_flat(c)}" if c else "")
                name = f"scene/{stem}"
                if name in seen:
                    raise file_error(swhere, f"scene {name} is made twice; tables of [[scenes]] overlap")
                seen.add(name)
                job = SceneJob(
                    clip_dir=clips[h].folder,
                    preset=preset,
                    blend=out / "scenes" / f"{stem}.blend",
                    colour_dir=clips[c].folder if c else None,
                    settings=dict(variant.settings),
                )
                renders = scene_out_dir(job.blend, out / RENDERS_DIR)  # renders/<stem>/, as rendered
                scenes.append(SceneJobPlan(name, (h,) if c is None else (h, c), job, renders))

    from .estimate import scene_look  # the size a scene renders at: its settings, else its preset's

    sources = {name: (clip.kind, clip.source, clip.folder, clip) for name, clip in clips.items()}
    frame_sizes = {name: clip.resolution for name, clip in clips.items()}  # each loop's frames
    for scene in scenes:
        sources[scene.name] = ("scene", scene.source, scene.renders, clips[scene.source[0]])  # its timing
        frame_sizes[scene.name] = scene_look(scene.job)[0]
    loops: list[Loop] = []
    taken: set[Path] = set()
    for i, delivery in enumerate(release.deliveries):
        dwhere = f"{where} [[deliveries]] #{i + 1}"
        for name in _match(delivery.loops, list(sources), f"{dwhere}.loops"):
            kind, source, folder, timing = sources[name]
            for codec in delivery.codecs:
                try:  # before any work: no codec takes every size (--size goes to 16384)
                    check_size(codec, *frame_sizes[name])
                except UsageError as exc:
                    raise file_error(f"{dwhere}.codecs", f"loop {name}: {exc}") from None
                path = out / "loops" / f"{_flat(name)}.{codec}{CODEC_SUFFIXES[codec][0]}"
                if path in taken:
                    continue
                taken.add(path)
                quality = delivery.quality.get(codec, DEFAULT_QUALITY[codec])
                loops.append(
                    Loop(
                        name,
                        kind,
                        source,
                        codec,
                        quality,
                        folder,
                        path,
                        timing.frames,
                        timing.fps,
                        timing.audio,
                    )
                )
    return ReleasePlan(
        release, out, frames, float(options.fps), jobs, clips, composites, scenes, loops, sizes, clip_renders
    )


def _explicit_clips(release: Release, out: Path, net: Any, clips: dict[str, ReleaseClip]) -> list[ClipRender]:
    """The `[[clips]]` tables checked against the network (layer, channels, walk), added to
    `clips` as `clips/<name>`, and the `render_clips` calls that make them (`ClipRender`)."""
    from ..colour import check_channels
    from ..errors import LayerError
    from ..generator import layer_info, layer_margin
    from ..maps import check_walk, clip_resolution, walk_frames
    from ..options import ClipJob

    renders: list[ClipRender] = []
    for i, spec in enumerate(release.clips, start=1):
        where = f"{release.path.name} [[clips]] #{i}"
        try:
            info = layer_info(net, spec.layer)
        except LayerError as exc:
            raise file_error(f"{where}.layer", str(exc)) from None
        channels = None
        if spec.channels is not None:
            try:
                channels = check_channels(spec.channels, info.channels, spec.layer)
            except UsageError as exc:
                raise file_error(f"{where}.channels", str(exc)) from None
        job = ClipJob(name=spec.name, layer=spec.layer, channels=channels, seeds=list(spec.seeds))
        options = spec.options
        try:
            check_walk(net, [job], options)
        except OptionError as exc:  # an option this network cannot take, said of its key here
            raise file_error(f"{where}.{exc.key}", exc.problem) from None
        except UsageError as exc:
            raise file_error(where, str(exc)) from None
        margin = layer_margin(net, spec.layer) if options.crop_margin else 0
        name = f"{CLIPS_MODE}/{spec.name}"
        clips[name] = ReleaseClip(
            name,
            "clip",
            out / "maps" / CLIPS_MODE / spec.name,
            clip_resolution(info.width, info.height, margin, options),
            walk_frames(len(job.seeds), options),
            float(options.fps),
            layer=spec.layer,
            audio=options.audio,
        )
        shared = next((r for r in renders if _shares(r, job, options)), None)
        if shared is not None:
            shared.jobs.append(job)
        else:
            renders.append(ClipRender([job], options))
    return renders


def _shares(render: ClipRender, job: Any, options: Any) -> bool:
    """Whether clip `job` can join `render` with no byte changed (see `ClipRender`): the
    same layer, seeds and options, and channels given (not `auto`) in both."""
    first = render.jobs[0]
    return (
        render.options == options
        and first.layer == job.layer
        and first.seeds == job.seeds
        and job.channels is not None
        and all(j.channels is not None for j in render.jobs)
    )
