"""Probe input (permanent): offers the items of a spool file and records each ack.

The spool is ``<ledger_dir>/spool.jsonl``: one JSON object per line, each with a unique
``probe_id``. Every item is offered with ``idem_key=probe_id``; once the head has
committed it, ``probe_id<TAB>pebble_id`` is appended to ``<ledger_dir>/acks.tsv`` and
fsynced, so the ack ledger holds exactly what the system acknowledged. Items already
in the ack ledger are not offered again; an item offered but not acknowledged (the head
died in between) is offered again after a restart, with the same key.

On start it writes ``feed-started/<pid>-<nonce>`` (the head is ready: its store is
resumed and its workers are up). Args: ``rate`` items per second (0: no limit),
``window`` offers in flight at once. This permanent variant keeps following the spool
for appended lines until it is stopped; ``probe_feed_once`` stops at its end.
"""

import concurrent.futures
import json
import os
import time
from pathlib import Path

ccmodule = {
    "description": "Offer the items of a spool file, recording acknowledgements",
    "input_type": "permanent",
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

POLL_S = 0.05


def start(handler, args, stop_event):
    Feed(handler, args, stop_event).run(follow=True)


class Feed:
    def __init__(self, handler, args, stop_event):
        self.handler = handler
        self.stop_event = stop_event
        self.ledger = Path(args["ledger_dir"])
        self.rate = float(args.get("rate") or 0)
        self.window = max(1, int(args.get("window") or 1))
        self.acked = read_acks(self.ledger / "acks.tsv")
        self.position = 0
        self.next_at = time.monotonic()

    def run(self, follow):
        self.announce()
        with open(self.ledger / "acks.tsv", "a", encoding="utf-8") as acks:
            while not self.stop_event.is_set():
                items = [i for i in self.new_items() if i["probe_id"] not in self.acked]
                for start in range(0, len(items), self.window):
                    if not self.offer(items[start:start + self.window], acks):
                        return
                if not follow and not items:
                    return
                if not items and self.stop_event.wait(POLL_S):
                    return

    def announce(self):
        folder = self.ledger / "feed-started"
        folder.mkdir(parents=True, exist_ok=True)
        record = json.dumps({"pid": os.getpid(), "t": time.time()})
        (folder / f"{os.getpid()}-{os.urandom(4).hex()}").write_text(record)

    def new_items(self):
        """Complete lines appended to the spool since the last call."""
        try:
            with open(self.ledger / "spool.jsonl", "rb") as spool:
                spool.seek(self.position)
                data = spool.read()
        except FileNotFoundError:
            return []
        complete = data[: data.rfind(b"\n") + 1]
        self.position += len(complete)
        return [json.loads(line) for line in complete.splitlines() if line.strip()]

    def pace(self):
        if self.rate > 0:
            delay = self.next_at - time.monotonic()
            if delay > 0 and self.stop_event.wait(delay):
                return False
            self.next_at = max(self.next_at, time.monotonic() - 1.0) + 1.0 / self.rate
        return True

    def offer(self, items, acks):
        """Offer ``items`` together; record every ack. False once stopped."""
        futures = {}
        for item in items:
            if not self.pace():
                return False
            futures[self.submit(item)] = item["probe_id"]
        pending = set(futures)
        while pending:
            if self.stop_event.is_set():
                return False
            done, pending = concurrent.futures.wait(pending, timeout=POLL_S)
            for future in done:
                self.record(acks, futures[future], future.result())
        return True

    def submit(self, item):
        key = item["probe_id"]
        submit = getattr(self.handler, "submit", None)
        if submit is not None:
            return submit(item, idem_key=key)
        future = concurrent.futures.Future()
        future.set_result(self.handler.onAdd(item, idem_key=key))
        return future

    def record(self, acks, probe_id, pebble_id):
        acks.write(f"{probe_id}\t{pebble_id}\n")
        acks.flush()
        os.fsync(acks.fileno())
        self.acked.add(probe_id)


def read_acks(path):
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return set()
    return {line.split("\t", 1)[0] for line in text.splitlines() if "\t" in line}
