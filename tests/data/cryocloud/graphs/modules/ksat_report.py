"""Stand-in for a site's product report: logs what it would report."""

ccmodule = {
    "description": "Report a product or an error (test stand-in)",
    "depends": [],
    "provides": [],
    "inputs": {"product": "Product id", "error": "What went wrong", "src": "Input file",
               "result": "The end result"},
    "outputs": {},
    "defaults": {"priority": 0, "runOn": "success", "type": "admin"},
}


def process_task(self, task):
    self.log.info("report %s" % task["args"])
    return 100, None
