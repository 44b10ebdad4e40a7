# From the seed cloudharness-workflows.md ("Pod execution context / affinity").
from cryoflow.pyapi import operations, tasks
def f():
  print('whatever')

op = operations.ParallelOperation('test-parallel-op-', (tasks.PythonTask('p1', f), tasks.PythonTask('p2', f)),
                                      pod_context=operations.PodExecutionContext(key='a', value='b', required=True))
