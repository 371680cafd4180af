"""Edges of the system: HTTP, CLI, worker, and the composition root that wires adapters."""
