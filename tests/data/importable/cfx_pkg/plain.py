"""Test fixture: an importable module that is not a cryoflow module."""

VALUE = 1
