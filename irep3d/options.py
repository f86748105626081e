"""Step "options" of the flow: what an activation clip is made of, every option declared once.

`MapsOptions` holds the settings every clip of a `maps`/`pack` run shares (frames, loop,
ψ, normalisation, size, the animated controls of the walk, audio), and each of its fields
declares itself: an `Option` (how a user gives it: help text, the release table and key,
the command-line flags, the TOML types, a parser, bounds or choices) and an `Identity`
(its key in a clip's clip.json identity, and the value that means "not used"). From that
one declaration come the `maps` and `pack` flags (`irep3d.cli.maps`), a release file's
`[walk]`/`[pack]` keys and type checks (`irep3d.release.file`), `maps_options` (what a
user writes -> options), `MapsOptions.check`, `clip_identity` and `OPTIONAL_IDENTITY`, and
`describe_options`, the form a web page builds. Adding an option is one field here, plus
its use in the engine (`irep3d.maps`, `irep3d.maps_engine`).

A `ClipJob` is one clip (layer, channels, seeds); a `ClipResult` what its folder holds.
This module imports no torch, so the command line builds its flags in milliseconds.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import OptionError, UsageError
from .exr_clip import COMPRESSIONS

if TYPE_CHECKING:
    from .colour import NormStats
    from .keyframes import KeyFile, Keyframe

__all__ = [
    "ALWAYS",
    "MAX_SIZE",
    "NORMS",
    "OPTIONAL_IDENTITY",
    "OPTIONS",
    "PRECISIONS",
    "PSI_RANGE",
    "SIZE_MODES",
    "ClipJob",
    "ClipResult",
    "Identity",
    "MapsOptions",
    "Option",
    "clip_identity",
    "describe_options",
    "maps_options",
    "option_errors",
    "typed_value",
]

#: How frames are normalised (`irep3d.colour`).
NORMS = ("none", "global", "fixed", "frame")
#: What NVIDIA's fp16 layers may run in (`irep3d.networks.precision`).
PRECISIONS = ("auto", "fp32", "fp16", "bf16")
#: Where a ψ sweep may run (`irep3d.walk.parse_psi`).
PSI_RANGE = (0.0, 2.0)
#: Largest output side, in pixels (`irep3d.resize`).
MAX_SIZE = 16384
#: How a map meets an output of another aspect ratio (`WxH:MODE`): `fit` resamples each axis
#: to the size (the default, and what a square size always did), `fill` scales to cover and
#: crops the centre, `pad` scales to fit inside and pads the rest with zeros.
SIZE_MODES = ("fit", "fill", "pad")


#: A field's Identity that is always in clip.json (no value means "not used").
ALWAYS = object()


@dataclass(frozen=True)
class Option:
    """How a user gives one walk/clip option: the declaration a `MapsOptions` field carries
    (`metadata["option"]`), from which the `maps`/`pack` flags, a release file's keys and
    their checks, the checks of the value and the explorer's form fields all come.

    `key` (default: the field's name) is the release file's key and the flag's stem
    (`frames_per_seed`, `--frames-per-seed`); `table` the release table holding it.
    `parse` turns what a user writes into field values (a dict: one option may set two
    fields, `psi = "0.5:1.0"` sets psi and psi_to), `None` keeping the value as it is;
    `needs` names the options it must see parsed first (`parse(value, parsed)`).
    `low`/`high` (inclusive; `above` is an exclusive lower bound) and `choices` bound the
    field's value, or each item of a pair. `types` are the TOML types a release may give.
    """

    help: str
    table: str  # "walk" | "pack"
    types: tuple[type, ...]
    key: str | None = None
    flags: tuple[str, ...] = ()  # the command-line flags, default ("--<key>",)
    cli_type: type = str  # what the command line reads (str for values `parse` reads)
    parse: Callable[[Any, dict[str, Any]], dict[str, Any]] | None = None
    needs: tuple[str, ...] = ()
    low: float | None = None
    above: float | None = None
    high: float | None = None
    choices: tuple[str, ...] = ()
    path: bool = False  # a file, named relative to a release file


@dataclass(frozen=True)
class Identity:
    """How a `MapsOptions` field enters a clip's identity (`clip_identity`, clip.json):
    under `key`, left out while it equals `unused` (so clips made before the option existed
    still resume), with `value(options, job)` where it is not the field's own value."""

    key: str
    unused: Any = ALWAYS
    value: Callable[[Any, Any], Any] | None = None


def _declared(
    option: Option | None = None,
    identity: Identity | None = None,
    low: float | None = None,
    high: float | None = None,
    choices: tuple[str, ...] = (),
) -> dict[str, Any]:
    """A `MapsOptions` field's metadata: its declarations (`low`/`high`/`choices` bound a
    field no option sets directly, such as psi_to)."""
    metadata: dict[str, Any] = {}
    if option is not None:
        metadata["option"] = option
    if identity is not None:
        metadata["identity"] = identity
    if low is not None or high is not None or choices:
        metadata["bounds"] = Option(help="", table="", types=(), low=low, high=high, choices=choices)
    return metadata


def _size(value: Any, parsed: dict[str, Any]) -> dict[str, Any]:
    from .resize import parse_size

    size, mode = parse_size(value)
    return {"size": size, "size_mode": mode}


def _psi(value: Any, parsed: dict[str, Any]) -> dict[str, Any]:
    from .walk import parse_psi

    psi, psi_to = parse_psi(str(value))
    return {"psi": psi, "psi_to": psi_to}


def _pair(value: Any) -> str:
    """A pair a release file may give as a list: `[0.1, 0.1]` -> `"0.1,0.1"`."""
    return ",".join(map(str, value)) if isinstance(value, list | tuple) else str(value)


def _translate(value: Any, parsed: dict[str, Any]) -> dict[str, Any]:
    from .walk import parse_translate

    return {"translate": parse_translate(_pair(value))}


def _keyfile(value: Any, parsed: dict[str, Any]) -> dict[str, Any]:
    from .keyframes import load_keyfile

    return {"ws": load_keyfile(value)}


def _mix_seeds(value: Any, parsed: dict[str, Any]) -> dict[str, Any]:
    from .keyframes import parse_keyframes

    spec = _pair(value) if isinstance(value, list | tuple) else str(value)
    return {"mix_seeds": tuple(parse_keyframes(spec, parsed.get("ws")))}


def _mix_layers(value: Any, parsed: dict[str, Any]) -> dict[str, Any]:
    from .walk import parse_span

    return {"mix_layers": parse_span(str(value))}


def _audio(value: Any, parsed: dict[str, Any]) -> dict[str, Any]:
    # absolute: farm workers run elsewhere; an audio clip runs once, over the track
    return {"audio": str(Path(value).expanduser().absolute()), "loop": False}


def _audio_psi(value: Any, parsed: dict[str, Any]) -> dict[str, Any]:
    from .audio import parse_audio_psi

    return {"audio_psi": parse_audio_psi(str(value))}


def _ws_identity(options: MapsOptions, job: ClipJob) -> str | None:
    keys = list(job.seeds) + list(options.mix_seeds or ())
    rows = any(isinstance(k, str) for k in keys)
    return options.ws.sha256 if rows and options.ws is not None else None


def _audio_identity(attribute: str, unused: Any) -> Callable[[MapsOptions, ClipJob], Any]:
    def value(options: MapsOptions, job: ClipJob) -> Any:
        if options.audio is None:
            return unused
        if attribute == "sha256":
            from .files import file_sha256

            return file_sha256(options.audio)
        return getattr(options, attribute)

    return value


_NUMBER = (int, float)


@dataclass(frozen=True)
class MapsOptions:
    """Settings shared by every clip of a run (the `maps` / `pack` options).

    Every field declares itself (`Option`, `Identity`: `dataclasses.field` metadata), and
    all that is said of the options derives from that: the flags of `maps` and `pack`
    (`irep3d.cli.maps`), a release file's `[walk]`/`[pack]` keys and their types, the
    checks (`check`), a clip's identity in clip.json (`clip_identity`, in field order) and
    the description a page builds its form from (`describe_options`).
    """

    frames_per_seed: int = field(
        default=60,
        metadata=_declared(
            Option(
                "Frames from one seed to the next.",
                "walk",
                (int,),
                flags=("--frames-per-seed", "-k"),
                cli_type=int,
                low=1,
            ),
            Identity("frames_per_seed"),
        ),
    )
    loop: bool = field(
        default=True,
        metadata=_declared(
            Option(
                "Seamless loop (frames = seeds x K) or one pass.",
                "walk",
                (bool,),
                flags=("--loop/--no-loop",),
                cli_type=bool,
            ),
            Identity("loop"),
        ),
    )
    fps: float = field(
        default=30.0,
        metadata=_declared(
            Option(
                "Frames per second: recorded in clip.json; encode, preview and live play at it.",
                "walk",
                _NUMBER,
                cli_type=float,
                above=0,
                high=1000,
            )
        ),
    )
    psi: float = field(
        default=1.0,
        metadata=_declared(
            Option(
                "Truncation ψ (1 = none), or a sweep START:TURN within [0, 2] (0.5:1.0): START -> TURN "
                "-> START over the clip.",
                "walk",
                (*_NUMBER, str),
                parse=_psi,
            ),
            Identity("psi"),
        ),
    )
    norm: str = field(
        default="global",
        metadata=_declared(
            Option(
                "none = raw activations; global = robust percentiles over the whole walk (no flicker); "
                "fixed = visualizer mapping 0.5 + 0.5*v*gain; frame = per-frame (flickers).",
                "pack",
                (str,),
                choices=NORMS,
            ),
            Identity("norm"),
        ),
    )
    gain_db: float = field(
        default=0.0,
        metadata=_declared(
            Option("Gain in dB, as in NVIDIA's visualizer.", "pack", _NUMBER, cli_type=float),
            Identity("gain_db"),
        ),
    )
    size: int | tuple[int, int] | None = field(  # S (square) or (width, height)
        default=None,
        metadata=_declared(
            Option(
                "Output size, resampled on the device: SIZE (square, e.g. 2048) or WxH[:fit|fill|pad] "
                "(e.g. 1920x1080:fill): fit = scale each axis, fill = cover and crop the centre, pad = fit "
                "inside on black.",
                "pack",
                (int, str),
                parse=_size,
                low=1,
                high=MAX_SIZE,
            ),
            Identity("size", value=lambda o, j: list(o.size) if isinstance(o.size, tuple) else o.size),
        ),
    )
    crop_margin: bool = field(
        default=False,
        metadata=_declared(
            Option(
                "Remove the StyleGAN3 layer margin (148 -> 128).",
                "pack",
                (bool,),
                flags=("--crop-margin/--keep-margin",),
                cli_type=bool,
            ),
            Identity("crop_margin"),
        ),
    )
    compression: str = field(
        default="zip",
        metadata=_declared(
            Option(
                "EXR compression: zip, piz, dwaa, none, ...",
                "pack",
                (str,),
                parse=lambda value, parsed: {"compression": str(value).strip().lower()},
                choices=tuple(COMPRESSIONS),
            ),
            Identity("compression"),
        ),
    )
    batch: int | None = field(
        default=None,
        metadata=_declared(
            Option("Frames per forward pass (default: auto).", "pack", (int,), cli_type=int, low=1)
        ),
    )
    precision: str = field(  # what NVIDIA's fp16 layers run in (irep3d.networks.precision)
        default="auto",
        metadata=_declared(
            Option(
                "What the network's fp16 layers (its last resolutions) run in: auto (float16 on CUDA, "
                "float32 on the CPU), fp32, fp16 or bf16.",
                "pack",
                (str,),
                choices=PRECISIONS,
            ),
            Identity("precision"),
        ),
    )
    size_mode: str = field(  # how a map meets another aspect ratio (irep3d.resize); set by `size`
        default="fit",
        metadata=_declared(
            identity=Identity("size_mode", "fit", lambda o, j: o.size_mode if o.size is not None else "fit"),
            choices=SIZE_MODES,
        ),
    )
    cutoff: int | None = field(  # truncation applies to the first `cutoff` ws only (None = all)
        default=None,
        metadata=_declared(
            Option(
                "Truncate only the first N ws (default: all), beside --psi.",
                "walk",
                (int,),
                cli_type=int,
                low=1,
            ),
            Identity("cutoff", None),
        ),
    )
    class_idx: int | None = field(  # class label of a conditional network
        default=None,
        metadata=_declared(
            Option("Class index of a conditional network.", "walk", (int,), key="class", cli_type=int, low=0),
            Identity("class", None),
        ),
    )
    # Animated controls, periodic over the clip (irep3d.walk: phases, sweep, view_matrices):
    psi_to: float | None = field(  # ψ sweeps psi -> psi_to -> psi; set by `psi`
        default=None,
        metadata=_declared(identity=Identity("psi_to", None), low=PSI_RANGE[0], high=PSI_RANGE[1]),
    )
    translate: tuple[float, float] | None = field(  # StyleGAN3: pan around an ellipse (image widths)
        default=None,
        metadata=_declared(
            Option(
                "StyleGAN3: the view pans round an ellipse of radii X,Y (image widths) once over the clip, "
                "starting at the centre, e.g. 0.1,0.1.",
                "walk",
                (str, list),
                parse=_translate,
                low=-10,
                high=10,
            ),
            Identity("translate", None, lambda o, j: list(o.translate) if o.translate else None),
        ),
    )
    rotate: int = field(  # StyleGAN3: whole turns over the clip
        default=0,
        metadata=_declared(
            Option(
                "StyleGAN3: whole turns of the view over the clip (negative: the other way).",
                "walk",
                (int,),
                cli_type=int,
            ),
            Identity("rotate", 0),
        ),
    )
    mix_seeds: tuple[Keyframe, ...] | None = field(  # style mixing: a second walk ...
        default=None,
        metadata=_declared(
            Option(
                "Style mixing: keyframes (seeds, or w rows of --ws) of a second walk, run once over the clip, "
                "for the --mix-layers ws.",
                "walk",
                (str, int, list),
                parse=_mix_seeds,
                needs=("ws",),
            ),
            Identity("mix_seeds", None, lambda o, j: list(o.mix_seeds) if o.mix_seeds else None),
        ),
    )
    mix_layers: tuple[int, int | None] | None = field(  # ... for these ws (None: the later half)
        default=None,
        metadata=_declared(
            Option(
                "The ws the second walk drives: A-B, A- (to the last) or A (default: the later half, the "
                "fine layers).",
                "walk",
                (str, int),
                parse=_mix_layers,
            ),
            Identity(
                "mix_layers", None, lambda o, j: list(o.mix_layers) if o.mix_seeds and o.mix_layers else None
            ),
        ),
    )
    # Audio-driven walk (irep3d.audio): an open clip of the track's length.
    audio: str | None = field(  # the sound file
        default=None,
        metadata=_declared(
            Option(
                "A sound file (WAV, FLAC, OGG, AIFF) that drives the walk: the clip runs once over the track "
                "(implies --no-loop; frames = seconds x fps), keyframes spread over it.",
                "walk",
                (str,),
                cli_type=Path,
                parse=_audio,
                path=True,
            ),
            Identity("audio_sha256", None, _audio_identity("sha256", None)),
        ),
    )
    audio_speed: float = field(  # K: step 1 + K·(rms + kick), rescaled to visit every keyframe
        default=0.0,
        metadata=_declared(
            Option(
                "With --audio: the walk steps 1 + K*(loudness + onset kick) a frame, so loud parts and hits "
                "move faster (0 = even pace).",
                "walk",
                _NUMBER,
                cli_type=float,
                low=0,
                high=100,
            ),
            Identity("audio_speed", 0.0, _audio_identity("audio_speed", 0.0)),
        ),
    )
    audio_psi: tuple[float, float] | None = field(  # ψ from [0] in silence to [1] at full loudness
        default=None,
        metadata=_declared(
            Option(
                "With --audio: ψ from QUIET (silence) to LOUD (full loudness), e.g. 0.5:1.0.",
                "walk",
                (str,),
                parse=_audio_psi,
                low=0,
                high=2,
            ),
            Identity("audio_psi", None, lambda o, j: list(o.audio_psi) if o.audio and o.audio_psi else None),
        ),
    )
    audio_gain: float = field(  # dB added to gain_db at full kick (onsets, decaying)
        default=0.0,
        metadata=_declared(
            Option(
                "With --audio: up to DB more gain at each onset, fading (half-life 0.15 s).",
                "walk",
                _NUMBER,
                cli_type=float,
                low=-60,
                high=60,
            ),
            Identity("audio_gain", 0.0, _audio_identity("audio_gain", 0.0)),
        ),
    )
    ws: KeyFile | None = field(  # the keyframe file whose rows ("w3") jobs may name (irep3d.keyframes)
        default=None,
        metadata=_declared(
            Option(
                "Keyframes from a .npz (e.g. a projector's): one array w [n, num_ws, w_dim] or [n, w_dim], "
                "or z [n, z_dim]; --seeds names its rows w0, w1, ...",
                "walk",
                (str,),
                cli_type=Path,
                parse=_keyfile,
                path=True,
            ),
            Identity("ws_sha256", None, _ws_identity),
        ),
    )
    loop_start: float = field(  # the loop starts this fraction of the way round (irep3d.maps.walk_ws)
        default=0.0,
        metadata=_declared(
            Option(
                "Where the loop starts, as a fraction of it (0.25: a quarter of the way round): the same "
                "seamless loop, its first frame elsewhere (to line loops up in a set).",
                "walk",
                _NUMBER,
                cli_type=float,
                low=0,
                high=1,
            ),
            Identity("loop_start", 0.0),
        ),
    )

    def check(self) -> None:
        """Raise an OptionError (a UsageError naming the option) for values no clip can be
        made with: each value against its declaration, then the rules between options."""
        for f in fields(self):
            declared = f.metadata.get("option") or f.metadata.get("bounds")
            if declared is not None:
                key = _key(f) if "option" in f.metadata else _owner(f.name)
                _check_value(key, declared, getattr(self, f.name))
        if self.psi_to is not None and not PSI_RANGE[0] <= self.psi <= PSI_RANGE[1]:
            raise OptionError(
                "psi", f"a ψ sweep runs within [{PSI_RANGE[0]:g}, {PSI_RANGE[1]:g}], not from {self.psi}"
            )
        if self.mix_layers is not None and self.mix_seeds is None:
            raise OptionError(
                "mix_layers",
                "needs mix_seeds (the second walk those layers follow)",
                "--mix-layers needs --mix-seeds (the second walk those layers follow)",
            )
        if self.mix_seeds is not None and not self.mix_seeds:
            raise OptionError("mix_seeds", "is empty: give seeds like 3,17,42")
        if self.loop_start and not self.loop:
            raise OptionError("loop_start", "needs a loop: an open clip has no start to move")
        self._check_audio()

    def _check_audio(self) -> None:
        if self.audio is None:
            given = {
                "audio_speed": self.audio_speed,
                "audio_psi": self.audio_psi,
                "audio_gain": self.audio_gain,
            }
            used = [key for key, value in given.items() if value not in (0.0, None)]
            if used:
                raise OptionError(
                    used[0],
                    "needs audio, a sound file for the walk to follow",
                    "--audio-speed, --audio-psi and --audio-gain need --audio TRACK.wav",
                )
            return
        if self.loop:
            raise OptionError(
                "audio",
                "makes an open clip of the track's length: set loop = false with it",
                "--audio makes an open clip of the track's length: use --no-loop with it",
            )
        if self.audio_psi is not None and self.psi_to is not None:
            raise OptionError(
                "audio_psi",
                "sets ψ from the track: drop the psi sweep (or audio_psi)",
                "--audio-psi sets ψ from the track: drop the --psi sweep (or --audio-psi)",
            )

    @property
    def animated(self) -> bool:
        """Whether any control changes along the walk besides the keyframes' spline."""
        return bool(
            self.psi_to is not None or self.translate or self.rotate or self.mix_seeds or self.audio_psi
        )


def _key(f: Any) -> str:
    """The option key of a `MapsOptions` field (`class` for class_idx)."""
    return f.metadata["option"].key or f.name


def _owner(name: str) -> str:
    """The option that sets field `name` when no option is its own (psi_to: psi, size_mode: size)."""
    return {"psi_to": "psi", "size_mode": "size"}.get(name, name)


def _check_value(key: str, declared: Option, value: Any) -> None:
    """Raise an OptionError when `value` (or an item of a pair) is outside what is declared."""
    if value is None:
        return
    items = value if isinstance(value, tuple) and not declared.choices else (value,)
    for item in items:
        if not isinstance(item, int | float) or isinstance(item, bool):
            if declared.choices and item not in declared.choices:
                raise OptionError(
                    key,
                    f"unknown value {item!r}; use one of: {', '.join(declared.choices)}",
                    f"unknown --{key.replace('_', '-')} {item!r}; use one of: {', '.join(declared.choices)}",
                )
            continue
        if declared.above is not None and not item > declared.above:
            raise OptionError(
                key,
                f"must be positive, not {item}"
                if declared.above == 0
                else f"must be above {declared.above:g}, not {item}",
            )
        low, high = declared.low, declared.high
        if not math.isfinite(item) or (low is not None and item < low) or (high is not None and item > high):
            if low is None and high is None:
                raise OptionError(key, f"must be a finite number, not {item}")
            if high is None:
                raise OptionError(key, f"must be at least {low:g}, not {item}")
            if low is None:
                raise OptionError(key, f"must be at most {high:g}, not {item}")
            raise OptionError(key, f"must be from {low:g} to {high:g}, not {item}")


#: Every option a user sets, by `MapsOptions` field: what `maps_options` takes.
OPTIONS: dict[str, Option] = {
    f.name: f.metadata["option"] for f in fields(MapsOptions) if "option" in f.metadata
}

#: Identity keys that only appear when their option is used, with the value that means
#: "not used": a clip written before the option existed resumes, and one made with it does
#: not resume without it.
OPTIONAL_IDENTITY: dict[str, object] = {
    f.metadata["identity"].key: f.metadata["identity"].unused
    for f in fields(MapsOptions)
    if "identity" in f.metadata and f.metadata["identity"].unused is not ALWAYS
}


def describe_options() -> list[dict[str, Any]]:
    """Every walk/clip option as plain data, in order: what a form needs to offer it and
    what a release file calls it (`key`, `table`), with its flag, type, default, bounds,
    choices and help."""
    defaults = MapsOptions()
    out = []
    for name, option in OPTIONS.items():
        default = getattr(defaults, name)
        out.append(
            {
                "name": name,
                "key": option.key or name,
                "table": option.table,
                "flag": (option.flags or (f"--{(option.key or name).replace('_', '-')}",))[0],
                "type": option.cli_type.__name__ if option.cli_type is not Path else "path",
                "default": default if not isinstance(default, tuple) else list(default),
                "low": option.low if option.above is None else option.above,
                "high": option.high,
                "choices": list(option.choices),
                "help": option.help,
            }
        )
    return out


@dataclass
class ClipJob:
    """One clip to render: a layer, 1 or 3 channels (None = pick automatically), seeds."""

    name: str
    layer: str
    channels: list[int] | None
    seeds: list[Keyframe]  # seeds, and rows of MapsOptions.ws ("w3")


@dataclass
class ClipResult:
    """What a clip folder holds after the run."""

    name: str
    path: Path
    layer: str
    channels: list[int]
    seeds: list[Keyframe]
    frames: int
    written: int
    skipped: int
    stats: NormStats | None = None


def clip_identity(job: ClipJob, options: MapsOptions, model: str) -> dict:
    """The settings that decide a clip's pixels: a re-run must match them to resume. The
    model, layer and seeds, then every field that declares an `Identity`, in field order,
    those equal to their "not used" value (`OPTIONAL_IDENTITY`) left out."""
    data: dict[str, Any] = {"model": model, "layer": job.layer, "seeds": list(job.seeds)}
    for f in fields(options):
        identity = f.metadata.get("identity")
        if identity is None:
            continue
        value = identity.value(options, job) if identity.value else getattr(options, f.name)
        if identity.unused is ALWAYS or value != identity.unused:
            data[identity.key] = value
    return data


def maps_options(**values: Any) -> MapsOptions:
    """`MapsOptions` from what a user writes (the `maps`/`pack` flags, a release file's
    keys), by field name: each value through its option's `parse` (size `2048` or
    `"1920x1080:fill"`, ψ `0.7` or `"0.5:1.0"`, translate `"X,Y"`, a keyframe file's path,
    mix seeds and layers as specs, a sound file, which makes the clip open), None leaving
    the default; then checked. A bad value is an `OptionError`: one line naming the flag,
    whose `key` and `problem` let a release file name its key instead."""
    unknown = sorted(set(values) - set(OPTIONS))
    if unknown:
        raise TypeError(f"maps_options() got unknown options {', '.join(unknown)}")
    parsed: dict[str, Any] = {}
    given = [name for name in OPTIONS if values.get(name) is not None]
    for name in sorted(given, key=lambda n: bool(OPTIONS[n].needs)):  # field order, `needs` last
        option, value = OPTIONS[name], typed_value(name, values[name])
        if option.parse is None:
            parsed[name] = value
        else:
            with option_errors(option.key or name):
                parsed.update(option.parse(value, parsed))
    options = MapsOptions(**parsed)
    options.check()
    if options.audio is not None:  # after the values: analysing a track needs a valid fps
        from .audio import analyse

        with option_errors("audio"):
            analyse(options.audio, options.fps)  # a file that is not audio: one line, now
    return options


def typed_value(name: str, value: Any) -> Any:
    """Option `name`'s value in the type its flag reads, from whatever a user wrote: a
    form's text (`"15"` -> 15, `"true"` -> True), a file's whole number for a float (`fps =
    30` -> 30.0, as clip.json records the flag's). Values an option parses stay as given.

    Raises:
        OptionError: text that is not a number (or a yes/no) where one is needed.
    """
    option = OPTIONS[name]
    kind, key = option.cli_type, option.key or name
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, str) or option.parse is not None or kind not in (int, float, bool):
        return value
    text = value.strip()
    if kind is bool:
        if text.lower() in ("true", "yes", "on", "1"):
            return True
        if text.lower() in ("false", "no", "off", "0"):
            return False
        raise OptionError(key, f"must be true or false, not {value!r}")
    try:
        return kind(text)
    except ValueError:
        raise OptionError(
            key, f"must be {'a whole number' if kind is int else 'a number'}, not {value!r}"
        ) from None


@contextmanager
def option_errors(key: str) -> Iterator[None]:
    """Re-raise a value parser's UsageError (`walk.parse_psi`, `resize.parse_size`, ...) as
    an `OptionError` about option `key`. The parsers word their message for the flag; said
    of a release file's key, the flag reads as the key (`bad psi '0.5:3': ...`)."""
    try:
        yield
    except OptionError:
        raise
    except UsageError as exc:
        message = str(exc)
        flag = re.escape("--" + key.replace("_", "-"))
        raise OptionError(key, re.sub(rf"(?<![\w-]){flag}(?![\w-])", key, message), message) from exc
