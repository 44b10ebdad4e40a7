"""Test module: hashes the file it is given and echoes a value."""

import hashlib

ccmodule = {
    "description": "Report the sha256 of a file and echo a value",
    "inputs": {"path": "a file to hash (optional)", "value": "any value to echo"},
    "outputs": {"sha256": "hash of the file's bytes", "size": "bytes read",
                "value": "the value given"},
}


def process_task(worker, task):
    args = task["args"]
    out = {"value": args.get("value")}
    if args.get("path"):
        with open(args["path"], "rb") as f:
            data = f.read()
        out["sha256"] = hashlib.sha256(data).hexdigest()
        out["size"] = len(data)
    return 100, out
