"""Delivering a clip: an EXR clip folder becomes a seamless loop video for VJ and editing tools.

`encode_clip(clip_dir, "loop.mov", "prores")` reads the frames in clip order and encodes
exactly those frames at the clip's fps. A looping clip (`irep3d maps --loop`) has
seeds × K frames and its frame 1 follows its last frame in the walk, so the video loops
seamlessly when played on repeat: frame 1 is never appended at the end, and the frame
count of the written file is checked against the clip's.

Codecs (`CODECS`) and what they are for:

| codec | container | pixels | encoder | `quality` |
| --- | --- | --- | --- | --- |
| `h264` | .mp4 / .mov | 8-bit yuv420p, BT.709 | libx264, ffmpeg binary, one thread | CRF, default 16 |
| `prores` | .mov | 10-bit yuv422p10le, BT.709 (4444: yuv444p10le) | prores_ks through PyAV | proxy, lt, standard, hq (default), 4444 |
| `hap` | .mov | 8-bit RGB(A), DXT texture | ffmpeg binary | hap (default), hap_q, hap_alpha |

PyAV's bundled FFmpeg has no HAP encoder, and its libx264 does not repeat its bytes from run
to run, so HAP and H.264 run an ffmpeg binary (the one in the
`imageio-ffmpeg` wheel, else `ffmpeg` on PATH) fed raw RGB frames on stdin.

Colour: frames are mapped to display code values by `irep3d.display` (the one mapping
previews, loops and contact sheets share): linear light through the sRGB OETF
(`transfer="srgb"`), or clamped as they are (`"none"`), raw clips first rescaled by their
percentiles. YUV streams are limited range with BT.709 matrix and primaries tags, and the
BT.709 transfer tag for `srgb` (the usual tagging of sRGB-encoded video; players show it
as Rec.709/sRGB) or "unspecified" for `none`.

Sound (`audio=`, `irep3d encode --audio TRACK.wav`): once the video is written, the ffmpeg
binary copies its video stream unchanged and adds the track: AAC (320 kb/s) in .mp4, 16-bit
PCM in .mov (lossless, what editors and VJ tools read beside ProRes and HAP). The video's
length decides: a longer track is cut at the last frame (`-t`, not `-shortest`, so the
frame count never changes); a shorter one simply ends early (silence after it). The
track starts with frame 1, as `irep3d maps --audio` measured it.

Sizes: frames are padded (by repeating the last row and column) to even sizes for h264
and prores (chroma subsampling) and to multiples of 4 for HAP (4×4 DXT blocks). What each
codec can deliver (`MAX_SIDE`, `FFMPEG_MAX_AREA`, checked on the padded size by `check_size`
before any frame is read) was measured with the encoders above on two constant frames
(imageio-ffmpeg's ffmpeg n9.0.2, PyAV 18.1 with libavcodec 62.28):

| codec | largest side | refused above it by | largest frames encoded |
| --- | --- | --- | --- |
| `h264` | 16384 | libx264: "invalid width x height (16386x2)" | 16384x2, 2x16384, 16384x16128 (6.2 GB, 16 s) |
| `prores` | 65534 | the mov muxer: "Resolution 65536x2 too large for mov/mp4" | 65534x3960, 3960x65534, 16384x16128 (4444: 1.8 GB, 41 s) |
| `hap` | 65532 | the mov muxer, as prores | 65532x3960, 3960x65532, 16384x16128 (hap_q: 6 GB, 22 s) |

and for all three, FFmpeg itself (`av_image_check_size`: 8 bytes a pixel plus 1024 a row,
times height + 128 rows, must fit a signed 32-bit int) refuses a frame unless
(width + 128) × (height + 128) < 2^28: 16384x16128 and 65534x3960 encode, 16384x16130 and
65534x3962 are refused ("Picture size 16384x16129 is invalid"), so the largest square is
16255 px a side (16254 once even, 16252 for HAP) and `--size 16384` delivers nothing.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from fractions import Fraction
from pathlib import Path

import numpy as np
import OpenEXR

from .display import TRANSFERS, display_frames, folder_frames, folder_manifest, pad, quantise
from .errors import OutputError, UsageError
from .files import atomic_output, final_path, remove_temps, temp_file
from .preview import clip_fps
from .progress import Progress

__all__ = [
    "CODECS",
    "CODEC_SUFFIXES",
    "FFMPEG_MAX_AREA",
    "HAP_FORMATS",
    "MAX_SIDE",
    "PRORES_PROFILES",
    "check_size",
    "clean_stale_videos",
    "encode_clip",
    "padded_size",
    "probe_video",
]

CODECS = ("h264", "prores", "hap")
CODEC_SUFFIXES = {"h264": (".mp4", ".mov"), "prores": (".mov",), "hap": (".mov",)}
PRORES_PROFILES = {"proxy": 0, "lt": 1, "standard": 2, "hq": 3, "4444": 4}  # prores_ks `profile`
HAP_FORMATS = ("hap", "hap_q", "hap_alpha")  # ffmpeg hap encoder `-format`
DEFAULT_QUALITY = {"h264": "16", "prores": "hq", "hap": "hap"}
_PAD_MULTIPLE = {"h264": 2, "prores": 2, "hap": 4}
#: The largest width or height each codec delivers, after padding (measured: see the module).
MAX_SIDE = {"h264": 16384, "prores": 65534, "hap": 65532}
#: FFmpeg refuses a frame unless (width + 128) * (height + 128) stays below this (all codecs).
FFMPEG_MAX_AREA = 1 << 28


def padded_size(codec: str, width: int, height: int) -> tuple[int, int]:
    """(width, height) of `codec`'s frames for a clip of `width`×`height`: rounded up to even
    (h264, prores) or to a multiple of 4 (hap), as the encoder pads them."""
    multiple = _PAD_MULTIPLE[codec]
    return -(-width // multiple) * multiple, -(-height // multiple) * multiple


def _largest_square(codec: str) -> int:
    """The side of the largest square frame `codec` delivers."""
    side = min(MAX_SIDE[codec], math.isqrt(FFMPEG_MAX_AREA - 1) - 128)
    return side - side % _PAD_MULTIPLE[codec]


def check_size(codec: str, width: int, height: int) -> None:
    """Refuse frames of `width`×`height` that `codec` cannot deliver, before any work.

    Raises:
        UsageError: one line naming the size (and the padded size), the codec and its limit.
    """
    pw, ph = padded_size(codec, width, height)
    if pw > MAX_SIDE[codec] or ph > MAX_SIDE[codec]:
        limit = f"at most {MAX_SIDE[codec]} px a side"
    elif (pw + 128) * (ph + 128) >= FFMPEG_MAX_AREA:
        square = _largest_square(codec)
        limit = f"FFmpeg takes (width + 128) x (height + 128) < 2^28, at most {square}x{square}"
    else:
        return
    size = f"{width}x{height}" + (f" (padded to {pw}x{ph})" if (pw, ph) != (width, height) else "")
    raise UsageError(f"{codec} cannot encode {size} frames: {limit}; choose a smaller size")


def _frame_size(path: Path) -> tuple[int, int] | None:
    """(width, height) of an EXR or PNG frame from its header alone (no pixels read); None
    when the header cannot be read, which reading the frame then reports."""
    try:
        if path.suffix == ".png":
            from PIL import Image

            with Image.open(path) as image:
                return image.size
        start, end = OpenEXR.File(str(path), header_only=True).header()["dataWindow"]
        return int(end[0] - start[0] + 1), int(end[1] - start[1] + 1)
    except (OSError, RuntimeError, KeyError, ValueError):
        return None


def _check_frame_size(codec: str, frames: list[Path]) -> None:
    """`check_size` for a clip or render folder, on its first frame's header."""
    size = _frame_size(frames[0]) if frames else None
    if size is not None:
        check_size(codec, *size)


