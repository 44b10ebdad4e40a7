# From the seed cloudharness-workflows.md ("Notify on exit"). The seed writes `...` for the
# operation's other arguments; the test puts a name and a task there.
from cryoflow.pyapi import operations, tasks
import json
on_exit_notify={
    'queue': 'my_queue',
    'payload': json.dumps({'insert': 1})
}
op = operations.ParallelOperation(..., on_exit_notify=on_exit_notify)
