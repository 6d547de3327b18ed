"""tiergate's benchmark harness: the gateway's own cost next to direct, nginx and LiteLLM."""
