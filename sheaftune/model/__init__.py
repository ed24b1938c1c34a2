"""The sheaf model: the readable reference (``reference.py``) over the slab layer (``slab.py``),
the scenario runner (``scenario.py``) and the counter registry (``counters.py``)."""
