"""Stand-in for CryoniteOcean's wave merge: joins a wave and a wind product."""

import json

ccmodule = {
    "description": "Merge wave and wind products (test stand-in)",
    "depends": [],
    "provides": [],
    "inputs": {"product": "Wave product", "wind": "Wind product",
               "program": "IDL program", "configFile": "Config file"},
    "outputs": {"product": "Merged product id", "dst": "Merged file"},
    "defaults": {"priority": 50, "runOn": "success"},
}


def process_task(self, task):
    parts = [task["args"].get("product"), task["args"].get("wind")]
    merged = parts[0] + ".merged"
    with open(merged, "w") as f:
        json.dump(parts, f)
    self.status["progress"] = 100
    return 100, {"product": merged, "dst": merged}
