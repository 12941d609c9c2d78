"""Background workers: outbox dispatcher, retention, MESH poller."""
