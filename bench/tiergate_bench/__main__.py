"""`PYTHONPATH=bench python -m tiergate_bench [--quick] ...`: run the benchmark."""

from tiergate_bench.main import main

raise SystemExit(main())
