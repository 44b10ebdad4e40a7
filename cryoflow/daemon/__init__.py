"""The composition root.

:mod:`.root` is the one place that opens the store, builds executors and a head;
:mod:`.settings` holds the typed run settings and :mod:`.inputs` the input threads.
"""
