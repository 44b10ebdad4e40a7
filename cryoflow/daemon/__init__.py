"""The composition root.

The one place that opens the store, builds executors and a head, and runs them.
"""
