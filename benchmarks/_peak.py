"""Peak-memory worker: ``python -m benchmarks._peak '<json spec>'`` (run by common.peak_memory).

The spec names a builder ``{"module": ..., "builder": ..., "args": {...}, "op": ...}``; the builder
returns a mapping of operation name → callable after allocating every input. The baseline is
taken after that, so the reported figure is what the operation itself needed:

* CPU: the peak resident set during the call minus the resident set before it. On Linux the
  kernel's high-water mark is reset first (``/proc/self/clear_refs``), so earlier peaks (importing
  torch, building inputs) cannot hide or inflate it; elsewhere ``ru_maxrss`` deltas are used;
* CUDA: ``torch.cuda.max_memory_allocated`` minus ``memory_allocated`` before the call.

torch's CPU allocations are invisible to tracemalloc, hence the fresh process and ru_maxrss.
"""

from __future__ import annotations

import importlib
import json
import re
import resource
import sys
from pathlib import Path

MIB = 1024.0 * 1024.0


def _status_kib(field: str) -> int:
    text = Path("/proc/self/status").read_text()
    return int(re.search(rf"{field}:\s+(\d+)", text).group(1))


def _reset_high_water_mark() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        _status_kib("VmHWM")
        return True
    except (OSError, AttributeError):
        return False


def main(argv: list[str]) -> int:
    spec = json.loads(argv[0])
    import torch

    from dstft_cli.runtime import tune_allocator

    tune_allocator()  # as in the benchmark process and the CLI

    module = importlib.import_module(spec["module"])
    ops = getattr(module, spec["builder"])(**spec["args"])
    fn = ops[spec["op"]]
    device = spec["args"].get("device", "cpu")
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        fn()
        torch.cuda.synchronize()
        peak = (torch.cuda.max_memory_allocated() - base) / MIB
    elif _reset_high_water_mark():
        base = _status_kib("VmRSS")
        fn()
        peak = (_status_kib("VmHWM") - base) / 1024.0
    else:
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        fn()
        peak = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024.0
    print(json.dumps({"mib": peak}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
