"""Reports what a container sees: its user, network interfaces, and which paths it can write."""

import os

ccmodule = {"description": "Look around", "inputs": {"src": "input file", "dst": "output folder"},
            "outputs": {}, "defaults": {}, "status": {}}


def _writable(path):
    probe = os.path.join(path, ".probe") if os.path.isdir(path) else path
    try:
        with open(probe, "a") as handle:
            handle.write("")
    except OSError as exc:
        return exc.__class__.__name__
    if probe != path:
        os.remove(probe)
    return True


def process_task(worker, task):
    args = task["args"]
    return 100, {
        "uid": os.getuid(),
        "gid": os.getgid(),
        "interfaces": sorted(os.listdir("/sys/class/net")),
        "input_writable": _writable(args["src"]),
        "output_folder_writable": _writable(args["dst"]),
        "input": open(args["src"]).read(),
    }
