"""Builds a Docker image (CryoCloud's ``build_docker`` module).

In ``directory`` it runs ``./build_docker.sh TARGET`` or ``./dockerbuild TARGET`` when
one exists, else ``docker build -t TARGET .``. Build steps (``Step 2/5`` or BuildKit's
``[2/5]``) drive the progress; a failed build fails the job with its last lines.
"""

import os
import re

from cryoflow.compat.tools import require_tool, run_tool

ccmodule = {
    "description": "Build a Docker image",
    "depends": [],
    "provides": [],
    "inputs": {
        "target": "Name (tag) of the image to build",
        "directory": "Folder with the Dockerfile (or a build_docker.sh / dockerbuild script)",
    },
    "outputs": {
        "target": "The image built",
    },
    "defaults": {
        "priority": 0,
        "runOn": "success",
    },
    "status": {"progress": "Build steps done, 0-100", "current": "The step being built"},
}

_STEP = re.compile(r"(?:Step (\d+)/(\d+) : |\[\s*(?:\S+\s+)?(\d+)/(\d+)\]\s*)(.*)")


def process_task(worker, task, cancel_event=None):
    args = task["args"]
    for key in ("target", "directory"):
        if not args.get(key):
            raise ValueError(f"build_docker needs {key}")
    folder, target = str(args["directory"]), str(args["target"])
    if not os.path.isdir(folder):
        raise NotADirectoryError(f"build_docker directory {folder!r} is not a folder")
    cmd = _command(folder, target)
    worker.log.info("building %s: %s", target, " ".join(cmd))

    def on_line(stream, line):
        match = _STEP.search(line)
        if match:
            done = int(match.group(1) or match.group(3))
            total = int(match.group(2) or match.group(4))
            worker.status["done"], worker.status["total"] = done, total
            worker.status["current"] = match.group(5)
            worker.status["progress"] = min(99, int(100 * done / max(1, total)))
            worker.log.info(line)
        else:
            worker.log.debug(line)

    result = run_tool(cmd, cancel_event, on_line=on_line, cwd=folder)
    result.check(cmd, f"the build of {target}")
    worker.status["progress"] = 100
    return 100, {"target": target}


def _command(folder, target):
    for script in ("build_docker.sh", "dockerbuild"):
        path = os.path.join(folder, script)
        if os.path.isfile(path):
            return [path, target]
    return [require_tool("docker", "install Docker (docker.io)"), "build", "-t", target, "."]
