"""How many torch intra-op threads training uses: chosen from the work, never torch's all-cores default.

The trainer's tensors are tiny ([agents, a few dozen] per step): below about a thousand agents an op is
done before a second thread has started, and on a shared machine every extra thread waits for a core.
Measured with ``benchmarks/bench_threads.py`` (README, "Training speed"): see ``AUTO_THREADS_FROM_AGENTS``.
"""

import os

import torch

#: From this many agents on, automatic mode uses up to ``AUTO_MAX_THREADS`` threads; below, one.
AUTO_THREADS_FROM_AGENTS = 1024
AUTO_MAX_THREADS = 4


def threads_for(agents: int, configured: int = 0, cores: int | None = None) -> int:
    """``configured`` when set (> 0); otherwise 1 thread below ``AUTO_THREADS_FROM_AGENTS`` agents, else
    ``min(cores, AUTO_MAX_THREADS)``."""
    if configured > 0:
        return configured
    if agents < AUTO_THREADS_FROM_AGENTS:
        return 1
    return max(1, min(cores or os.cpu_count() or 1, AUTO_MAX_THREADS))


def use_threads(agents: int, configured: int = 0) -> int:
    """Set torch's intra-op thread count for training; returns it (printed in the run header)."""
    threads = threads_for(agents, configured)
    torch.set_num_threads(threads)
    return threads
