"""Compositing recipes: a small graph of operations over clip folders, written as a clip.

A recipe (TOML) names its input clips, a list of steps and, optionally, colour ramps:

```toml
description = "two locked clips, soft-light, gradient map"
size = 2048                      # optional: upscale every input to 2048 x 2048 first,
                                 # or "1920x1080:fill" (WxH[:fit|fill|pad], as `maps --size`)

[inputs]                         # paths relative to the recipe file
a = "../pack/L7_148_64_clip01"
b = "../pack/L7_148_64_clip02"

[[steps]]
id = "mix"
op = "blend"                     # blend, upscale, key, glow, ramp, pixelsort, grade
inputs = ["a", "b"]              # blend: base, top; the others take one input
mode = "soft-light"
opacity = 0.8

[[steps]]
id = "look"
op = "ramp"
inputs = ["mix"]
ramp = "fire"                    # a table below, or an inline table
cycle = 2
turns = 1                        # animate the ramp offset by whole turns over the clip

[ramps.fire]
stops = [[0.0, [0, 0, 0]], [0.6, [1, 0.3, 0]], [1.0, [1, 1, 0.8]]]
```

The result is the last step (or `output = "id"`). It is written exactly like a `maps` clip
(half-float EXR frames + `clip.json`), so results chain into further recipes, `encode` and
the Blender scenes. Every operation is frame-local except `ramp`'s `turns`, which moves by
whole turns over the clip and so wraps around the loop: a seamless input stays seamless.

Frames are processed in batches on the device; input frames for the next batch are read
by a thread pool while the current one computes, and outputs go to the EXR writer pool, so
file I/O overlaps compute. Writes are atomic and a re-run resumes.
"""

from __future__ import annotations

import hashlib
import json
import os
import tomllib
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import composite as ops
from .clip import Clip
from .errors import UsageError
from .exr_clip import ExrWriter, read_exr
from .progress import Progress, silent
from .resize import parse_size, reframe, resize

__all__ = [
    "OPS",
    "Recipe",
    "Step",
    "load_recipe",
    "read_toml",
    "recipe_from_dict",
    "run_recipe",
    "single_op_recipe",
]

# op name -> (number of inputs, allowed parameters)
OPS: dict[str, tuple[int, frozenset[str]]] = {
    "blend": (2, frozenset({"mode", "opacity"})),
    "upscale": (1, frozenset({"size"})),
    "key": (1, frozenset({"by", "low", "high", "softness", "hue", "hue_width", "sat_min"})),
    "glow": (1, frozenset({"threshold", "radius", "intensity"})),
    "ramp": (1, frozenset({"ramp", "cycle", "offset", "low", "high", "turns"})),
    "pixelsort": (1, frozenset({"axis", "low", "high", "by", "reverse"})),
    "grade": (1, frozenset({"exposure", "gamma", "levels"})),
}


@dataclass(frozen=True)
class Step:
    """One operation: its id, op name, input ids and parameters."""

    id: str
    op: str
    inputs: tuple[str, ...]
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Recipe:
    """A parsed recipe: input clip folders, steps in order, the output step, ramps."""

    inputs: dict[str, Path]
    steps: tuple[Step, ...]
    output: str
    size: int | str | None = None  # S, or "WxH[:fit|fill|pad]" (irep3d.resize.parse_size)
    ramps: dict[str, ops.Ramp] = field(default_factory=dict)
    description: str = ""
    source: dict = field(default_factory=dict)  # the recipe as data (recorded in clip.json)


def _fail(where: str, message: str) -> UsageError:
    return UsageError(f"{where}: {message}")


