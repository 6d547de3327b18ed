"""Re-encoding a GGUF's low-bit tensors as Q8_0: values kept, metadata kept, made once."""

from __future__ import annotations

from pathlib import Path

import gguf
import numpy as np
import pytest

from tiergate_cpu_llm.gguf_requant import main, requantize
from tiergate_cpu_llm.model import ModelFileError
from tiergate_cpu_llm.packaged_model import requantized

_Q = gguf.GGMLQuantizationType


def _model(path: Path) -> np.ndarray:
    """A tiny GGUF: one Q4_1 matrix, one F32 norm, a chat template; the matrix's values."""
    rng = np.random.default_rng(7)
    weights = rng.standard_normal((8, 64)).astype(np.float32)
    norm = rng.standard_normal(64).astype(np.float32)
    writer = gguf.GGUFWriter(path, "llama")
    writer.add_context_length(128)
    writer.add_chat_template("{{ messages }}")
    packed = gguf.quants.quantize(weights, _Q.Q4_1)
    writer.add_tensor("blk.0.ffn_up.weight", packed, raw_shape=packed.shape, raw_dtype=_Q.Q4_1)
    writer.add_tensor("blk.0.attn_norm.weight", norm)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    reader = gguf.GGUFReader(path)
    stored = next(t for t in reader.tensors if t.name == "blk.0.ffn_up.weight")
    return gguf.quants.dequantize(stored.data, _Q.Q4_1).reshape(8, 64)


def test_low_bit_tensors_become_q8_0_with_their_values(tmp_path: Path) -> None:
    four_bit = _model(tmp_path / "m.gguf")
    assert requantize(tmp_path / "m.gguf", tmp_path / "m8.gguf") == 1
    reader = gguf.GGUFReader(tmp_path / "m8.gguf")
    tensors = {t.name: t for t in reader.tensors}
    matrix = tensors["blk.0.ffn_up.weight"]
    assert matrix.tensor_type == _Q.Q8_0
    eight_bit = gguf.quants.dequantize(matrix.data, _Q.Q8_0).reshape(8, 64)
    # 8-bit blocks of 32 hold the 4-bit values to within half a step of 8 bits.
    step = np.abs(four_bit).max() / 127
    assert np.abs(eight_bit - four_bit).max() <= step
    norm = tensors["blk.0.attn_norm.weight"]
    assert norm.tensor_type == _Q.F32  # copied as it is
    original = {t.name: t for t in gguf.GGUFReader(tmp_path / "m.gguf").tensors}
    assert np.array_equal(norm.data, original["blk.0.attn_norm.weight"].data)
    template = reader.fields["tokenizer.chat_template"].contents()
    assert template == "{{ messages }}"
    assert reader.fields["general.architecture"].contents() == "llama"


def test_a_model_is_re_encoded_once_into_the_cache(tmp_path: Path) -> None:
    _model(tmp_path / "m.gguf")
    cache = tmp_path / "cache"
    first = requantized(tmp_path / "m.gguf", cache, "q8_0")
    assert first.parent == cache.resolve()
    made = first.stat().st_mtime_ns
    assert requantized(tmp_path / "m.gguf", cache, "q8_0") == first
    assert first.stat().st_mtime_ns == made  # found, not made again
    assert [p.name for p in cache.iterdir()] == [first.name]  # no temporary file left


def test_a_file_that_is_not_gguf_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF" + b"\0" * 64)
    with pytest.raises(ModelFileError, match="cannot convert"):
        requantized(bad, tmp_path / "cache", "q8_0")
    assert not any((tmp_path / "cache").glob("*.gguf"))
    assert main([str(bad), str(tmp_path / "out.gguf")]) == 1
    assert not (tmp_path / "out.gguf").exists()
