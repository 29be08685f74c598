"""Process-pool loops: crashes, restarts, the control channel."""
