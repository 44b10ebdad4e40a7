"""A meeting point for jobs of different pebbles that share a message id.

Each job of this node leaves its message (its arguments) under ``msgid`` in a shared
folder, ``dir`` (default: ``communicate`` in the worker's temporary folder; use a
shared filesystem when the parties run on different hosts), and waits until
``expect`` parties (default 2) have left theirs, or until ``timeout`` seconds (an
error) or a cancel. Every party then ends with all the messages.

CryoCloud held the meeting in its head and continued only the pebble of the
``resolveOn`` parent. Here every party continues; ``resolved`` is true for the party
named by ``resolveOn`` (a party is named by its ``party`` argument, else by its
pebble id), or for every party when ``resolveOn`` is absent or ``any``, so
downstream nodes can act once with ``runIf: "output:parent.resolved"``.
"""

import hashlib
import json
import os
import tempfile
import time

ccmodule = {
    "description": "Wait until the jobs of several pebbles with the same msgid have met",
    "depends": [],
    "provides": [],
    "inputs": {
        "msgid": "What the parties have in common (required)",
        "resolveOn": "The party that resolves, or 'any' (default any)",
        "party": "This party's name (default: its pebble id)",
        "expect": "How many parties meet (default 2)",
        "timeout": "Seconds to wait for the others (default: until cancelled)",
        "dir": "Shared folder for the messages (default: the worker's temp folder)",
    },
    "outputs": {
        "msgid": "The message id",
        "party": "This party's name",
        "parties": "The names of all parties, in the order they arrived",
        "messages": "Each party's arguments, by party name",
        "resolved": "True for the party that resolves (see resolveOn)",
    },
    "defaults": {
        "priority": 0,
        "runOn": "always",
    },
    "status": {"state": "waiting or met", "arrived": "Parties arrived so far"},
}

_POLL_S = 0.1


def process_task(worker, task, cancel_event=None):
    args = task["args"]
    if args.get("msgid") in (None, ""):
        raise ValueError("communicate needs msgid")
    msgid = str(args["msgid"])
    party = str(args.get("party") or f"pebble-{task.get('pebble_id')}")
    expect = int(args.get("expect", 2))
    folder = _folder(worker, args, msgid)
    _leave(folder, party, {k: v for k, v in args.items() if k not in ("dir",)})
    worker.status["state"] = "waiting"
    deadline = None if args.get("timeout") is None else time.monotonic() + float(args["timeout"])
    while True:
        arrived = _arrived(folder)
        worker.status["arrived"] = len(arrived)
        if len(arrived) >= expect:
            break
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError(f"communicate {msgid!r}: {len(arrived)} of {expect} parties "
                               f"arrived within {args['timeout']} s ({', '.join(arrived)})")
        if cancel_event is not None and cancel_event.wait(_POLL_S):
            return 0, None
        if cancel_event is None:
            time.sleep(_POLL_S)
    worker.status["state"] = "met"
    messages = {name: _read(folder, name) for name in arrived}
    resolve_on = str(args.get("resolveOn") or "any")
    resolved = resolve_on.lower() == "any" or resolve_on == party
    return 100, {"msgid": msgid, "party": party, "parties": arrived, "messages": messages,
                 "resolved": resolved}


def _folder(worker, args, msgid):
    base = args.get("dir") or os.path.join(worker.cfg["tempdir"], "communicate")
    folder = os.path.join(str(base), hashlib.sha256(msgid.encode()).hexdigest()[:32])
    os.makedirs(folder, exist_ok=True)
    return folder


def _leave(folder, party, message):
    name = hashlib.sha256(party.encode()).hexdigest()[:32] + ".json"
    fd, temp = tempfile.mkstemp(dir=folder, prefix=".part-")
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump({"party": party, "at": time.time(), "message": message}, handle, default=str)
    os.replace(temp, os.path.join(folder, name))


def _arrived(folder):
    found = []
    for entry in os.listdir(folder):
        if entry.endswith(".json") and not entry.startswith("."):
            try:
                with open(os.path.join(folder, entry), encoding="utf-8") as handle:
                    data = json.load(handle)
            except (OSError, ValueError):
                continue
            found.append((data.get("at", 0), data.get("party", entry)))
    return [party for _at, party in sorted(found)]


def _read(folder, party):
    name = hashlib.sha256(party.encode()).hexdigest()[:32] + ".json"
    with open(os.path.join(folder, name), encoding="utf-8") as handle:
        return json.load(handle).get("message")
