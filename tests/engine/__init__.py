"""Execution semantics of the loop engine, in every pool."""
