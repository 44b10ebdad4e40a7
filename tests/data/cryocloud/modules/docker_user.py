"""Runs a container through CryoCloud.Common.DockerProcess, as the docker module did."""

from CryoCloud.Common.DockerProcess import DockerProcess
from CryoCore import API

ccmodule = {
    "description": "Run a container",
    "depends": [],
    "provides": [],
    "inputs": {"target": "Image and command", "dirs": "Volumes"},
    "outputs": {},
    "defaults": {"runOn": "success"},
}


def process_task(worker, task, cancel_event=None):
    dp = DockerProcess(task["args"]["target"], worker.status, worker.log, API.api_stop_event,
                       dirs=task["args"].get("dirs", []), cancel_event=cancel_event)
    retval = dp.run()
    return worker.status["progress"].get_value(), retval
