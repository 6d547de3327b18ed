"""The backends of a grounded answer as real processes: rag over a corpus and cpu-llm
(llama.cpp with the real SmolLM2, the model path cpu-llm itself resolves), for end-to-end tests.

cpu-llm runs on one thread with a fixed seed, so that the small model answers the same way on
every run and machine. A test that uses `grounded_backends` starts a model: tests/conftest.py
follows test code into this package and marks it `model`.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tiergate_testkit.services import ServiceProcess

__all__ = ["GroundedBackends", "grounded_backends", "shipped_corpus"]


@dataclass(frozen=True)
class GroundedBackends:
    """rag and cpu-llm, both ready (their `base_url` is what a gateway is pointed at)."""

    rag: ServiceProcess
    cpu: ServiceProcess


def shipped_corpus(repo: Path) -> list[Path]:
    """config/rag.toml's corpus, each entry resolved against the checkout `repo`."""
    corpus: list[str] = tomllib.loads((repo / "config" / "rag.toml").read_text())["corpus"]
    return [repo / entry for entry in corpus]


@contextmanager
def grounded_backends(
    index_dir: Path,
    corpus: Sequence[Path],
    *,
    model_id: str,
    cpu_env: Mapping[str, str] | None = None,
) -> Iterator[GroundedBackends]:
    """Start rag over `corpus` (files or folders; its index in `index_dir`), then cpu-llm
    serving SmolLM2 as `model_id` (one thread, seed 42); yield both once ready; stop cpu-llm,
    then rag. `cpu_env` adds cpu-llm settings (`TIERGATE_CPU_LLM_ENGINE__PARALLEL`, ...)."""
    rag_env = {
        "TIERGATE_RAG_INDEX_DIR": str(index_dir),
        "TIERGATE_RAG_CORPUS": json.dumps([str(path) for path in corpus]),
    }
    engine_env = {
        "TIERGATE_CPU_LLM_ENGINE__THREADS": "1",
        "TIERGATE_CPU_LLM_ENGINE__SEED": "42",
        "TIERGATE_CPU_LLM_ENGINE__MODEL_ID": model_id,
        **(cpu_env or {}),
    }
    with (
        ServiceProcess("tiergate_rag", "TIERGATE_RAG_", rag_env) as rag,
        ServiceProcess("tiergate_cpu_llm", "TIERGATE_CPU_LLM_", engine_env) as cpu,
    ):
        yield GroundedBackends(rag=rag, cpu=cpu)
