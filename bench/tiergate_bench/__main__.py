"""`PYTHONPATH=bench python -m tiergate_bench [--quick] ...`: run the benchmark.

`... -m tiergate_bench cpu-first [...]` runs the GPU tier's benchmark instead (cpu_first.py);
`... -m tiergate_bench rag [...]` the retrieval service's search benchmark (rag_search.py);
`... -m tiergate_bench overload [...]` the real small model saturated through the gateway
(overload.py: load shedding, issue 10); `... -m tiergate_bench answer [...]` the anonymous
answer: time to first token, grounding and quality on `evals/answer.toml` (answer.py, issue 12);
`... -m tiergate_bench engines [...]` a real vLLM (CPU) directly, through gpu-llm and through the
gateway, side by side (engines_bench.py, issue 14; needs `scripts/engines-setup.sh`);
`... -m tiergate_bench filter [...]` the content filter's cost per request and chunk
(filter_cost.py, issue 15); `... guard [...]` the runaway guard's (guard_cost.py).
"""

import sys

if sys.argv[1:2] == ["rag"]:
    from tiergate_bench.rag_search import main as rag_search

    raise SystemExit(rag_search(sys.argv[2:]))

if sys.argv[1:2] == ["guard"]:
    from tiergate_bench.guard_cost import main as guard_cost

    raise SystemExit(guard_cost(sys.argv[2:]))

if sys.argv[1:2] == ["filter"]:
    from tiergate_bench.filter_cost import main as filter_cost

    raise SystemExit(filter_cost(sys.argv[2:]))

if sys.argv[1:2] == ["overload"]:
    from tiergate_bench.overload import main as overload

    raise SystemExit(overload(sys.argv[2:]))

if sys.argv[1:2] == ["answer"]:
    from tiergate_bench.answer import main as answer

    raise SystemExit(answer(sys.argv[2:]))

if sys.argv[1:2] == ["engines"]:
    from tiergate_bench.engines_bench import main as engines

    raise SystemExit(engines(sys.argv[2:]))

if sys.argv[1:2] == ["cpu-first"]:
    from tiergate_bench.cpu_first import main as cpu_first

    raise SystemExit(cpu_first(sys.argv[2:]))

from tiergate_bench.main import main

raise SystemExit(main())
