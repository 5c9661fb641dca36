"""The VAE on real handwritten digits: train it, look at what it learned, and measure log p(x).

    python examples/vae_mnist.py [--epochs 30] [--k 200] [--seed 0] [--out examples_out/vae_mnist]
    python examples/vae_mnist.py --quick  # a few seconds: 1,000 images, 5 epochs

The lesson. A VAE (Kingma & Welling 2014) is trained by maximising the ELBO,

    ELBO(x) = E_q(z|x)[log p(x|z)] − KL(q(z|x) ‖ p(z))  ≤  log p(x),

here the 784-400-20 network with a Bernoulli decoder on the embedded 4,500 MNIST training images
(binarised afresh every epoch). The figures show the three things a VAE gives you: reconstructions (encode,
then decode the posterior mean), new digits (decode z ~ N(0, I)), and a latent space where digits of the
same class sit together. At the end the k-sample importance-weighted estimate of log p(x) (Burda et al.
2016) is compared with the ELBO: it is higher, because the ELBO is only a bound.
"""

from __future__ import annotations

import os
import time

import _common  # examples/_common.py: command line, data, figures, report
import numpy

from tinyvae import evaluate, models, plots

NAME = "vae_mnist"


def parse_args(argv):
    parser = _common.example_parser(NAME, __doc__, epochs=30, quick="1,000 images, 5 epochs, k = 10")
    parser.add_argument("--k", type=int, default=200, help="importance samples for the NLL (default 200)")
    args = parser.parse_args(argv)
    if args.quick:
        args.epochs, args.k = 5, 10
    return args


def main(argv=None):
    args = parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    rng = numpy.random.default_rng(args.seed)
    start = time.perf_counter()

    # Bernoulli decoder, so binary pixels: a new draw every epoch for training, one fixed draw for test.
    train_set, test_set = _common.load_splits("mnist5k", args.quick, quick_sizes=(1000, 200))
    print(f"mnist5k: {len(train_set)} train / {len(test_set)} test images")

    model = models.build("vae", x_dim=784, z_dim=20, hidden=(400,), seed=args.seed)
    history = _common.fit_adam(model, train_set, test_set, args.epochs, rng, lr=1e-3)

    figures = [
        plots.training_curves(history, os.path.join(args.out, "training_curves.png")),
        plots.reconstructions(model, test_set.x, os.path.join(args.out, "reconstructions.png")),
        plots.samples_grid(model, rng, os.path.join(args.out, "samples.png"), n=64),
        plots.latent_scatter(
            model, test_set.x, test_set.labels, os.path.join(args.out, "latent_scatter.png")
        ),
    ]

    last = history[-1]
    log_px = evaluate.log_likelihood(model, test_set.x, k=args.k, rng=numpy.random.default_rng(args.seed))
    units, _ = evaluate.active_units(model, test_set.x)
    numbers = {
        "test_neg_elbo": -last["test_elbo"],
        "test_recon": -last["test_recon"],
        "test_kl": last["test_kl"],
        f"test_nll_k{args.k}": float(-log_px.mean()),
        "active_units": units,
    }
    print(f"test −ELBO:              {numbers['test_neg_elbo']:.2f} nats per image")
    print(f"  reconstruction term:   {numbers['test_recon']:.2f} nats  (−E_q[log p(x|z)])")
    print(f"  KL term:               {numbers['test_kl']:.2f} nats  (KL(q(z|x) ‖ p(z)))")
    print(
        f"test NLL, k = {args.k:<4}:      {numbers[f'test_nll_k{args.k}']:.2f} nats per image "
        f"(−log p(x), importance-sampled: below the −ELBO)"
    )
    print(f"active latent units:     {units} of 20")
    return _common.report(args, numbers, figures, start)


if __name__ == "__main__":
    main()
