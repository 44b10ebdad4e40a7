"""Input module: one pebble made of the workflow's options, then the workflow ends.

The item holds every option (so ``{"output": "Start.src"}`` reads option ``src``) and
``caller``, the input node's name, as CryoCloud's cmdline item did.
"""

ccmodule = {
    "description": "One pebble from the command line options; the workflow ends after it",
    "depends": [],
    "provides": ["Input"],
    "input_type": "singlerun",
    "inputs": {},
    # No "outputs": the pebble's item is the workflow's options, whatever they are, so
    # references like {"output": "Start.src"} are not checked against a fixed list.
    "defaults": {
        "priority": 0,
        "runOn": "always",
    },
    "status": {},
}


def start(handler, args, stop_event):
    """Hand ``args`` (the head passes the workflow's options) over as the one item.

    A run killed before that pebble finished is resumed by the next run with the same
    options (the item is the key); after it finished, the same options run again.
    """
    item = {key: value for key, value in args.items() if not str(key).startswith("__")}
    if "__name__" in args:
        item.setdefault("caller", args["__name__"])
    resume_or_add = getattr(handler, "resume_or_add", None)
    if resume_or_add is None:  # a handler without pebble keys (CryoCloud's)
        handler.onAdd(item)
    else:
        resume_or_add(item)
