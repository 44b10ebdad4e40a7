"""Test fixture: a module that depends on a Product upstream."""

ccmodule = {
    "description": "Report a product",
    "depends": ["Product"],
    "inputs": {"product": "Product id", "error": "Error text"},
    "outputs": {},
    "defaults": {"type": "admin", "priority": "high"},
}


def process_task(worker, task):
    return 100, None
