"""Writes ``text`` into the file ``target`` (which need not exist yet)."""

ccmodule = {"description": "Write a file", "inputs": {"target": "file to write", "text": "what"},
            "outputs": {"written": "the file"}, "defaults": {}, "status": {}}


def process_task(worker, task):
    args = task["args"]
    with open(args["target"], "w", encoding="utf-8") as out:
        out.write(args["text"])
    return 100, {"written": args["target"]}
