"""Data-parallel training over MPI: one model trained by N processes ("ranks"), each on a shard of each batch.

Synchronous data parallelism is the plainest way to spread a training step over processes or machines. Every
rank holds the whole model and the whole dataset, walks the same global batches in the same order, and keeps
its own contiguous shard of each one (``numpy.array_split`` sizes: shards differ by at most one example).
After the backward pass each rank has the gradient of its shard's mean loss; the global batch's gradient is

    ∇ (1/B) Σ_{i in batch} ℓ_i  =  Σ_r (B_r / B) · ∇ (1/B_r) Σ_{i in shard r} ℓ_i ,

so each rank scales its gradient by B_r / B, and one ``Allreduce`` (sum) over a single flat buffer holding
every parameter's gradient (one message per step, not one per parameter) leaves the global gradient on every
rank. Every rank then applies the same Adam update to the same weights, so the replicas never drift apart.

**Determinism.** A run on N ranks gives the model a one-process run gives, up to the order of float
additions. The randomness is what could break that: the data order, the dynamic binarisation and the model's
ε (IWAE's k samples, ...) must not depend on how a batch is split. Every rank seeds the same generator and
makes the same draws in the same order: the data order and the binary pixels are drawn for the whole global
batch (then sliced), and the model draws through a :class:`ShardedGenerator`, which turns a draw of the
shard's shape into a draw of the global batch's shape and returns this rank's rows. The rank's noise for
example i is therefore exactly the one-process run's noise for example i.

The rule for "a draw of the shard's shape": the batch axis of a size is its second-to-last axis, or its only
axis (``(B, Z)``, ``(k, B, Z)``, ``(L, B, Z)``, ``(B,)``), as every model in :mod:`tinyvae.models` draws.
A size whose batch axis has any other length is drawn as is, identically on every rank (e.g. a permutation
of the whole dataset). Models that draw per example in another layout, or that couple the examples of a batch
(a minibatch estimator, a codebook fitted to the batch), declare ``data_parallel = False`` and are refused.

**Without MPI** nothing here imports mpi4py: :func:`world` returns a one-rank world unless the process was
started by an MPI launcher (``mpiexec``, ``mpirun``, ``srun``), so a plain ``tinyvae train`` is unchanged.
Install the optional extra with ``pip install -e ".[mpi]"`` (mpi4py and the MPICH wheel, which provides
``mpiexec``).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import sys
import time

import numpy

# Environment variables that MPI launchers set in the processes they start (MPICH/Hydra and Intel MPI:
# PMI_*; Open MPI: OMPI_COMM_WORLD_*; PMIx launchers and Slurm's srun: PMIX_RANK). Without one of them this is
# a plain process, and mpi4py is not imported (it would start an MPI runtime in every `tinyvae` call).
LAUNCHER_VARIABLES = ("PMI_RANK", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_RANK")
# How long a rank waits between printing why it stops and MPI_Abort, so that the launcher forwards the
# message before it kills the job (World.abort says what was lost without it).
ABORT_GRACE_SECONDS = 0.5
INSTALL_HINT = 'pip install -e ".[mpi]" (mpi4py and the MPICH wheel, which provides mpiexec)'


class DistributedError(RuntimeError):
    """A data-parallel run cannot go on (mpi4py missing under a launcher, a model that cannot be split, ranks
    that disagree); the message says which and what to do."""


@dataclasses.dataclass(frozen=True)
class World:
    """The ranks of this job: ``rank`` of ``size``, and the MPI communicator (None for a one-rank world)."""

    rank: int = 0
    size: int = 1
    comm: object = None

    @property
    def is_root(self) -> bool:
        """Rank 0 alone writes the run directory and prints."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    def shard(self, count: int) -> slice:
        """This rank's contiguous part of ``count`` items: ``numpy.array_split`` sizes (the first
        ``count % size`` ranks get one more), so shards differ by at most one item."""
        base, extra = divmod(count, self.size)
        start = self.rank * base + min(self.rank, extra)
        return slice(start, start + base + (1 if self.rank < extra else 0))

    def sum(self, values):
        """The element-wise sum over ranks of a float64 vector (a NumPy array; a copy is returned)."""
        values = numpy.ascontiguousarray(values, dtype=numpy.float64)
        if not self.distributed:
            return values.copy()
        total = numpy.empty_like(values)
        self.comm.Allreduce(values, total)  # default op: MPI.SUM
        return total

    def barrier(self) -> None:
        """Wait until every rank has come here."""
        if self.distributed:
            self.comm.Barrier()

    def broadcast(self, value):
        """Rank 0's ``value`` (any picklable object) on every rank."""
        return self.comm.bcast(value, root=0) if self.distributed else value

    def check_same(self, what: str, value) -> None:
        """Raise :class:`DistributedError` on every rank if the ranks' ``value`` (JSON-able) differ: a cheap
        guard against replicas drifting apart (e.g. a generator advanced differently on one rank)."""
        if not self.distributed:
            return
        digest = hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()
        digests = self.comm.allgather(digest)
        if len(set(digests)) > 1:
            differing = [r for r, d in enumerate(digests) if d != digests[0]]
            raise DistributedError(
                f"data-parallel training: the ranks disagree on {what} (ranks {differing} differ from "
                "rank 0); the replicas have drifted apart and the run cannot continue"
            )

    def abort(self, message: str, status: int = 1) -> None:
        """End every rank of the job now, after printing ``message`` to stderr (a rank that stops alone
        would leave the others waiting forever in their next Allreduce).

        Before ``MPI_Abort`` each rank waits :data:`ABORT_GRACE_SECONDS`: the launcher forwards a rank's
        output by reading its pipes, and once the abort reaches it, it kills the job and drops whatever it
        has not read yet. Measured on two ranks (MPICH 4, `--batch-size 1`, 100 jobs each): without the wait
        one rank's error was lost in 43 jobs and both ranks' in 1; with 0.5 s, none was lost."""
        print(message, file=sys.stderr, flush=True)
        if self.distributed:
            sys.stdout.flush()
            time.sleep(ABORT_GRACE_SECONDS)
            self.comm.Abort(status)
        sys.exit(status)