def recipe_from_dict(data: Mapping[str, Any], base: Path, where: str = "recipe") -> Recipe:
    """Check a recipe's structure and build it; paths are relative to `base`."""
    known = {"description", "size", "inputs", "steps", "output", "ramps"}
    unknown = set(data) - known
    if unknown:
        raise _fail(where, f"unknown key(s) {sorted(unknown)}; valid: {sorted(known)}")
    inputs_raw = data.get("inputs") or {}
    if not isinstance(inputs_raw, Mapping) or not inputs_raw:
        raise _fail(where, "needs an [inputs] table naming at least one clip folder")
    inputs = {str(k): (base / str(v)).resolve() for k, v in inputs_raw.items()}
    ramps = {}
    for name, table in (data.get("ramps") or {}).items():
        try:
            ramps[str(name)] = ops.Ramp.from_dict(table)
        except UsageError as exc:
            raise _fail(where, f"ramp {name!r}: {exc}") from None
    steps: list[Step] = []
    known_ids = set(inputs)
    raw_steps = data.get("steps") or []
    if not isinstance(raw_steps, list) or not raw_steps:
        raise _fail(where, "needs at least one [[steps]] entry")
    for i, raw in enumerate(raw_steps, start=1):
        raw = dict(raw)
        sid = str(raw.pop("id", f"step{i}"))
        op = raw.pop("op", None)
        if op not in OPS:
            raise _fail(where, f"step {sid!r}: unknown op {op!r}; valid ops: {', '.join(OPS)}")
        arity, allowed = OPS[op]
        step_inputs = raw.pop("inputs", None)
        if step_inputs is None:
            step_inputs = [steps[-1].id] if steps else list(inputs)[:arity]
        step_inputs = [str(x) for x in step_inputs]
        if len(step_inputs) != arity:
            raise _fail(where, f"step {sid!r}: {op} takes {arity} input(s), got {len(step_inputs)}")
        for name in step_inputs:
            if name not in known_ids:
                raise _fail(
                    where, f"step {sid!r}: unknown input {name!r}; known: {', '.join(sorted(known_ids))}"
                )
        bad = set(raw) - allowed
        if bad:
            raise _fail(
                where, f"step {sid!r}: unknown parameter(s) {sorted(bad)} for {op}; valid: {sorted(allowed)}"
            )
        if op == "blend" and raw.get("mode", "normal") not in ops.BLEND_MODES:
            raise _fail(
                where,
                f"step {sid!r}: unknown blend mode {raw.get('mode')!r}; valid: {', '.join(ops.BLEND_MODES)}",
            )
        if op == "ramp":
            ramp = raw.get("ramp")
            if isinstance(ramp, str) and ramp not in ramps:
                raise _fail(
                    where, f"step {sid!r}: unknown ramp {ramp!r}; defined: {', '.join(ramps) or 'none'}"
                )
            if isinstance(raw.get("turns", 0), float) and not float(raw["turns"]).is_integer():
                raise _fail(where, f"step {sid!r}: turns must be a whole number, so the loop stays seamless")
        steps.append(Step(sid, op, tuple(step_inputs), raw))
        known_ids.add(sid)
    output = str(data.get("output", steps[-1].id))
    if output not in {s.id for s in steps}:
        raise _fail(where, f"output {output!r} is not a step id")
    size = data.get("size")
    sizes = [(size, "size")] + [
        (s.params.get("size", ""), f"step {s.id!r}: size") for s in steps if s.op == "upscale"
    ]
    for value, what in sizes:
        if value is not None:
            try:
                parse_size(value, what)
            except UsageError as exc:
                raise _fail(where, str(exc)) from None
    return Recipe(inputs, tuple(steps), output, size, ramps, str(data.get("description", "")), dict(data))


def read_toml(path: str | Path, what: str) -> dict[str, Any]:
    """A TOML file (a recipe, a release) as data; a missing, unreadable or invalid file is
    one UsageError line naming it as `what`."""
    path = Path(path)
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"{what} {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read {what} {path}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{what} {path} is not valid TOML: {exc}") from None


def load_recipe(path: str | Path) -> Recipe:
    """Read a recipe TOML file; errors name the file and say what is valid."""
    path = Path(path)
    return recipe_from_dict(read_toml(path, "recipe"), path.parent, where=str(path))


