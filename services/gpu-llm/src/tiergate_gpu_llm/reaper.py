"""`python -m tiergate_gpu_llm.reaper GRACE_S -- COMMAND…`: run an engine; nothing outlives us.

Engines spawn their own workers (vLLM's engine core, SGLang's schedulers); a parent-death
signal reaches only a direct child. So each engine runs under this small process: it leads the
engine's process group, dies with the supervisor (parent-death signal), and on any stop signal
takes the whole group down — SIGTERM, then SIGKILL after GRACE_S.
"""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
from types import FrameType

from tiergate_runtime.process import die_with_parent

__all__ = ["main"]


def main(argv: list[str]) -> int:
    """Run COMMAND; exit with its status."""
    if len(argv) < 4 or argv[2] != "--":
        print("usage: python -m tiergate_gpu_llm.reaper GRACE_S -- COMMAND...", file=sys.stderr)
        return 2
    grace_s = float(argv[1])
    die_with_parent()
    if os.getppid() == 1:  # the supervisor died before prctl took effect
        return 1
    child = subprocess.Popen(argv[3:])  # noqa: S603 - the configured engine command
    group = os.getpgid(0)

    def kill_all(signum: int, frame: FrameType | None) -> None:
        del signum, frame
        os.killpg(group, signal.SIGKILL)  # whatever is left of the group, us included

    def stop(signum: int, frame: FrameType | None) -> None:
        # Runs while the main thread sits in child.wait(): only signal here (Popen.poll would
        # find wait's lock taken and report the child alive). The wait below returns as soon
        # as the engine exits; if it has not after the grace period, SIGALRM kills the group.
        del frame
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # killpg below reaches us too
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        stopping.append(signum)
        os.killpg(group, signal.SIGTERM)
        signal.signal(signal.SIGALRM, kill_all)
        signal.alarm(max(1, math.ceil(grace_s)))

    stopping: list[int] = []
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    code = child.wait()
    # The engine is gone; its workers must not linger (SIGTERM, which we ignore ourselves).
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    os.killpg(group, signal.SIGTERM)
    if stopping:
        return 128 + stopping[0]
    return code if code >= 0 else 128 - code


if __name__ == "__main__":
    sys.exit(main(sys.argv))