def _write_prores(
    temp: Path,
    container_format: str,
    quality: str,
    transfer: str,
    images: Iterator[np.ndarray],
    rate: Fraction,
    on_frame: Callable[[], None],
) -> None:
    """Encode ProRes with PyAV (its wheels bundle FFmpeg with prores_ks)."""
    import av
    from av.video.reformatter import ColorPrimaries, ColorRange, Colorspace, ColorTrc

    profile = PRORES_PROFILES[quality]
    pix_fmt = "yuv444p10le" if profile == 4 else "yuv422p10le"
    options = {"profile": str(profile), "vendor": "apl0"}
    trc = ColorTrc.BT709 if transfer == "srgb" else ColorTrc.UNSPECIFIED
    tags = {
        "dst_colorspace": Colorspace.ITU709,
        "dst_color_range": ColorRange.MPEG,
        "dst_color_trc": trc,
        "dst_color_primaries": ColorPrimaries.BT709,
    }
    with av.open(str(temp), mode="w", format=container_format) as container:
        stream = container.add_stream("prores_ks", rate=rate)
        stream.pix_fmt = pix_fmt
        stream.options = options
        context = stream.codec_context
        context.colorspace, context.color_range = Colorspace.ITU709, ColorRange.MPEG
        context.color_trc, context.color_primaries = trc, ColorPrimaries.BT709
        for index, values in enumerate(images):
            if index == 0:
                stream.height, stream.width = values.shape[:2]
            rgb = av.VideoFrame.from_ndarray(quantise(values, 16), format="rgb48le")
            frame = rgb.reformat(format=pix_fmt, **tags)
            frame.pts = index
            container.mux(stream.encode(frame))
            on_frame()
        container.mux(stream.encode(None))


