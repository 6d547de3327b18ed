"""A fake OpenAI engine on a real socket that injects faults chosen per request.

It stands in for the GPU engines (vLLM, SGLang) in tests and produces the
faults a real server cannot produce on demand, on chat completions, legacy
completions and embeddings alike. Select a behaviour with the
extra body field `"fake": {...}` (see `Behaviour`); inspect what it received
with `FakeEngine.requests` or `GET /_fake/requests`.
"""

from tiergate_testkit.fake_engine.behaviour import Behaviour
from tiergate_testkit.fake_engine.engine import FakeEngine
from tiergate_testkit.fake_engine.recording import Outcome, RecordedRequest

__all__ = ["Behaviour", "FakeEngine", "Outcome", "RecordedRequest"]
