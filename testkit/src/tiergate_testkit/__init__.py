"""Test support: a fault-injecting fake OpenAI engine and process helpers."""
