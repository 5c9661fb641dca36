"""tinyvae.kernels: the hot loops. Each kernel file holds a NumPy reference, a numba version and a CuPy
version side by side; its entry point picks the version with the one rule of ``_routing.py`` (CuPy arrays
go to CuPy, NumPy arrays to numba under the numba backend, else NumPy), and ``_jit.py`` compiles the numba
loops on first use. Kernels sit below the ops: nothing here imports ``tinyvae`` beyond ``tinyvae.backend``.

Routed into the engine: ``nearest_code`` (behind ``F.vector_quantize``), ``adam_update`` (behind
``tv.optim.Adam``), ``bernoulli_parts`` (the fast path of ``F.bernoulli_log_prob``, forward and backward:
NumPy keeps the transcendentals, numba fuses the arithmetic around them into one pass), ``relu``
(``F.relu`` forward and backward, one pass each) and ``im2col`` (``im2col``/``col2im``, behind
``F.conv2d`` and ``F.conv_transpose2d``).

Written, tested against their references and measured, but not routed: ``unrouted/`` (``bernoulli``,
``logsumexp``, ``gaussian``); its README.md says why each lost to NumPy or has no op to serve.
"""

from tinyvae.kernels.adam import adam_update, adam_update_all
from tinyvae.kernels.codebook import nearest_code

__all__ = ["adam_update", "adam_update_all", "nearest_code"]
