"""ostinato test suite: one folder per topic."""
