"""A trivial module for benchmarks: returns a small dict derived from its input."""

ccmodule = {
    "description": "Return a small dict derived from the input",
    "inputs": {"x": "a number"},
    "outputs": {"x": "the number plus one"},
}


def process_task(worker, task):
    return 100, {"x": (task["args"].get("x") or 0) + 1}