def _ffmpeg_exe() -> str:
    """An ffmpeg binary with the HAP encoder: imageio-ffmpeg's, else `ffmpeg` on PATH."""
    with contextlib.suppress(ImportError, RuntimeError):
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    exe = shutil.which("ffmpeg")
    if exe is None:
        raise UsageError("HAP needs an ffmpeg binary: `pip install imageio-ffmpeg` or install ffmpeg")
    return exe


def _write_hap(
    temp: Path,
    quality: str,
    images: Iterator[np.ndarray],
    rate: Fraction,
    on_frame: Callable[[], None],
) -> None:
    """Encode HAP (DXT textures in .mov) with the ffmpeg binary."""
    args = ["-fps_mode", "passthrough", "-c:v", "hap", "-format", quality, "-f", "mov"]
    _write_ffmpeg(temp, "hap", args, images, rate, on_frame, alpha=quality == "hap_alpha")


def _write_h264(
    temp: Path,
    container_format: str,
    quality: str,
    transfer: str,
    images: Iterator[np.ndarray],
    rate: Fraction,
    on_frame: Callable[[], None],
) -> None:
    """Encode H.264 (libx264, yuv420p, BT.709 limited range) with the ffmpeg binary.

    Through the binary, not PyAV: PyAV's libx264 gave different bytes for the same frames
    from run to run (seen here, one thread or several, whenever frames arrive at another
    pace), and a resumed pack must equal an uninterrupted one. The binary with one encoder
    thread repeats itself exactly; a pack gets its parallelism from encoding several
    loops at once.
    """
    trc = "bt709" if transfer == "srgb" else "unknown"
    # The tags travel on the filtered frames (setparams): FFmpeg 7+ takes the encoder's
    # colour fields from them, and the output options alone (kept for older binaries) left
    # primaries and transfer unspecified in the stream and in the container's colr atom.
    tags = f"colorspace=bt709:color_primaries=bt709:color_trc={trc}:range=tv"
    args = [
        "-vf", f"scale=out_color_matrix=bt709:out_range=tv,format=yuv420p,setparams={tags}",
        "-c:v", "libx264", "-preset", "medium", "-crf", quality, "-threads", "1",
        "-colorspace", "bt709", "-color_primaries", "bt709", "-color_trc", trc, "-color_range", "tv",
        "-fps_mode", "passthrough", "-f", container_format,
    ]  # fmt: skip
    _write_ffmpeg(temp, "h264", args, images, rate, on_frame)


