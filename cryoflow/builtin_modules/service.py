"""Runs a node on another cryoflow head: the ``serviceURL`` microservice pattern.

The head turns a node with ``serviceURL`` into a job of this module: its resolved args
are posted as JSON to the service's netwatcher, which answers 202 with an id; the job
then polls ``/status/<id>`` until the remote pebble is done. The remote pebble's
``retval`` becomes this node's output; a failed remote pebble fails the job.
"""

import json
import time
import urllib.error
import urllib.request

ccmodule = {
    "description": "Post the args to another cryoflow head and return its result",
    "inputs": {
        "url": "The service's base URL (the node's serviceURL)",
        "args": "The node's resolved arguments, posted as the item",
    },
    "outputs": {},
    "status": {"progress": "0 while waiting, 100 when the remote pebble is done"},
}

_POLL_S = 0.2
_TIMEOUT_S = 30


def process_task(worker, task, cancel_event=None):
    base = str(task["args"]["url"]).rstrip("/")
    posted = _request(base + "/task", task["args"].get("args") or {})
    remote = posted["id"]
    worker.log.info("posted to %s as %s", base, remote)
    while cancel_event is None or not cancel_event.is_set():
        status = _request(f"{base}/status/{remote}")
        if status.get("completed"):
            if status.get("outcome") != "completed":
                raise RuntimeError(f"service {base} pebble {remote} ended "
                                   f"{status.get('outcome')}")
            worker.status["progress"] = 100
            retval = status.get("retval")
            return 100, retval if isinstance(retval, dict) else {"value": retval}
        time.sleep(_POLL_S)
    return 0, None


def _request(url, body=None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method="GET" if body is None else "POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=_TIMEOUT_S) as reply:  # noqa: S310
            return json.loads(reply.read() or b"{}")
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode(errors="replace")[:500]
        raise RuntimeError(f"service {url} answered {exc.code}: {detail}") from exc
    except urllib.error.URLError as exc:
        raise RuntimeError(f"service {url} cannot be reached: {exc.reason}") from exc
