# From the seed cloudharness-workflows.md ("Execute a custom command"); import line as above.
from cryoflow.pyapi import operations, tasks
my_task = tasks.CustomTask('print-file', 'myapp-mytask', command=["ls", "-la"])
op = operations.SingleTaskOperation('my-op-', my_task)
op.execute()
