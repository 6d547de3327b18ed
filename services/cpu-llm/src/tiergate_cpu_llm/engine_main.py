"""The engine child process: llama.cpp's own HTTP server (xllamacpp), nothing else.

Started by `Engine` as `python -m tiergate_cpu_llm.engine_main '<json EngineLaunch>'`. It binds
an ephemeral port on 127.0.0.1, writes the port to the launch's port file once listening, and
runs until SIGTERM/SIGINT — or until its parent dies (parent-death signal), so it never
outlives the service. With `embedding` the same server runs an encoder model for
`/v1/embeddings` (llama.cpp's `--embeddings`): a whole input must fit in one physical batch,
so the physical batch is the logical one (`batch_size`), and `pooling` overrides the model's.
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import Literal

import msgspec

from tiergate_runtime.process import die_with_parent
from tiergate_runtime.server import write_port_file

__all__ = ["STOP_DEADLINE_S", "EngineLaunch", "Pooling", "main"]

STOP_DEADLINE_S = 5

Pooling = Literal["mean", "cls", "last"]


class EngineLaunch(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """What the service tells the engine child; passed as one JSON argument."""

    model_path: str
    model_id: str
    ctx_size: int
    parallel: int
    threads: int
    threads_batch: int
    batch_size: int
    seed: int | None
    port_file: str | None = None
    port: int = 0
    """0: any free port (cpu-llm reads it from the port file); gpu-llm gives a fixed one."""
    embedding: bool = False
    """Serve `/v1/embeddings` with an encoder model instead of generating."""
    pooling: Pooling | None = None
    """embedding: how token vectors become one; None: the model file's own pooling type."""
    chat_template: str | None = None
    """Jinja chat template to apply instead of the GGUF's own (for a GGUF without one)."""


def main(argv: list[str]) -> int:
    """Run llama.cpp's server until told to stop."""
    die_with_parent()
    launch = msgspec.json.decode(argv[1], type=EngineLaunch)
    # Block the stop signals before llama.cpp starts its threads (they inherit the mask), so
    # only sigwait below receives them and the server shuts down in order.
    stop_signals = {signal.SIGTERM, signal.SIGINT}
    signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)

    import xllamacpp  # noqa: PLC0415 - the heavy native library loads only in the child

    params = xllamacpp.CommonParams()
    params.model.path = launch.model_path
    params.model_alias = {launch.model_id}
    params.hostnames = ["127.0.0.1"]
    params.port = launch.port
    params.n_ctx = launch.ctx_size
    params.n_parallel = launch.parallel
    params.cont_batching = True
    params.n_batch = launch.batch_size
    params.cpuparams.n_threads = launch.threads
    params.cpuparams_batch.n_threads = launch.threads_batch
    params.endpoint_metrics = True
    params.endpoint_slots = True
    params.ui = False
    params.use_jinja = True
    if launch.chat_template is not None:
        params.chat_template = launch.chat_template
    if launch.seed is not None:
        params.sampling.seed = launch.seed
    if launch.embedding:
        params.embedding = True
        params.use_jinja = False
        params.n_ubatch = launch.batch_size
        if launch.pooling is not None:
            pooling = f"LLAMA_POOLING_TYPE_{launch.pooling.upper()}"
            params.pooling_type = getattr(xllamacpp.llama_pooling_type, pooling)
    server = xllamacpp.Server(params)
    address: str = server.listening_address
    if launch.port_file is not None:
        write_port_file(Path(launch.port_file), int(address.rsplit(":", 1)[1]))
    print(f"engine listening {address}", flush=True)
    signal.sigwait(stop_signals)
    # An orderly stop waits for llama.cpp's threads; if they hang (a slot stuck generating
    # while our parent is gone), SIGALRM's default action ends the process anyway.
    signal.alarm(STOP_DEADLINE_S)
    del server
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
