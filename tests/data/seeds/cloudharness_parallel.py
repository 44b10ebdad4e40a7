# From the seed cloudharness-workflows.md ("High level Operations API"), with only the
# import line changed (cloudharness.workflows -> cryoflow.pyapi).
from cryoflow.pyapi import operations, tasks

def f():
    import time
    time.sleep(2)
    print('whatever')

op = operations.ParallelOperation('test-parallel-op-', (tasks.PythonTask('p1', f), tasks.PythonTask('p2', f)))
