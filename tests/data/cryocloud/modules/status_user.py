"""Written as CryoCloud modules were: status objects, self.log, self.cfg, get_arg."""

ccmodule = {
    "description": "Count items with status objects",
    "depends": [],
    "provides": [],
    "inputs": {"items": "A list of things to count", "label": "A label"},
    "outputs": {"counted": "How many", "tempdir": "The worker's temp folder",
                "had_label": "Whether the status knew the label"},
    "defaults": {"priority": 10, "runOn": "success"},
    "status": {"progress": "Progress 0-100%", "counted": "Items so far"},
}


def process_task(self, task):
    items = self.get_arg(task, "items")
    label = self.get_arg(task, "label", "none")
    self.status.new("counted", expire_time=600, initial_value=0)
    self.status["counted"].downsample(cooldown=5)
    self.status["label"].set_value(label, force_update=True)
    for i, item in enumerate(items):
        self.status["counted"].inc()
        self.status["progress"] = 100 * (i + 1) / float(len(items))
        self.log.debug("counted %s" % item)
    self.log.info("counted %d items for %s" % (self.status["counted"].get_value(), label))
    return self.status["progress"].get_value(), {
        "counted": self.status["counted"].get_value(),
        "tempdir": self.cfg["tempdir"],
        "had_label": "label" in self.status,
    }
