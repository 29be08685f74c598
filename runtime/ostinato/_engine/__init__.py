"""The loop engine: one loop's states, iterations and node calls; queues only through ports."""
