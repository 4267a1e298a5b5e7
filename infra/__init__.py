"""Where the data lands and what it runs on: embedded broker and Redis launchers, the
compose file for a Docker set-up, and the Redis sink."""
