"""Command-line entry points: ``ccworkflow`` (and the others as they come)."""
