"""Convert a GGUF model into a Hugging Face directory vLLM can load, offline (engine tier).

Usage: `.venv-engines/bin/python scripts/engines_convert.py MODEL.gguf OUT_DIR`. Uses
transformers' GGUF loader (needs gguf and accelerate), dequantizes to float32, and writes
safetensors, config and tokenizer into OUT_DIR atomically (a temporary sibling renamed into
place, then a `.complete` marker), so a half-written directory is never loaded.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def convert(gguf: Path, out: Path) -> None:
    """Load `gguf` with transformers and save it as a plain (unquantized) HF directory."""
    import torch  # noqa: PLC0415 - after the offline environment above is set
    from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: PLC0415

    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(
        str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32
    )
    # The loader leaves a GGUF quantizer on the model; save_pretrained refuses to save a
    # quantized model whose quantizer cannot serialize. The weights are plain floats by now.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        tmp.chmod(0o755)
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    (out / ".complete").write_text(str(gguf) + "\n")


def main(argv: list[str]) -> int:
    """Entry point; exit status 2 on bad usage."""
    if len(argv) != 3:
        print("usage: engines_convert.py MODEL.gguf OUT_DIR", file=sys.stderr)
        return 2
    convert(Path(argv[1]).resolve(), Path(argv[2]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
