"""An input module as CryoCloud's were: __name__, handler.head.makeDirectoryWatcher."""

import os

ccmodule = {
    "description": "Watch a folder the CryoCloud way",
    "depends": [],
    "provides": ["Input"],
    "input_type": "permanent",
    "inputs": {"src": "Folder to watch"},
    "outputs": {"fullpath": "File", "relpath": "Name", "datasize": "Bytes", "caller": "Node"},
    "defaults": {"priority": 0, "runOn": "always"},
}


def start(handler, args, stop_event):
    if "__name__" not in args:
        raise Exception("Require name as argument")

    def onAdd(info):
        info["caller"] = args["__name__"]
        info["datasize"] = os.stat(info["fullpath"]).st_size
        handler.onAdd(info)

    handler.log.info("watching %s" % args["src"])
    handler.dir_monitor = handler.head.makeDirectoryWatcher(args["src"], onAdd, recursive=False)
    handler.dir_monitor.start()