def _write_ffmpeg(
    temp: Path,
    name: str,
    output_args: list[str],
    images: Iterator[np.ndarray],
    rate: Fraction,
    on_frame: Callable[[], None],
    alpha: bool = False,
) -> None:
    """Run the ffmpeg binary fed raw 8-bit RGB(A) frames on stdin, writing `temp`.

    The subprocess is killed if anything goes wrong here, Ctrl-C included; its error
    output goes to a temp file (a pipe could fill up and stall both processes).
    """
    first = next(images, None)
    if first is None:
        raise OutputError("the clip has no frames to encode")
    height, width = first.shape[:2]
    command = [
        _ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y",
        "-f", "rawvideo", "-pix_fmt", "rgba" if alpha else "rgb24", "-s", f"{width}x{height}",
        "-framerate", f"{rate.numerator}/{rate.denominator}", "-i", "-",
        *output_args, str(temp),
    ]  # fmt: skip
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=log,
            start_new_session=True,  # Ctrl-C reaches irep3d alone, which stops ffmpeg (finally:)
        )
        try:
            assert process.stdin is not None
            for image in itertools.chain([first], images):
                pixels = quantise(image, 8)
                if alpha:
                    pixels = np.concatenate([pixels, np.full_like(pixels[..., :1], 255)], axis=-1)
                try:
                    process.stdin.write(np.ascontiguousarray(pixels).tobytes())
                except BrokenPipeError:
                    break  # ffmpeg stopped: its exit code and message say why
                on_frame()
            with contextlib.suppress(BrokenPipeError):
                process.stdin.close()
            code = process.wait()
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        if code != 0:
            log.seek(0)
            raise _ffmpeg_failed(name, code, log.read(), temp)


def _mux_audio(video: Path, track: Path, temp: Path, container_format: str, seconds: Fraction) -> None:
    """Copy `video`'s stream and add `track` (AAC in mp4, PCM in mov), cut to `seconds`."""
    codec = ["-c:a", "aac", "-b:a", "320k"] if container_format == "mp4" else ["-c:a", "pcm_s16le"]
    command = [
        _ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y",
        "-i", str(video), "-i", str(track), "-map", "0:v:0", "-map", "1:a:0", "-c:v", "copy", *codec,
        "-t", f"{float(seconds):.6f}", "-f", container_format, str(temp),
    ]  # fmt: skip
    result = subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True, check=False)
    if result.returncode != 0:
        raise _ffmpeg_failed("audio", result.returncode, result.stderr, temp)


def _ffmpeg_failed(name: str, code: int, stderr: bytes, output: Path) -> OutputError:
    """The one line for an ffmpeg run that failed writing `output` (a temp or scratch file
    of the video the user asked for, which the line names): ffmpeg's last line, without
    its `[muxer @ 0x…]` prefixes, says why (e.g. "Error closing file: No space left on device")."""
    final = final_path(output)
    lines = stderr.decode(errors="replace").strip().splitlines()
    why = re.sub(r"^(\[[^\]]*\]\s*)+", "", lines[-1]) if lines else "no output"
    return OutputError(f"cannot write {final}: ffmpeg ({name}) failed with exit code {code}: {why}")


def clean_stale_videos(folder: str | os.PathLike[str]) -> int:
    """Delete what killed encodes left in `folder` (a release's `loops/`): temp videos of
    processes that no longer run, and the `.encode-*` scratch folders that earlier versions
    made. How many were removed."""
    removed = remove_temps(folder, dead_only=True)
    for scratch in Path(folder).glob(".encode-*"):
        if scratch.is_dir():
            shutil.rmtree(scratch, ignore_errors=True)
            removed += 1
    return removed


