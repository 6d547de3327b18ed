"""The OpenAI endpoints on the pipeline: what each reads, sends upstream and answers."""
