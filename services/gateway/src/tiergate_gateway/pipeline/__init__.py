"""The request pipeline every OpenAI endpoint goes through (issue 11)."""
