"""Shared state: Redis or an in-process store, limit scripts, key layout."""
