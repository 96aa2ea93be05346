"""Small helpers shared by the evaluation modules (no torch import needed)."""
from __future__ import annotations

import numpy as np


def as_numpy(x, dtype, shape_tail: tuple[int, ...] = ()) -> np.ndarray:
    """Convert a torch tensor (any device / float dtype, including bf16), numpy array or sequence to numpy.

    ``shape_tail`` reshapes to ``(-1, *shape_tail)`` so that empty inputs of any shape (``[0]``, ``[0, 4]``)
    come out with the expected trailing dimensions.
    """
    if x is None:
        x = []
    if hasattr(x, "detach"):  # torch.Tensor, without importing torch here
        x = x.detach().to("cpu")
        if x.is_floating_point():
            x = x.float()  # numpy has no bf16/fp16 conversion path for every dtype
        x = x.numpy()
    arr = np.asarray(x, dtype=dtype)
    if shape_tail:
        arr = arr.reshape(-1, *shape_tail)
    else:
        arr = arr.reshape(-1)
    return arr
