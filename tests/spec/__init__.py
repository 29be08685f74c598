"""Workflow documents (validation with field-named errors) and the node decorators."""
