"""The messaging hub: routing, flow control, durable queues."""
