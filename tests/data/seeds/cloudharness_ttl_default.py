# From the seed cloudharness-workflows.md ("TTL (Time-To-Live) strategy"): the default value.
default = {
    'secondsAfterCompletion': 60 * 60,
     'secondsAfterSuccess': 60 * 20,
     'secondsAfterFailure': 60 * 120
}
