"""Adapters: one module or package per technology, each implementing application ports."""