def launched_by_mpi(environ=None) -> bool:
    """Whether an MPI launcher started this process (see :data:`LAUNCHER_VARIABLES`)."""
    environ = os.environ if environ is None else environ
    return any(name in environ for name in LAUNCHER_VARIABLES)


@functools.cache
def world() -> World:
    """This job's world: the MPI world when started by a launcher, else one rank (mpi4py never imported)."""
    if not launched_by_mpi():
        return World()
    try:
        from mpi4py import MPI
    except ImportError as error:
        raise DistributedError(
            f"this process was started by an MPI launcher but mpi4py does not import ({error}); "
            + INSTALL_HINT
        ) from None
    comm = MPI.COMM_WORLD
    return World(rank=comm.Get_rank(), size=comm.Get_size(), comm=comm)


class GradientAllreduce:
    """Sum the parameters' gradients over ranks with one Allreduce over one flat buffer per step.

    The buffer holds every gradient back to back (float32 for float32 parameters; float64 if any parameter
    is float64), each scaled by this rank's share of the global batch, B_r / B, and after them the batch's
    summary (loss, ELBO, ... of the shard), scaled alike, so the same message also gives every rank the
    global batch's means. After the sum each parameter's gradient is the global batch's (module docstring).
    Parameters without a gradient this step contribute zeros, so every rank sends the same layout."""

    def __init__(self, parameters, world_: World):
        self.parameters = list(parameters)
        self.world = world_
        dtypes = [p.data.dtype for p in self.parameters]
        self.dtype = numpy.result_type(*dtypes) if dtypes else numpy.dtype(numpy.float32)
        sizes = [p.data.size for p in self.parameters]
        self.offsets = numpy.concatenate([[0], numpy.cumsum(sizes)]).astype(int)
        self.buffer = self.total = None

    def __call__(self, share: float, summary: dict) -> dict:
        """Replace each gradient by Σ_r share_r · grad_r and return {name: Σ_r share_r · summary_r[name]}
        (``share`` = this rank's B_r / B; the summary's names are the same on every rank)."""
        from tinyvae.backend import array_module, to_host

        names = sorted(summary)
        size = int(self.offsets[-1]) + len(names)
        if self.buffer is None or self.buffer.size != size:
            self.buffer, self.total = numpy.empty(size, self.dtype), numpy.empty(size, self.dtype)
        for p, start, stop in zip(self.parameters, self.offsets[:-1], self.offsets[1:], strict=True):
            part = self.buffer[start:stop]
            if p.grad is None:
                part[:] = 0
            else:
                numpy.multiply(to_host(p.grad).reshape(-1), share, out=part, casting="unsafe")
        self.buffer[self.offsets[-1] :] = [share * summary[name] for name in names]
        self.world.comm.Allreduce(self.buffer, self.total)
        for p, start, stop in zip(self.parameters, self.offsets[:-1], self.offsets[1:], strict=True):
            summed = self.total[start:stop].reshape(p.data.shape).astype(p.data.dtype, copy=False)
            xp = array_module(p.data)  # on a GPU the sum goes back to the device (an explicit copy)
            if p.grad is None:
                p.grad = xp.array(summed)
            else:
                p.grad[...] = xp.asarray(summed)
        return {name: float(v) for name, v in zip(names, self.total[self.offsets[-1] :], strict=True)}


