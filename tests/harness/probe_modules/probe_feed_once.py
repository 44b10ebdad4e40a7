"""Probe input (singlerun): ``probe_feed`` that stops at the end of its spool.

The workflow then ends when its pebbles are done. See ``probe_feed`` for the ledger.
"""

import importlib.util
from pathlib import Path

ccmodule = {
    "description": "Offer the items of a spool file once, recording acknowledgements",
    "input_type": "singlerun",
    "inputs": {
        "ledger_dir": "folder with spool.jsonl; acks.tsv is written there",
        "rate": "items per second (0: as fast as possible)",
        "window": "offers in flight at once",
    },
    "outputs": {
        "probe_id": "the item's unique id",
        "path": "a file the item names",
        "level": "a priority level",
        "value": "any value",
    },
    "defaults": {},
    "status": {},
}


def _feed_module():
    path = Path(__file__).with_name("probe_feed.py")
    spec = importlib.util.spec_from_file_location("cryoflow_harness_probe_feed", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def start(handler, args, stop_event):
    _feed_module().Feed(handler, args, stop_event).run(follow=False)
