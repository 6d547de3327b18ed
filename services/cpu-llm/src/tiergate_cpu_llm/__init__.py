"""The CPU model service: llama.cpp's own server with a small model, in a child process."""
