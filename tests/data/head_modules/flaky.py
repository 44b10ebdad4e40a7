import os

ccmodule = {
    "description": "Fails the first time (creating a flag file), succeeds afterwards",
    "inputs": {"flag": "a path"},
    "outputs": {"tries": "always 'again'"},
}


def process_task(worker, task):
    flag = task["args"]["flag"]
    if not os.path.exists(flag):
        open(flag, "w").close()
        raise RuntimeError("first try fails")
    return 100, {"tries": "again"}
