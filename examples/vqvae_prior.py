"""VQ-VAE + a transformer prior over its codes: why the second stage is what makes the samples digits.

    python examples/vqvae_prior.py [--epochs 15] [--prior-epochs 20] [--seed 0] [--out DIR]
    python examples/vqvae_prior.py --quick  # ~10 s: 1,000 images, 6 + 8 epochs (a collapsed codebook)

The lesson. A VQ-VAE (van den Oord et al. 2017) is trained with a *uniform* prior over its codes: each image
here becomes L = 16 indices out of K = 32, and the bound charges log2 K = 5 bits for each of them. That prior
is only a placeholder. The codes of real digits are far from uniform: some codes go with some others, in
some positions. Decoding 16 codes drawn uniformly mixes the parts of many digits into a smudge.

The paper's second stage (Sec. 3.2 and 4) keeps the trained VQ-VAE frozen, encodes the training images to
their code sequences c = (c_1, ..., c_16), and fits an autoregressive prior p(c) = Π_i p(c_i | c_<i) to them:
here a small causal transformer (``tinyvae/models/code_prior.py``). Drawing c from it and decoding gives new
digits. Two numbers show the difference, each judged independently of the model:

* bits per code on the *test* images' codes: −log2 p(c) / L under the learned prior, against log2 K under
  the uniform one (the code length an entropy coder would need; the bound improves by the difference);
* samples judged by a digit classifier trained separately (``tinyvae.evaluate.train_classifier``): its mean
  confidence (the largest class probability, averaged over the samples) and how many of the 10 classes the
  samples are labelled as. Smudges get low confidence; digits get high confidence across most classes.

The same two steps from the command line: ``tinyvae train --model vqvae --latent-vectors 16 ...``, then
``tinyvae train-prior RUN`` and ``tinyvae sample RUN --prior learned`` (or ``--prior uniform``).
"""

from __future__ import annotations

import math
import os
import time

import _common  # examples/_common.py: command line, data, figures, report
import numpy

from tinyvae import data, evaluate, models, plots
from tinyvae.autodiff import no_grad
from tinyvae.backend import to_host
from tinyvae.models.code_prior import CodePriorConfig, LearnedCodes, TransformerCodePrior, blas_threads

NAME = "vqvae_prior"
LATENT_VECTORS = 16  # L: codes per image, the sequence the prior models
CODEBOOK_SIZE = 32  # K
CODE_DIM = 4  # D: numbers per code, so the decoder reads L·D = 64 numbers
SAMPLES = 500  # samples judged for each prior


def parse_args(argv):
    parser = _common.example_parser(NAME, __doc__, epochs=15, quick="1,000 images, 6 + 8 epochs")
    parser.add_argument("--prior-epochs", type=int, default=20, help="epochs of the prior's fit (default 20)")
    args = parser.parse_args(argv)
    if args.quick:
        args.epochs, args.prior_epochs = 6, 8
    return args


def codes_of(model, x):
    """The code indices (N, L) the encoder assigns to the images x, as a NumPy array: the prior reads them
    on the host (they come from the GPU under CuPy)."""
    return to_host(model.encode(x)[1]).astype(numpy.int64)


def judge(classifier, samples):
    """(mean confidence, classes covered, predicted labels): the classifier's largest class probability
    averaged over the samples, and how many distinct classes it assigns them to."""
    with no_grad():
        probabilities = numpy.exp(classifier.log_probs(samples).numpy())  # (N, 10)
    labels = probabilities.argmax(axis=1)
    return float(probabilities.max(axis=1).mean()), int(len(numpy.unique(labels))), labels


