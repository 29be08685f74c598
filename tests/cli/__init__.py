"""End-to-end tests of the `ostinato` command, run as a real subprocess."""
