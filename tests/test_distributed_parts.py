"""The pieces of data-parallel training that need no MPI: shards, the sharded generator, world detection.

The runs under ``mpiexec`` (1 against 2 ranks, rank-0-only writes, a failing rank, resume) are in
``tests/test_distributed_mpi.py``."""

import numpy
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tinyvae import distributed
from tinyvae.distributed import ShardedGenerator, World


@given(count=st.integers(0, 50), size=st.integers(1, 8))
def test_shards_cover_every_item_once_and_differ_by_at_most_one(count, size):
    parts = [World(rank=r, size=size).shard(count) for r in range(size)]
    assert [i for part in parts for i in range(count)[part]] == list(range(count))
    lengths = [part.stop - part.start for part in parts]
    assert max(lengths) - min(lengths) <= 1
    assert lengths == [len(a) for a in numpy.array_split(numpy.arange(count), size)]


def _draws(make_generator, shapes, method):
    generator = make_generator()
    return [getattr(generator, method)(shape) for shape in shapes]


@pytest.mark.parametrize("method", ["standard_normal", "random"])
@given(
    batch=st.integers(2, 9),
    size=st.integers(2, 4),
    k=st.integers(1, 5),
    z=st.integers(1, 4),
    seed=st.integers(0, 2**16),
)
def test_each_rank_gets_the_one_process_noise_of_its_examples(method, batch, size, k, z, seed):
    """Draws of the shard's shape ((B, Z), (k, B, Z), (B,)) give each rank exactly its rows of the one-process
    draw, and draws of other shapes are the same on every rank; the generators stay in step."""
    shapes_global = [(batch, z), (k, batch, z), (batch,), (7,)]
    one_process = _draws(lambda: numpy.random.default_rng(seed), shapes_global, method)
    for rank in range(size):
        part = World(rank=rank, size=size).shard(batch)
        local = part.stop - part.start
        if local in (7,) or local == 0:
            continue  # a shard as long as the (7,) draw would be read as per example (the documented rule)
        shapes_local = [(local, z), (k, local, z), (local,), (7,)]
        generator = numpy.random.default_rng(seed)
        sharded = ShardedGenerator(generator, part, batch)
        got = [getattr(sharded, method)(shape) for shape in shapes_local]
        numpy.testing.assert_array_equal(got[0], one_process[0][part])
        numpy.testing.assert_array_equal(got[1], one_process[1][:, part])
        numpy.testing.assert_array_equal(got[2], one_process[2][part])
        numpy.testing.assert_array_equal(got[3], one_process[3])
        assert generator.bit_generator.state == _state_after(seed, shapes_global, method)


def _state_after(seed, shapes, method):
    generator = numpy.random.default_rng(seed)
    for shape in shapes:
        getattr(generator, method)(shape)
    return generator.bit_generator.state


def test_integers_and_the_dtype_pass_through():
    part = World(rank=1, size=2).shard(6)  # rows 3..5
    sharded = ShardedGenerator(numpy.random.default_rng(3), part, 6)
    got = sharded.integers(1, 100, size=3)
    numpy.testing.assert_array_equal(got, numpy.random.default_rng(3).integers(1, 100, size=6)[3:])
    assert sharded.standard_normal((3, 2), dtype=numpy.float32).dtype == numpy.float32


def test_other_uses_of_the_generator_are_refused_by_name():
    sharded = ShardedGenerator(numpy.random.default_rng(0), slice(0, 2), 4)
    with pytest.raises(AttributeError, match=r"'choice' is not offered under data-parallel training"):
        sharded.choice(4)


def test_a_plain_process_is_one_rank(monkeypatch):
    for name in distributed.LAUNCHER_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    distributed.world.cache_clear()
    try:
        assert distributed.world() == World(rank=0, size=1, comm=None)
        assert not distributed.launched_by_mpi()
    finally:
        distributed.world.cache_clear()


def test_a_launcher_without_mpi4py_says_how_to_install(monkeypatch):
    import sys

    monkeypatch.setenv("PMI_RANK", "0")
    monkeypatch.setitem(sys.modules, "mpi4py", None)  # import mpi4py now raises ImportError
    distributed.world.cache_clear()
    try:
        with pytest.raises(
            distributed.DistributedError, match=r"MPI launcher but mpi4py does not import.*\[mpi\]"
        ):
            distributed.world()
    finally:
        distributed.world.cache_clear()


def test_one_rank_sum_and_checks_are_local():
    one = World()
    numpy.testing.assert_array_equal(one.sum([1.0, 2.0]), [1.0, 2.0])
    assert one.broadcast({"a": 1}) == {"a": 1}
    one.check_same("anything", 3)  # nothing to compare with: no error
