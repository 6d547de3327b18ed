"""Shared runtime glue: settings, logging, metrics, tracing, errors, child processes."""
