"""tiergate gpu-llm: the engines of one GPU box, at most one holding the GPU."""
