"""tiergate auth service: e-mail codes, sessions (EdDSA JWT + JWKS), API keys, consent."""
