"""tinyvae.kernels: the hot loops. Each kernel file holds a NumPy reference, a numba version and a CuPy
version side by side; the entry points exported here pick the version that matches the arrays and
``tinyvae.backend.current()``. Ops call these functions, never a backend directly.

Routed into the engine: ``nearest_code`` (behind ``F.vector_quantize``), ``adam_update`` (behind
``tv.optim.Adam``), ``bernoulli_parts`` (the arithmetic around exp and log1p in ``F.bernoulli_log_prob``,
forward and backward: NumPy keeps the transcendentals, numba fuses the rest into one pass) and ``relu``
(``F.relu`` forward and backward, one pass each). The shared rule for which version runs is in
``_routing.py``. Written,
tested against their references and measured, but not routed because they did not beat NumPy on this CPU
(no SVML for numba's exp/log; see benchmarks/RESULTS.md): ``bernoulli`` (summed Bernoulli
log-likelihood), ``logsumexp`` (row-wise, for IWAE) and ``gaussian`` (reparameterise + KL, forward and
backward). They are the starting point for the GPU backend and for a CPU with SVML.
"""

from tinyvae.kernels.adam import adam_update, adam_update_all
from tinyvae.kernels.codebook import nearest_code

__all__ = ["adam_update", "adam_update_all", "nearest_code"]
