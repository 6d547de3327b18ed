"""Durable records the auth service owns: feedback, consented chats, admin audit (issue 15)."""
