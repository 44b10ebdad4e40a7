"""Test harness for fault and end-to-end tests: probe modules, ledger checks, processes."""
