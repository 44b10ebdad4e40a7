ccmodule = {
    "description": "Returns its arguments, optionally failing on request",
    "inputs": {"x": "any value", "fail": "raise when true"},
    "outputs": {"x": "the value given"},
}


def process_task(worker, task):
    args = task["args"]
    worker.status["progress"] = 50
    worker.log.info("echo %s", args.get("x"))
    if args.get("fail"):
        raise RuntimeError(f"asked to fail on {args.get('x')}")
    return 100, dict(args)
