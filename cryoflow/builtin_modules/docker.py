"""Runs a container (CryoCloud's ``docker`` module) with ``docker run``.

``target`` is the image and, after it, the command: a string or a list. ``dirs`` are
volumes (``[source, destination, "ro"|"rw"]``, read-only unless ``rw``), ``env`` is set
inside the container, ``arguments`` are appended, ``gpu`` adds ``--gpus all``. The
container runs as the worker's user. Its output lines follow the tool protocol:
``[key] value`` status, ``<level> message`` log, ``{retval} JSON`` the outputs.
"""

from cryoflow.compat.CryoCloud.Common.DockerProcess import DockerProcess

ccmodule = {
    "description": "Run a command in a Docker container",
    "depends": [],
    "provides": [],
    "inputs": {
        "target": "The image, optionally followed by the command (a list)",
        "gpu": "Give the container the GPUs (default false)",
        "env": "Environment variables inside the container, as a mapping",
        "dirs": "Volumes: a list of [source, destination, mode]",
        "arguments": "More arguments for the container's command, as a list",
        "log_all": "Log every line the container prints (default false)",
        "debug": "Log the docker command line (default false)",
    },
    "outputs": {},
    "defaults": {
        "runOn": "success",
    },
    "status": {"progress": "As the container reports it with [progress] N"},
}


def process_task(worker, task, cancel_event=None):
    args = task["args"]
    target = args.get("target")
    if not target:
        raise ValueError("docker needs target (the image, then optionally its command)")
    target = target if isinstance(target, list) else [target]
    arguments = args.get("arguments") or []
    process = DockerProcess(
        [str(t) for t in target], worker.status, worker.log, worker.stop_event,
        env=args.get("env") or {}, dirs=args.get("dirs") or [], gpu=bool(args.get("gpu")),
        args=[str(a) for a in (arguments if isinstance(arguments, list) else [arguments])],
        log_all=bool(args.get("log_all")), cancel_event=cancel_event,
        debug=bool(args.get("debug")))
    retval = process.run()
    worker.log.debug("container %s ended", target[0])
    return 100, retval if isinstance(retval, dict) else ({} if retval is None else
                                                         {"retval": retval})
