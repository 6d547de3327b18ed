"""Talking to upstream engines: one pooled client per backend, error mapping, the SSE relay."""
