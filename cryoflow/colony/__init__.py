"""The ColonyOS layer above the core.

The process queue, its REST routes, workflow runs, dynamic graphs and the executor client.
"""
