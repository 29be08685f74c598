"""Tests of the Kubernetes test infrastructure itself (hack/k8s)."""
