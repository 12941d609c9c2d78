"""Adapters: the edge where the ports meet PostgreSQL, keys, tokens, MESH and the network."""
