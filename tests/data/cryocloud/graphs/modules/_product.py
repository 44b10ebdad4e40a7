"""Shared by the stand-in product modules: write a small product file and report it."""

import json
import os


def make_product(worker, task, kind):
    args = task["args"]
    files = args.get("fileList") or args.get("src") or []
    if not isinstance(files, list):
        files = [files]
    worker.status["state"].set_value("processing")
    folder = os.path.join(worker.cfg["tempdir"], "cryocloud-products")
    os.makedirs(folder, exist_ok=True)
    name = "%s-%s" % (kind, task.get("pebble_id", "x"))
    dst = os.path.join(folder, name + ".json")
    with open(dst, "w") as f:
        json.dump({"kind": kind, "inputs": files, "program": args.get("program"),
                   "override": args.get("configOverride")}, f)
    for done in range(1, 5):
        if worker._stop_event.is_set():
            return worker.status["progress"].get_value(), None
        worker.status["progress"] = 25 * done
    worker.log.info("%s product %s from %d file(s)" % (kind, name, len(files)))
    return worker.status["progress"].get_value(), {"product": name, "result": "ok", "dst": dst}
