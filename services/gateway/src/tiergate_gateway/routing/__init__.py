"""Routing: what a request is (workload class, language) and where it may go."""
