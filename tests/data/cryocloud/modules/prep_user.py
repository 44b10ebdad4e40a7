"""Prepares its input with CryoCloud.Common.fileprep and logs through CryoCore.API."""

import CryoCloud.Common.fileprep
from CryoCore import API

ccmodule = {
    "description": "Fetch and unpack inputs with fileprep",
    "depends": [],
    "provides": [],
    "inputs": {"urls": "URLs or paths of the inputs"},
    "outputs": {"fileList": "Local files", "size": "Bytes", "tempdir": "Config tempdir"},
    "defaults": {"priority": 10, "runOn": "success"},
}


def process_task(self, task):
    cfg = API.get_config("CryoCloud.Worker")
    fileprep = CryoCloud.Common.fileprep.FilePrepare(s3root=cfg["tempdir"] + "/prep")
    prepared = fileprep.fix(task["args"]["urls"])
    API.get_log("prep").info("prepared %d files" % len(prepared["fileList"]))
    API.get_status("prep")["state"] = "prepared"
    return 100, {"fileList": prepared["fileList"], "size": prepared["size"],
                 "tempdir": cfg["tempdir"]}