def main(argv=None):
    args = parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    start = time.perf_counter()
    train_set, test_set = _common.load_splits("mnist5k", args.quick, quick_sizes=(1000, 500))
    numbers = {"codebook_size": CODEBOOK_SIZE, "latent_vectors": LATENT_VECTORS}

    # Stage 1: the VQ-VAE, trained with its uniform prior over the codes.
    rng = numpy.random.default_rng(args.seed)
    model = models.build(
        "vqvae",
        x_dim=784,
        z_dim=CODE_DIM,
        latent_vectors=LATENT_VECTORS,
        codebook_size=CODEBOOK_SIZE,
        hidden=(400,),
        seed=args.seed,
    )
    print(f"--- stage 1: VQ-VAE, L = {LATENT_VECTORS} codes of K = {CODEBOOK_SIZE} per image")
    history = _common.fit_adam(model, train_set, test_set, args.epochs, rng, lr=1e-3)
    numbers["test_recon"] = -history[-1]["test_recon"]

    # Stage 2: the prior, fitted to the codes of the training images (binary draws, as the encoder saw them
    # in training: four draws of each image, so the prior sees four times the sequences) with the test
    # images' codes held out.
    draws = [train_set.draw(numpy.random.default_rng(args.seed + i)) for i in range(4)]
    train_codes = numpy.concatenate([codes_of(model, x) for x in draws])  # (4N, L)
    test_codes = codes_of(model, test_set.x)  # (N_test, L)
    prior = TransformerCodePrior(
        CodePriorConfig(codebook_size=CODEBOOK_SIZE, length=LATENT_VECTORS, seed=args.seed)
    )
    uniform_bits = math.log2(CODEBOOK_SIZE)
    print(
        f"--- stage 2: transformer prior on {len(train_codes)} code sequences (log2 K = {uniform_bits:.3f})"
    )

    def progress(record):
        print(
            f"epoch {record['epoch']}: train {record['train_nats_per_code'] / math.log(2):.3f}, "
            f"held-out {record['held_out_nats_per_code'] / math.log(2):.3f} bits per code"
        )

    with blas_threads(1):  # small matrices: one OpenBLAS thread is far faster (see blas_threads)
        prior.fit(
            train_codes,
            args.prior_epochs,
            batch_size=128,
            lr=1e-3,
            rng=numpy.random.default_rng(args.seed),
            progress=progress,
            held_out=test_codes,
        )
        numbers["test_bits_per_code"] = prior.bits_per_code(test_codes)
    numbers["uniform_bits_per_code"] = uniform_bits

    # The judge: a digit classifier trained on the grey training images, independent of both stages.
    grey = data.load_dataset("mnist5k", "train", pixels="continuous", n=len(train_set.x))
    classifier = evaluate.train_classifier(grey, epochs=15 if not args.quick else 8)
    figures = []
    uniform_prior = model.prior
    for name, code_prior in (
        ("learned", LearnedCodes(prior, model.codebook.numpy)),
        ("uniform", uniform_prior),
    ):
        model.prior = code_prior
        with blas_threads(1):
            samples = numpy.asarray(model.sample(SAMPLES, numpy.random.default_rng(args.seed + 1)))
        confidence, classes, labels = judge(classifier, samples)
        numbers[f"confidence_{name}"], numbers[f"classes_{name}"] = confidence, classes
        numbers[f"label_counts_{name}"] = numpy.bincount(labels, minlength=10).tolist()
        path = os.path.join(args.out, f"samples_{name}.png")
        figures.append(plots.samples_grid(model, numpy.random.default_rng(args.seed + 1), path, n=64))
    model.prior = uniform_prior

    print(f"\n{'codes drawn':>12} {'confidence':>11} {'classes':>8}   labels 0-9 among {SAMPLES} samples")
    for name in ("learned", "uniform"):
        counts = " ".join(f"{c:3d}" for c in numbers[f"label_counts_{name}"])
        print(
            f"{name:>12} {numbers[f'confidence_{name}']:>11.3f} {numbers[f'classes_{name}']:>8d}   {counts}"
        )
    gain = LATENT_VECTORS * (uniform_bits - numbers["test_bits_per_code"])
    print(
        f"test bits per code: learned prior {numbers['test_bits_per_code']:.3f}, uniform log2 K = "
        f"{uniform_bits:.3f} (the bound gains {gain:.1f} bits per image)"
    )
    return _common.report(args, numbers, figures, start)


if __name__ == "__main__":
    main()
