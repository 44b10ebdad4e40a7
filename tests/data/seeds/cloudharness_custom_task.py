# From the seed cloudharness-workflows.md ("Using CustomTask"); the seed's page imports
# operations and tasks above it (that import line changed to cryoflow.pyapi).
from cryoflow.pyapi import operations, tasks
my_task = tasks.CustomTask('print-file', 'myapp-mytask')
op = operations.SingleTaskOperation('my-op-', my_task)
op.execute()
