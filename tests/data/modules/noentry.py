"""Test fixture: a ccmodule without process_task or start."""

ccmodule = {"description": "Declares but defines nothing"}
