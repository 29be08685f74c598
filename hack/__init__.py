"""Project tooling that is not shipped: scripts behind the Makefile's infrastructure targets."""
