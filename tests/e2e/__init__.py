"""End-to-end tests: the running service over real HTTP, with a real PostgreSQL."""