@dataclass
class _Input:
    name: str
    path: Path
    frames: list[Path]
    manifest: dict
    size: tuple[int, int]  # (h, w)


def _open_inputs(recipe: Recipe) -> list[_Input]:
    opened = []
    for name, path in recipe.inputs.items():
        clip = Clip(path)
        frames = clip.frames()
        first, _ = read_exr(frames[0])
        opened.append(_Input(name, path, frames, clip.read_manifest() or {}, first.shape[:2]))
    return opened


def _check_inputs(inputs: list[_Input], fit: bool) -> tuple[int, tuple[int, int]]:
    """The output frame count and size; mismatches are errors unless `fit`."""
    counts = {i.name: len(i.frames) for i in inputs}
    sizes = {i.name: i.size for i in inputs}
    if len(set(counts.values())) > 1 and not fit:
        listing = ", ".join(f"{k} has {v}" for k, v in counts.items())
        raise UsageError(
            f"inputs have different frame counts ({listing}); use --fit to retime them to the longest"
        )
    if len(set(sizes.values())) > 1 and not fit:
        listing = ", ".join(f"{k} is {w}x{h}" for k, (h, w) in sizes.items())
        raise UsageError(f"inputs have different sizes ({listing}); use --fit to scale them to the largest")
    frames = max(counts.values())
    size = max(sizes.values(), key=lambda s: s[0] * s[1])
    return frames, size


def apply_step(
    step: Step, args: list[torch.Tensor], recipe: Recipe, frames: list[int], total: int
) -> torch.Tensor:
    p = dict(step.params)
    if step.op == "blend":
        return ops.blend(args[0], args[1], p.get("mode", "normal"), float(p.get("opacity", 1.0)))
    x = args[0]
    if step.op == "upscale":
        return reframe(x, *parse_size(p["size"]))
    if step.op == "key":
        return ops.key(x, **p)
    if step.op == "glow":
        return ops.glow(x, **p)
    if step.op == "grade":
        if "levels" in p:
            p["levels"] = tuple(p["levels"])
        return ops.grade(x, **p)
    if step.op == "pixelsort":
        return ops.pixelsort(x, **p)
    # ramp: the offset may turn by whole turns over the clip, which wraps around the loop
    ramp = p.pop("ramp", None)
    ramp = recipe.ramps[ramp] if isinstance(ramp, str) else ops.Ramp.from_dict(ramp or {})
    turns = p.pop("turns", 0)
    if not turns:
        return ops.ramp(x, ramp, **p)
    base = float(p.pop("offset", 0.0))
    out = [ops.ramp(x[i : i + 1], ramp, offset=base + turns * f / total, **p) for i, f in enumerate(frames)]
    return torch.cat(out)


def _identity(recipe: Recipe, inputs: list[_Input], fit: bool, out_dir: Path | None) -> str:
    """A fingerprint of what decides the pixels: the recipe and its inputs' manifests.

    Inputs are named by their path relative to the output clip, so a folder holding both
    (a release) resumes after it moved; `out_dir=None` gives the fingerprint of composites
    written before that, which named them by absolute path."""

    def where(path: Path) -> str:
        return str(path) if out_dir is None else os.path.relpath(path.resolve(), out_dir.resolve())

    steps = recipe.source if out_dir is None else {k: v for k, v in recipe.source.items() if k != "inputs"}
    data = {
        "recipe": steps,
        "fit": fit,
        "inputs": {i.name: [where(i.path), len(i.frames), i.manifest.get("normalization")] for i in inputs},
    }
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


