"""Measures one scene: logs what it does, waits while ``hold`` (a file) is missing,
and fails for the scene named in ``bad``."""

import os
import time

ccmodule = {
    "description": "Measure a scene (a stand-in that logs, waits and may fail)",
    "inputs": {"scene": "the scene", "bad": "the scene that fails", "hold": "wait for this file",
               "quick": "scenes that do not wait"},
    "outputs": {"scene": "the scene measured", "value": "the measurement"},
}


def process_task(worker, task, cancel_event=None):
    args = task["args"]
    scene = args["scene"]
    worker.log.info("reading %s", scene)
    hold = None if scene in (args.get("quick") or ()) else args.get("hold")
    waited = 0
    while hold and not os.path.exists(hold) and waited < 600:
        if cancel_event is not None and cancel_event.is_set():
            break
        worker.status["progress"] = min(90, 10 + waited)
        time.sleep(0.05)
        waited += 1
    worker.log.info("calibrating %s against the reference", scene)
    if scene == args.get("bad"):
        worker.log.warning("%s: band 2 has no valid pixels", scene)
        raise ValueError(f"{scene}: band 2 is empty, nothing to measure")
    return 100, {"scene": scene, "value": len(scene)}
