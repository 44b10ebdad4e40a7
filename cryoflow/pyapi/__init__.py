"""The Python API: workflow classes, flow strings and YAML flows on the cryoflow engine.

``from cryoflow import Workflow, BaseWorkFlow``; the parts live in
:mod:`.workflow` (flows), :mod:`.yamlflow` (YAML files), :mod:`.running` (a run on a
background thread, built by :mod:`cryoflow.daemon.root`), :mod:`.records` (what a run
reports), :mod:`.catalog` (definition and active records), :mod:`.calls` (how a node
calls its function), :mod:`.operations` and :mod:`.tasks` (CloudHarness-style
operations).
"""
