"""Dropout whose random mask is cheap on CPU.

On CPU, torch draws dropout masks one Mersenne-Twister number per element,
serially; in the 2021 Tetris configuration that was a fifth of a training
step. Here one 64-bit draw gives four 16-bit uniforms, so the drop
probability is quantised to multiples of 1/65536. Other devices use
`torch.nn.functional.dropout`. Both draw from torch's global RNG, which the
learner seeds inside `torch.random.fork_rng`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

_INT64_MIN = -(1 << 63)


def dropout(x: torch.Tensor, p: float, training: bool = True) -> torch.Tensor:
    """Zero each entry with probability `p`, scale the rest by 1 / (1 - p); the identity unless training."""
    if not training or p == 0.0:
        return x
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout probability must lie in [0, 1), got {p}")
    if x.device.type != "cpu":
        return F.dropout(x, p, True)
    n = x.numel()
    words = torch.empty((n + 3) // 4, dtype=torch.int64).random_(_INT64_MIN, None)  # 64 random bits each
    uniform16 = words.view(torch.int16)[:n].view(x.shape)  # uniform on [-32768, 32767]
    keep = uniform16 >= round(p * 65536) - 32768
    return x * keep.to(x.dtype).mul_(1.0 / (1.0 - p))