def probe_video(path: str | os.PathLike[str]) -> tuple[int, int, int]:
    """(frames, width, height) of a written video, read back from the file: frames counted
    from its packets (no decoding), the size from its first video stream."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = sum(1 for packet in container.demux(stream) if packet.size)
        return frames, stream.codec_context.width, stream.codec_context.height


def encode_clip(
    clip_dir: str | os.PathLike[str],
    out: str | os.PathLike[str],
    codec: str,
    fps: float | None = None,
    transfer: str = "srgb",
    quality: str | None = None,
    progress: Progress | None = None,
    audio: str | os.PathLike[str] | None = None,
) -> Path:
    """Encode the clip in `clip_dir` as a seamless loop video `out`; returns `out`.

    Args:
        clip_dir: a clip folder (`<clip>_00001.exr`, … and usually `clip.json`), or a
            render folder (`frame_00001.png`, … and `render.json`: `irep3d blender render`,
            the add-on's Render button; PNGs are display-referred already, so `transfer`
            applies to EXR renders only).
        out: the video to write atomically; `.mp4` or `.mov` for h264, `.mov` otherwise.
        codec: one of `CODECS`.
        fps: frames per second; default the manifest's `fps` (clip.json's, or render.json's:
            the scene's), else `DEFAULT_FPS`.
        transfer: `srgb` (linear light -> sRGB OETF) or `none` (values as they are).
        quality: h264 CRF (0-51, default 16); prores profile (`PRORES_PROFILES`, default
            hq); HAP format (`HAP_FORMATS`, default hap).
        progress: called as `progress("encode", done, total)` after each frame is encoded.
        audio: a sound file to mux with the video (see the module: AAC in .mp4, PCM in
            .mov, cut to the video's length).

    A temp video that a killed encode of the same `out` left behind (its process gone) is
    removed first; a failure or Ctrl-C (or an exception from `progress`) stops the encoder
    and removes the temp.

    Raises:
        UsageError: unknown codec, transfer or quality, wrong suffix, bad fps, no ffmpeg for
            HAP, an `audio` file that is not a sound file, a frame size the codec cannot
            deliver (`check_size`).
        OutputError: no frames, a missing, damaged or unreadable frame, an incomplete clip
            (`Clip.frames`), frames of different sizes, an encoder failure, or an output
            that cannot be written.
    """
    out = Path(out)
    if codec not in CODECS:
        raise UsageError(f"unknown codec {codec!r}; use one of: {', '.join(CODECS)}")
    if transfer not in TRANSFERS:
        raise UsageError(f"unknown transfer {transfer!r}; use one of: {', '.join(TRANSFERS)}")
    suffixes = CODEC_SUFFIXES[codec]
    suffix = out.suffix.lower()
    if suffix not in suffixes:
        raise UsageError(f"{codec} output must end in {' or '.join(suffixes)}, got {out.name!r}")
    quality = DEFAULT_QUALITY[codec] if quality is None else str(quality).strip().lower()
    check_quality(codec, quality)
    frames, rendered = folder_frames(clip_dir)
    _check_frame_size(codec, frames)  # a size the codec cannot deliver: one line, nothing read yet
    fps = clip_fps(folder_manifest(clip_dir, rendered), fps, "encode")
    rate = Fraction(fps).limit_denominator(1001)
    if audio is not None:
        from .audio import load_track

        load_track(audio)  # not a sound file: one line before any encoding
    total = len(frames)
    done = 0

    def on_frame() -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress("encode", done, total)

    multiple = _PAD_MULTIPLE[codec]
    images = (pad(values, multiple) for values in display_frames(clip_dir, transfer, (frames, rendered)))
    remove_temps(out.parent, name=out.name, dead_only=True)  # a killed encode's leftovers
    with atomic_output(out) as temp, temp_file(out) as scratch:
        video = temp if audio is None else scratch  # with sound: video first, then muxed into temp
        if codec == "hap":
            _write_hap(video, quality, images, rate, on_frame)
        elif codec == "h264":
            _write_h264(video, suffix[1:], quality, transfer, images, rate, on_frame)
        else:
            _write_prores(video, suffix[1:], quality, transfer, images, rate, on_frame)
        if audio is not None:
            _mux_audio(video, Path(audio), temp, suffix[1:], done / rate)
        written, _, _ = probe_video(temp)
        if done != total or written != total:
            raise OutputError(
                f"encoded {written} frames of the clip's {total} (sent {done}); {out.name} was not written"
            )
    return out


def check_quality(codec: str, quality: str) -> None:
    """Raise UsageError unless `quality` is valid for `codec`."""
    if codec == "h264":
        if not (quality.isdigit() and 0 <= int(quality) <= 51):
            raise UsageError(f"h264 quality is a CRF from 0 (lossless) to 51, got {quality!r}")
    elif codec == "prores" and quality not in PRORES_PROFILES:
        raise UsageError(f"prores quality must be one of: {', '.join(PRORES_PROFILES)}, got {quality!r}")
    elif codec == "hap" and quality not in HAP_FORMATS:
        raise UsageError(f"hap quality must be one of: {', '.join(HAP_FORMATS)}, got {quality!r}")
