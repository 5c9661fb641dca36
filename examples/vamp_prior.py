"""The VampPrior: a prior learned from the data's own codes, against the standard normal.

    python examples/vamp_prior.py [--epochs 30] [--seed 0] [--out examples_out/vamp_prior]
    python examples/vamp_prior.py --quick  # a few seconds: 1,000 images, 5 epochs, 50 pseudo-inputs

The lesson. The ELBO's KL term pulls every q(z|x) towards the prior; with p(z) = N(0, I) it pulls the
aggregate posterior q(z) = E_x q(z|x) towards a shape it need not have. Tomczak & Welling (2018) make the
prior the aggregate posterior of K learned pseudo-inputs, p(z) = (1/K) Σ_k q(z|u_k): the optimal prior for
the ELBO is q(z) itself, and this one can approach it. So, trained the same way:

* the KL term (the price of the code) is lower, and the test log-likelihood higher, than with N(0, I)
  (at full size: −log p(x) 103.98 vs 105.80 nats; benchmarks/RESULTS.md);
* the mean log p(z) at the test codes z ~ q(z|x) is printed too, each model's codes under its own prior; it
  is not the lesson's measure: the VampPrior model's codes are sharper, so log q rises with log p and the
  KL, their difference, is what falls (at full size log p(z) was −40.7 against −30.3, in --quick −25.0
  against −32.1);
* pseudo_inputs.png shows what the prior's components are "made of": after the full 30 epochs, faint digit
  shapes (0s, 2s, 3s, 9s) rising out of the grey noise the pseudo-inputs started as; they move slowly (Adam
  moves each by about the learning rate per step), so after --quick's few steps they are still noise.
"""

from __future__ import annotations

import os
import time

import _common  # examples/_common.py: command line, data, figures, report
import numpy

from tinyvae import evaluate, models, plots
from tinyvae.autodiff import no_grad
from tinyvae.tensor import Tensor

NAME = "vamp_prior"


def parse_args(argv):
    parser = _common.example_parser(
        NAME, __doc__, epochs=30, quick="1,000 images, 5 epochs, 50 pseudo-inputs", per_model=True
    )
    parser.add_argument("--pseudo-inputs", type=int, default=500, help="K (default 500)")
    parser.add_argument("--k", type=int, default=1000, help="importance samples for log p(x) (default 1000)")
    args = parser.parse_args(argv)
    if args.quick:
        args.epochs, args.pseudo_inputs, args.k = 5, 50, 100
    return args


def mean_prior_log_density(model, x, rng):
    """Mean over the examples of log p(z) at one code z ~ q(z|x) each: the prior density the codes get."""
    with no_grad():
        mu, logvar = (t.numpy() for t in model.encode(x))
        z = mu + numpy.exp(0.5 * logvar) * rng.standard_normal(mu.shape)
        return float(model.prior.log_prob(Tensor(z.astype(model.dtype))).numpy().mean())


def main(argv=None):
    args = parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    start = time.perf_counter()
    train_set, test_set = _common.load_splits("mnist5k", args.quick, quick_sizes=(1000, 200))
    common = {"x_dim": 784, "z_dim": 20, "hidden": (400,), "seed": args.seed}
    contenders = {
        "normal": models.build("vae", **common),
        "vamp": models.build("vamp", pseudo_inputs=args.pseudo_inputs, **common),
    }
    numbers, figures = {}, []
    for name, model in contenders.items():
        print(f"--- prior: {model.prior.description}")
        history = _common.fit_adam(
            model, train_set, test_set, args.epochs, numpy.random.default_rng(args.seed), 1e-3
        )
        log_px = evaluate.log_likelihood(model, test_set.x, k=args.k, rng=numpy.random.default_rng(args.seed))
        numbers[f"nll_{name}"] = float(-log_px.mean())
        numbers[f"kl_{name}"] = history[-1]["test_kl"]
        numbers[f"code_log_prior_{name}"] = mean_prior_log_density(
            model, test_set.x, numpy.random.default_rng(1)
        )
        path = os.path.join(args.out, f"samples_{name}.png")
        figures.append(plots.samples_grid(model, numpy.random.default_rng(args.seed), path, n=64))
    figures += contenders["vamp"].extra_figures(args.out, test_set.x)
    print(f"\n{'prior':>8} {'−log p(x)':>10} {'KL':>7} {'mean log p(z) at the codes':>27}")
    for name in contenders:
        print(
            f"{name:>8} {numbers[f'nll_{name}']:>10.2f} {numbers[f'kl_{name}']:>7.2f}"
            f" {numbers[f'code_log_prior_{name}']:>27.2f}"
        )
    print(f"(−log p(x): the k = {args.k} importance-weighted estimate on the test images, nats per image)")
    return _common.report(args, numbers, figures, start)


if __name__ == "__main__":
    main()
