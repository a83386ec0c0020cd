"""Code shared by every exporter: config loading, durations, logging, build info."""
