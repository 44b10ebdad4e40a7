# From the seed cloudharness-workflows.md ("Use shared/external volumes"), second snippet.
from cryoflow.pyapi import operations, tasks
shared_directory=["myclaim:/opt/shared:ro", "myclaim2:/opt/shared2"]
my_task = tasks.CustomTask('print-file', 'myapp-mytask')
op = operations.SingleTaskOperation('my-op-', my_task, shared_directory=shared_directory)
op.execute()
