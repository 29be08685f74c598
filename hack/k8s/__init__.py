"""A real Kubernetes for the test suite, from Debian packages: binaries, control plane, cluster."""
