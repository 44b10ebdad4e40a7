"""A module written for CryoCloud (the example of its documentation, made runnable)."""

import os

import cc_helper

ccmodule = {
    "description": "Create SAR Wind based on a product from L1 GRD",
    "depends": ["Product"],
    "provides": ["SarWind"],
    "inputs": {
        "src": "Product",
        "configOverride": "Override of configuration parameters (as a map)",
        "program": "IDL Program to run",
        "configFile": "Config file for IDL program",
    },
    "outputs": {
        "product": "The productID of the processed product",
        "datafile": "The datafile used for processing",
        "dst": "Destination path of the resulting wind output",
    },
    "defaults": {
        "priority": 50,  # Normal
        "runOn": "success",
    },
    "status": {"progress": "Progress 0-100%", "state": "Current state of processing"},
}


def _get_product(name):
    return name.split(".")[0]


def process_task(worker, task, cancel_event=None):
    args = task["args"]
    if "src" not in args:
        raise Exception("Can't create wind without data (src argument missing)")
    if "program" not in args:
        raise Exception("Need a program to run (program argument missing)")
    worker.status["progress"] = 0
    worker.log.info("Processing %s" % args["src"])  # noqa: UP031 (written as for CryoCloud)
    datafile = args["src"]
    retval = {"datafile": datafile, "product": _get_product(os.path.split(datafile)[1])}
    task["args"]["fullPath"] = datafile
    p, ret = cc_helper.process_task(worker, task, cancel_event=cancel_event)
    for r in ret:
        retval[r] = ret[r]
    worker.status["progress"] = 100
    return p, retval
