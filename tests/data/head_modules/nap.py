ccmodule = {
    "description": "Sleeps for a while and says when it started",
    "inputs": {"seconds": "how long to sleep"},
    "outputs": {"started": "when the job began (time.time())"},
}

import time


def process_task(worker, task):
    started = time.time()
    time.sleep(float(task["args"].get("seconds") or 0))
    return 100, {"started": started}
