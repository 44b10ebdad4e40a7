# From the seed cloudharness-workflows.md ("TTL (Time-To-Live) strategy"). The seed writes
# `...` for the operation's other arguments; the test puts a name and a task there.
from cryoflow.pyapi import operations, tasks
ttl_strategy={
    'secondsAfterCompletion': 60 * 60 * 24,
    'secondsAfterSuccess': 60 * 20,
    'secondsAfterFailure': 60 * 120
}
op = operations.ParallelOperation(..., ttl_strategy=ttl_strategy)
