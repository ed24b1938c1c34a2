"""sheaftune: replay kmem allocation traces through a model of SLUB's per-CPU sheaves.

Start reading at ``sheaftune/cli/`` (what the user types), then ``readers/`` (trace files to
an :class:`~sheaftune.events.EventTable`), ``normalize.py`` (events to facts), ``model/`` (the
sheaf model), ``analysis/`` (sweeps, recommendation, prefill versus bulk) and ``report/``
(rendering). ``../ARCHITECTURE.md`` of the project describes the pipeline.
"""

__version__ = "0.1.0"
