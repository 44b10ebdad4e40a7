"""Reports what a container sees: its user, network interfaces, and which paths it can write."""

import os

ccmodule = {"description": "Look around", "inputs": {"src": "input file", "dst": "output folder"},
            "outputs": {}, "defaults": {}, "status": {}}


def _writable(folder):
    probe = os.path.join(folder, ".probe")
    try:
        with open(probe, "w") as handle:
            handle.write("x")
    except OSError as exc:
        return exc.__class__.__name__
    os.remove(probe)
    return True


def process_task(worker, task):
    args = task["args"]
    return 100, {
        "uid": os.getuid(),
        "gid": os.getgid(),
        "interfaces": sorted(os.listdir("/sys/class/net")),
        "input_folder_writable": _writable(os.path.dirname(args["src"])),
        "output_folder_writable": _writable(args["dst"]),
        "input": open(args["src"]).read(),
    }
