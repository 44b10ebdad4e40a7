"""Encodes or transcodes with ``ffmpeg`` (CryoCloud's ``ffmpeg`` module, on the real tool).

Progress comes from ffmpeg's ``-progress`` report against the input's duration (from
``ffprobe``); the status shows frame, fps, size, time, bitrate and speed as they go.
``container: auto`` picks the suffix from the input's video codec (mp4 for H.264/H.265,
webm for VP8/VP9); any other ``container`` is used as the suffix.
"""

import os
import subprocess
import time

from cryoflow.compat.tools import require_tool, run_tool

ccmodule = {
    "description": "Encode or transcode video and audio with ffmpeg",
    "depends": [],
    "provides": [],
    "inputs": {
        "src": "Input file",
        "dst": "Output file (its suffix, or container, picks the format)",
        "size": "Frame size of the output, WxH",
        "bitrate_video": "Video bitrate, e.g. 1200k",
        "acopy": "Copy the audio stream as it is",
        "vcopy": "Copy the video stream as it is",
        "copy": "Copy both streams as they are",
        "noaudio": "Drop the audio",
        "container": "Suffix to add to dst; auto picks one from the video codec",
    },
    "outputs": {
        "size": "Size of the output in MB",
        "time": "Seconds the encoding took",
        "dst": "The output file",
    },
    "defaults": {
        "priority": 0,
        "runOn": "success",
    },
    "status": {
        "progress": "Share of the input's duration encoded, 0-100",
        "state": "probing, converting or idle",
    },
}

_CODEC_SUFFIX = {"h264": "mp4", "hevc": "mp4", "h265": "mp4", "vp8": "webm", "vp9": "webm"}
_REPORTED = {"frame": "frame", "fps": "fps", "total_size": "size", "out_time": "time",
             "bitrate": "bitrate", "speed": "speed"}


def process_task(worker, task, cancel_event=None):
    args = task["args"]
    for key in ("src", "dst"):
        if not args.get(key):
            raise ValueError(f"ffmpeg needs {key}")
    ffmpeg = require_tool("ffmpeg", "install ffmpeg (apt-get install ffmpeg)")
    src, dst = str(args["src"]), str(args["dst"])
    if not os.path.exists(src):
        raise FileNotFoundError(f"ffmpeg src {src} does not exist")
    if args.get("container"):
        worker.status["state"] = "probing"
        dst += "." + (_suffix_for(src) if args["container"] == "auto" else str(args["container"]))
    duration = _duration(src)
    cmd = [ffmpeg, "-y", "-nostdin", "-hide_banner", "-nostats", "-progress", "pipe:1",
           "-i", src, *_options(args), dst]
    worker.status["state"] = "converting"
    worker.log.debug("ffmpeg command: %s", cmd)
    started = time.monotonic()

    def on_line(stream, line):
        if stream == "stdout":
            _progress(worker, line, duration)
        elif line.strip():
            worker.log.debug("ffmpeg: %s", line)

    result = run_tool(cmd, cancel_event, on_line=on_line)
    result.check(cmd, "ffmpeg")
    worker.status["state"] = "idle"
    worker.status["progress"] = 100
    return 100, {"size": round(os.path.getsize(dst) / 1e6, 3),
                 "time": round(time.monotonic() - started, 3), "dst": dst}


def _options(args):
    options = []
    if args.get("size"):
        options += ["-s", str(args["size"])]
    if args.get("bitrate_video"):
        options += ["-b:v", str(args["bitrate_video"])]
    if args.get("copy"):
        options += ["-c:a", "copy", "-c:v", "copy"]
    else:
        if args.get("acopy"):
            options += ["-c:a", "copy"]
        if args.get("vcopy"):
            options += ["-c:v", "copy"]
    if args.get("noaudio"):
        options += ["-an"]
    return options


def _probe(src, entries, stream=True):
    cmd = ["ffprobe", "-v", "error"]
    if stream:
        cmd += ["-select_streams", "v:0"]
    cmd += ["-show_entries", entries, "-of", "default=noprint_wrappers=1:nokey=1", src]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return done.stdout.strip().splitlines()[0] if done.stdout.strip() else ""


def _suffix_for(src):
    codec = _probe(src, "stream=codec_name")
    if codec not in _CODEC_SUFFIX:
        raise ValueError(f"container auto: unsupported video codec {codec or 'none'!r} in "
                         f"{src}; known: {', '.join(sorted(_CODEC_SUFFIX))}")
    return _CODEC_SUFFIX[codec]


def _duration(src):
    try:
        return float(_probe(src, "format=duration", stream=False))
    except ValueError:
        return None


def _progress(worker, line, duration):
    key, _, value = line.strip().partition("=")
    if key in _REPORTED:
        worker.status[_REPORTED[key]] = value
    if key == "out_time_us" and duration and value.isdigit():
        worker.status["progress"] = min(99, int(int(value) / 1e6 / duration * 100))
