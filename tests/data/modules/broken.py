"""Test fixture: a module with a syntax error."""

ccmodule = {"description": "broken"
