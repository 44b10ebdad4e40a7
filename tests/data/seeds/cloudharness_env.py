# From the seed cloudharness-workflows.md ("Passing parameters as env variables to tasks").
from cryoflow.pyapi import operations, tasks
my_task = tasks.CustomTask('print-file', 'myapp-mytask', env_variable1="my variable", env_variable2=1)
op = operations.SingleTaskOperation('my-op-', my_task)
op.execute()
