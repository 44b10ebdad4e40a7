"""Stand-in for a site's 'copy' module: copy a file from a host (here: locally)."""

import os
import shutil

ccmodule = {
    "description": "Copy a product from the host that made it (test stand-in)",
    "depends": [],
    "provides": [],
    "inputs": {"src": "File to copy", "host": "Host it is on"},
    "outputs": {"dst": "The copy"},
    "defaults": {"priority": 10, "runOn": "success", "type": "admin"},
}


def process_task(self, task):
    src = task["args"]["src"]
    dst = os.path.join(self.cfg["tempdir"], "copied-" + os.path.basename(src))
    shutil.copyfile(src, dst)
    self.log.debug("copied %s from %s" % (src, task["args"].get("host")))
    return 100, {"dst": dst}