def run_recipe(
    recipe: Recipe,
    out_dir: str | Path,
    *,
    fit: bool = False,
    device: torch.device | str = "cpu",
    batch: int = 4,
    compression: str = "zip",
    progress: Progress | None = None,
) -> dict:
    """Run a recipe into the clip folder `out_dir` (its name is the clip name); returns clip.json.
    `progress("composite", done, total)` counts the frames this run writes."""
    device = torch.device(device)
    out_dir = Path(out_dir)
    inputs = _open_inputs(recipe)
    total, (h, w) = _check_inputs(inputs, fit)
    clip = Clip(out_dir).create()
    fingerprint = _identity(recipe, inputs, fit, out_dir)
    if (clip.read_manifest() or {}).get("recipe_fingerprint") == _identity(recipe, inputs, fit, None):
        fingerprint = _identity(recipe, inputs, fit, None)  # an older composite, in place: resume it
    previous = clip.check_identity({"recipe_fingerprint": fingerprint}, what="recipe steps or inputs")
    clip.clean_temps()
    done = clip.finished(total)
    todo = [f for f in range(total) if f + 1 not in done]
    first = inputs[0].manifest
    manifest = {
        "frames": total,
        "fps": first.get("fps", 30.0),
        "loop": all(i.manifest.get("loop", True) for i in inputs),
        "norm": "composite",
        "files": clip.pattern,
        "first_frame": 1,
        "inputs": {i.name: str(i.path) for i in inputs},
        "recipe": recipe.source,
        "recipe_fingerprint": fingerprint,
        "fit": fit,
        "complete": False,
    }

    def source_index(inp: _Input, f: int) -> int:
        return f if len(inp.frames) == total else (f * len(inp.frames)) // total

    def load(frames: list[int]) -> dict[str, torch.Tensor]:
        out = {}
        for inp in inputs:
            arrays = [read_exr(inp.frames[source_index(inp, f)], alpha=True)[0] for f in frames]
            out[inp.name] = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2)
        return out

    batches = [todo[i : i + batch] for i in range(0, len(todo), batch)]
    written = 0
    report = progress or silent
    report("composite", 0, len(todo))
    resolution = None
    with ThreadPoolExecutor(max_workers=2) as readers, ExrWriter(compression=compression) as writer:
        pending = readers.submit(load, batches[0]) if batches else None
        for index, frames in enumerate(batches):
            loaded = pending.result()
            pending = readers.submit(load, batches[index + 1]) if index + 1 < len(batches) else None
            values: dict[str, torch.Tensor] = {}
            for key, x in loaded.items():
                x = x.to(device=device, dtype=torch.float32)
                if recipe.size:
                    x = reframe(x, *parse_size(recipe.size))
                elif tuple(x.shape[-2:]) != (h, w):  # only with --fit
                    x = resize(x, (h, w))
                values[key] = x if (x[:, 3:] < 1).any() else x[:, :3]  # drop an all-opaque alpha
            for step in recipe.steps:
                values[step.id] = apply_step(step, [values[i] for i in step.inputs], recipe, frames, total)
            result = values[recipe.output]
            resolution = [int(result.shape[-1]), int(result.shape[-2])]
            if previous is None and written == 0:
                clip.write_manifest({**manifest, "resolution": resolution})
            pixels = result.permute(0, 2, 3, 1).to(torch.float16).cpu().numpy()
            for f, frame in zip(frames, pixels, strict=True):
                writer.submit(clip.frame_path(f + 1), frame, {"recipe": fingerprint, "frame": f + 1})
                written += 1
            report("composite", written, len(todo))
        writer.close()
    if resolution is None:
        resolution = (previous or {}).get("resolution")
    manifest.update({"resolution": resolution, "complete": True})
    clip.write_manifest(manifest)
    return clip.read_manifest() or {}


def single_op_recipe(op: str, clips: Sequence[str], params: dict[str, Any]) -> Recipe:
    """The recipe behind a quick subcommand (`irep3d composite blend A B --mode ...`)."""
    names = [chr(ord("a") + i) for i in range(len(clips))]
    data = {
        "inputs": dict(zip(names, clips, strict=True)),
        "steps": [
            {"id": op, "op": op, "inputs": names, **{k: v for k, v in params.items() if v is not None}}
        ],
    }
    return recipe_from_dict(data, Path.cwd(), where=f"composite {op}")
