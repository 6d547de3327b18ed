"""Wire contracts shared by every tiergate service: the OpenAI API and internal APIs."""
