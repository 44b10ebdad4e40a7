"""Reads an input file and writes its text in upper case into an output folder."""

import os

ccmodule = {
    "description": "Upper-case a text file",
    "inputs": {"src": "input file", "dst": "output folder"},
    "outputs": {"out": "the written file", "chars": "characters copied"},
    "defaults": {},
    "status": {"progress": "0..100"},
}


def process_task(worker, task):
    args = task["args"]
    worker.status["progress"] = 10
    with open(args["src"], encoding="utf-8") as source:
        text = source.read()
    worker.log.info("read %d characters from %s", len(text), os.path.basename(args["src"]))
    out = os.path.join(args["dst"], os.path.basename(args["src"]) + ".upper")
    with open(out, "w", encoding="utf-8") as target:
        target.write(text.upper())
    worker.status["progress"] = 100
    return 100, {"out": out, "chars": len(text)}
