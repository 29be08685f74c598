"""What people and Prometheus read: HTTP endpoints, metrics, logs and the live view."""
