"""Stand-in for a CryoniteOcean wind module: the module API as CryoCloud modules used it."""

from _product import make_product

ccmodule = {
    "description": "Make a wind product from unpacked SAR files (test stand-in)",
    "depends": ["Product"],
    "provides": ["SarProduct"],
    "inputs": {
        "src": "Input file",
        "fileList": "Unpacked files",
        "configOverride": "Config values to override",
        "program": "IDL program",
        "configFile": "Config file",
    },
    "outputs": {
        "product": "Product id",
        "result": "ok or error",
        "dst": "Product file",
    },
    "defaults": {
        "priority": 50,
        "runOn": "success",
    },
}


def process_task(self, task, stop_event):
    return make_product(self, task, "wind")
