"""tiergate rag: documents chunked by heading, indexed for BM25 search (tantivy)."""
