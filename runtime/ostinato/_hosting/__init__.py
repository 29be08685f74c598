"""Where loops run: the orchestrator, in-process and process loops, hub and remote services."""
