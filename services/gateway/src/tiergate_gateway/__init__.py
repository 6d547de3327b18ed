"""The tiergate gateway: the public OpenAI-compatible API."""
