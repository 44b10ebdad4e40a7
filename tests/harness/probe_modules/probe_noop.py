"""Probe: does nothing but leave its markers; its output is its arguments."""

from probe_marks import Execution

ccmodule = {
    "description": "Do nothing; return the arguments",
    "inputs": {"ledger_dir": "marker folder", "value": "any value, echoed back"},
    "outputs": {"args": "the arguments the job got"},
    "defaults": {},
    "status": {},
}


def process_task(worker, task, cancel_event=None):
    run = Execution(task)
    args = dict(task["args"])
    run.finish()
    return 100, {"args": args}