class ShardedGenerator:
    """A ``numpy.random.Generator`` seen by one rank's shard of a global batch: draws whose batch axis has
    the shard's length are made for the whole global batch and sliced, so this rank gets exactly the noise a
    one-process run gives its examples, and every rank's generator advances alike (module docstring).

    ``part`` is this rank's slice of the global batch of ``global_count`` examples. Only the draws the
    models make are offered; any other use of the generator raises, rather than risk a silent difference."""

    def __init__(self, generator, part: slice, global_count: int):
        self.generator = generator
        self.part = part
        self.local_count = part.stop - part.start
        self.global_count = global_count

    def _global(self, size):
        """(the size to draw, the index that takes this rank's rows) for a requested ``size``."""
        if size is None:
            return None, ()
        shape = (size,) if isinstance(size, int | numpy.integer) else tuple(size)
        axis = len(shape) - 2 if len(shape) >= 2 else 0
        if not shape or shape[axis] != self.local_count:
            return shape, ()  # not per example: drawn as is, the same on every rank
        drawn = shape[:axis] + (self.global_count,) + shape[axis + 1 :]
        return drawn, (slice(None),) * axis + (self.part,)

    def _draw(self, method, size, *args, **kwargs):
        drawn, rows = self._global(size)
        values = getattr(self.generator, method)(*args, size=drawn, **kwargs)
        return values[rows] if rows else values

    def standard_normal(self, size=None, dtype=numpy.float64):
        return self._draw("standard_normal", size, dtype=dtype)

    def random(self, size=None, dtype=numpy.float64):
        return self._draw("random", size, dtype=dtype)

    def normal(self, loc=0.0, scale=1.0, size=None):
        return self._draw("normal", size, loc, scale)

    def uniform(self, low=0.0, high=1.0, size=None):
        return self._draw("uniform", size, low, high)

    def integers(self, low, high=None, size=None, dtype=numpy.int64, endpoint=False):
        return self._draw("integers", size, low, high, dtype=dtype, endpoint=endpoint)

    def __getattr__(self, name):
        raise AttributeError(
            f"ShardedGenerator: {name!r} is not offered under data-parallel training (only standard_normal, "
            "random, normal, uniform and integers, whose per-example rows it can shard); draw through those"
        )
