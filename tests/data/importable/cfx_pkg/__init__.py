"""Test fixture: an importable package holding cryoflow modules."""
