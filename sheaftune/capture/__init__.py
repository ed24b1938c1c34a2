"""Live capture: ``sheaftune record`` (tracefs -> trace.dat v6) and the bpftrace scripts we ship.

``tracefs`` controls the kernel's tracing file system (a private instance, events, filters),
``record`` runs the recording loop, ``tracedat_writer`` writes the trace.dat v6 file,
``scripts`` gives the bpftrace scripts (package data ``*.bt``) and ``prefill_ops`` turns the
records of the prefill script into an OpTable.
"""
