"""Feedback on answers and consented chat history, the gateway's side (issue 15).

The auth service owns the durable records (PostgreSQL or SQLite: it owns users and their
consent); the gateway knows who got which answer and what the answer was:

- `ledger.py`: every answer's id is remembered for whoever got it (tier and subject), with
  the model and backend, for the feedback window (`tg:ans:<id>` in the shared store).
- `tap.py`: the response as it goes to the client: the answer's id from its first event or
  its body, and — only for a user who consented (`store_chats`) — the answer assembled.
- `writer.py`: consented exchanges and feedback sent to the auth service's internal API in
  the background, retried, bounded; a write that cannot be made is counted and logged by id.
- `feedback.py`: `POST /v1/feedback` — by the subject that got the answer only (others:
  404), once per answer (a second replaces the first).
"""
