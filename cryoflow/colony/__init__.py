"""The ColonyOS layer above the core.

The process queue, its REST routes (a route table for the API), the service and runs of
submitted workflows, growing graphs from a job, attributes, the container executor and
the REST clients. Nothing below this package imports it.
"""
