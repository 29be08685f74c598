"""The single-node cluster itself: pods of the local image run, talk, log, and go away."""
