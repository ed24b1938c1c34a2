"""Synthetic workloads: a YAML WorkloadSpec and a seeded numpy Generator -> EventTable (+ OpTable).

``spec`` loads and validates workload files (``workloads/*.yaml``, schema in
``docs/workloads.md``); ``generate`` turns a spec into the same EventTable a trace reader
produces, with the invisible parts of the workload (kfree_rcu, bulk and prefill traffic) counted
in ``meta.extra["synth"]``; ``writers`` prints a table as ftrace or ``trace-cmd report`` text;
``stats`` computes the workload statistics used to fit a spec to a real trace and to test one.
"""

from __future__ import annotations
