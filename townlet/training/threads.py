"""How many torch intra-op threads training uses: one by default, never torch's all-cores default unasked.

The trainer's tensors are tiny ([agents, a few dozen] per step, a 64-row DQN batch): an op is done before a
second thread has started, and on a shared machine every extra thread waits for a core. Measured with
``benchmarks/bench_threads.py`` on 2 cores (README, "Training speed"): one thread was 4 to 17 % faster than
torch's default at 8, 64 and 1024 agents on a quiet machine, and 4 to 22 times faster beside two busy
processes. ``training.threads = 0`` restores torch's default (all cores), e.g. on a dedicated many-core box.
"""

import torch

#: ``training.threads`` value that leaves torch's own default in place.
TORCH_DEFAULT = 0


def use_threads(configured: int) -> int:
    """Set torch's intra-op thread count for training (``TORCH_DEFAULT`` keeps torch's); returns it."""
    if configured != TORCH_DEFAULT:
        torch.set_num_threads(configured)
    return torch.get_num_threads()
