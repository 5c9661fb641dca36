"""The real Fashion-MNIST files of Debian's `dataset-fashion-mnist` package (`.ci/run` installs it where apt
is available), read from /usr/share/datasets/fashion-mnist with no flag: headers, counts, the label histogram,
the pixel range, the packaged digests, and one short training run through the command line. Where the files
are absent every test here is skipped with the reason (`pytest -rs` lists it), never passed silently."""

import gzip
import hashlib
import json

import numpy
import pytest

from tinyvae import cli, data

FOLDER = data.SYSTEM_DATASETS / "fashion-mnist"
pytestmark = pytest.mark.skipif(
    not all(
        (FOLDER / f"{stem}.gz").is_file() for split in ("train", "test") for stem in data.IDX_FILES[split]
    ),
    reason=f"Fashion-MNIST is not installed in {FOLDER} (apt-get install dataset-fashion-mnist)",
)


@pytest.fixture(autouse=True)
def no_user_data(monkeypatch, tmp_path):
    """Only the system folder may supply the files: no TINYVAE_DATA, an empty home (no download cache)."""
    monkeypatch.delenv("TINYVAE_DATA", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


@pytest.mark.parametrize(("split", "count"), [("train", 60_000), ("test", 10_000)])
def test_the_packaged_files_are_found_without_flags_and_hold_the_whole_dataset(split, count):
    images, labels = data.find_idx_files("fashion-mnist", split)
    assert images.parent == FOLDER and labels.parent == FOLDER
    x = data.load_dataset("fashion-mnist", split)
    assert x.x.shape == (count, 784) and x.x.dtype == numpy.float32
    assert x.x.min() == 0.0 and x.x.max() == 1.0
    numpy.testing.assert_array_equal(numpy.bincount(x.labels, minlength=10), numpy.full(10, count // 10))


def test_the_idx_headers_are_the_documented_ones():
    """Magic 0x00000803 (unsigned bytes, 3 dimensions) with 60000 × 28 × 28 for the training images,
    0x00000801 with 60000 for the labels."""
    with gzip.open(FOLDER / "train-images-idx3-ubyte.gz") as stream:
        header = numpy.frombuffer(stream.read(16), dtype=">u4")
    numpy.testing.assert_array_equal(header, [0x803, 60_000, 28, 28])
    with gzip.open(FOLDER / "train-labels-idx1-ubyte.gz") as stream:
        numpy.testing.assert_array_equal(numpy.frombuffer(stream.read(8), dtype=">u4"), [0x801, 60_000])


@pytest.mark.parametrize("name", sorted(data.DEBIAN_SHA256["fashion-mnist"]))
def test_the_packaged_files_have_the_recorded_digests(name):
    """The .gz as packaged and its decompressed contents match the digests recorded in tinyvae.data (the
    package recompressed the files, so upstream's .gz digests of `tinyvae download` do not apply)."""
    raw = (FOLDER / name).read_bytes()
    assert hashlib.sha256(raw).hexdigest() == data.DEBIAN_SHA256["fashion-mnist"][name]
    contents = hashlib.sha256(gzip.decompress(raw)).hexdigest()
    assert contents == data.DEBIAN_IDX_SHA256["fashion-mnist"][name[: -len(".gz")]]


def test_tinyvae_trains_on_it_with_no_data_flag(tmp_path):
    out = tmp_path / "run"
    args = ["train", "--data", "fashion-mnist", "--epochs", "1", "--limit", "2000", "--no-plots"]
    assert cli.main([*args, "--no-progress", "--out", str(out)]) == 0
    row = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    assert numpy.isfinite(row["test_elbo"]) and row["test_elbo"] < 0
