"""``import tinyvae.functional as F``: the differentiable functions a model is written with.

Each one applies an op class from :mod:`tinyvae.ops` (forward and hand-written backward side by side); the
list is ``tinyvae.ops.__all__``, kept in one place. ``F.add(a, b)`` is ``a + b``: Tensor's operators call
these same functions.
"""

# tinyvae.tensor defines Tensor and hands it to the engine (autodiff.use_tensor_class), which the ops need
# to turn arrays into tensors: imported here so that F.stack([array, array]) works before any tv.Tensor.
from tinyvae import ops, tensor  # noqa: F401
from tinyvae.ops import *  # noqa: F403  (the names in ops.__all__)

__all__ = ops.__all__
