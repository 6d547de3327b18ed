"""Who is asking: credentials to a principal (tier and subject), with cached lookups."""
