"""Stand-in: note a failed product in the job log."""

ccmodule = {
    "description": "Log an error (test stand-in)",
    "depends": [],
    "provides": [],
    "inputs": {"src": "Input file", "product": "Product id", "result": "The end result"},
    "outputs": {},
    "defaults": {"priority": 0, "runOn": "error"},
}


def process_task(self, task):
    self.log.error("failed: %s" % task["args"])
    return 100, None
