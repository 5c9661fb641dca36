"""The ELBO gap, measured exactly: a linear-Gaussian VAE, where log p(x) and p(z|x) have closed forms.

    python examples/linear_elbo_gap.py [--epochs 20] [--z-dim 8] [--seed 0] [--out DIR]
    python examples/linear_elbo_gap.py --quick  # a few seconds: 500 images, 2 epochs

The lesson. For every VAE, log p(x) = ELBO(x) + KL(q(z|x) ‖ p(z|x)): the ELBO is a lower bound and the gap
is how far the encoder's q(z|x) is from the true posterior. Usually neither side can be computed; for the
linear-Gaussian model (probabilistic PCA, Tipping & Bishop 1999)

    p(z) = N(0, I),   p(x|z) = N(z W + b, σ² I),   q(z|x) = N(x A + c, diag exp(s)),

everything is exact: log p(x) = log N(x; b, WᵀW + σ²I), p(z|x) is Gaussian, and the ELBO has a closed form.
Trained on the embedded MNIST (continuous pixels, σ² = 0.1 fixed), the script prints per epoch

* exact log p(x), the exact ELBO of the encoder, and their gap = KL(q ‖ p(z|x)), which shrinks as the
  encoder learns;
* the gap split as Cremer et al. (2018) do: the *approximation* gap (even the best diagonal Gaussian for
  each x misses a correlated p(z|x)) and the *amortisation* gap (the encoder is not that best q).

Then, for the trained model, the importance-weighted bound L_k (Burda et al. 2016) for k = 1 … 1000 next
to the exact log p(x): it starts at the ELBO and climbs towards log p(x).
"""

from __future__ import annotations

import math
import os
import time

import _common  # examples/_common.py: command line, data, figures, report
import numpy

from tinyvae import evaluate, models, optim, train

NAME = "linear_elbo_gap"
NOISE_VARIANCE = 0.1  # σ² of p(x|z), fixed: pixel variances in MNIST are at most about 0.2
BOUND_K = (1, 10, 100, 1000)


def parse_args(argv):
    parser = _common.example_parser(NAME, __doc__, epochs=20, quick="500 images, 2 epochs, k ≤ 100")
    parser.add_argument("--z-dim", type=int, default=8, help="latent dimensions (default 8)")
    args = parser.parse_args(argv)
    args.bound_k = BOUND_K
    if args.quick:
        args.epochs, args.bound_k = 2, (1, 10, 100)
    return args


def gaps(model, x):
    """Mean exact log p(x), encoder ELBO and best-diagonal-q ELBO over x, nats per image (float64)."""
    log_px = model.log_marginal(x)  # (B,)
    elbo = model.exact_elbo(x)  # (B,), the encoder's q
    mean, cov = model.true_posterior(x)  # (B, Z), (Z, Z)
    # The diagonal Gaussian closest to p(z|x) in KL(q ‖ p): same mean, variances 1 / diag(Σ⁻¹)
    # (the standard mean-field result, e.g. Bishop PRML eq. 10.13 for a Gaussian target).
    best_cov = numpy.diag(1.0 / numpy.diag(numpy.linalg.inv(cov)))
    best = model.exact_elbo(x, q_mean=mean, q_cov=best_cov)
    return float(log_px.mean()), float(elbo.mean()), float(best.mean())


def figure_of(epochs, trace, bound_k, bounds, exact, path):
    figure = _common.new_figure((11, 4))
    left, right = figure.add_subplot(1, 2, 1), figure.add_subplot(1, 2, 2)
    gap = [lp - e for lp, e, _ in trace]
    approx = [lp - b for lp, _, b in trace]
    left.plot(epochs, gap, marker="o", label="gap = log p(x) − ELBO = KL(q ‖ p(z|x))")
    left.plot(epochs, approx, marker="s", label="approximation gap (best diagonal q)")
    left.set_yscale("log")
    left.set_xlabel("epoch (0 = untrained)")
    left.set_ylabel("nats per test image")
    left.set_title("The ELBO gap shrinks as the encoder trains")
    left.legend(loc="best", fontsize="small")
    left.grid(alpha=0.3)
    right.plot(bound_k, bounds, marker="o", label="L_k, importance-sampled")
    right.axhline(exact, color="tab:red", linestyle="--", label="exact log p(x)")
    right.set_xscale("log")
    right.set_xlabel("k, importance samples")
    right.set_ylabel("nats per test image")
    right.set_title("IWAE bound L_k climbs towards log p(x)")
    right.legend(loc="best")
    right.grid(alpha=0.3)
    return _common.save_figure(figure, path)


def main(argv=None):
    args = parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    rng = numpy.random.default_rng(args.seed)
    start = time.perf_counter()
    # Continuous pixels: a Gaussian decoder on grey levels.
    train_set, test_set = _common.load_splits(
        "mnist5k", args.quick, quick_sizes=(500, 100), full_sizes=(None, 200), likelihood="gaussian"
    )
    x = test_set.x

    model = models.build(
        "linear", x_dim=784, z_dim=args.z_dim, gaussian_logvar=math.log(NOISE_VARIANCE), seed=args.seed
    )
    optimizer = optim.Adam(model.parameters(), lr=3e-2)  # a linear model tolerates a large step
    trace, history = [gaps(model, x)], []
    header = f"{'epoch':>5} {'log p(x)':>10} {'ELBO':>10} {'gap':>10} {'approx.':>9} {'amortis.':>10}"
    print(header + "   (nats per image)")
    for epoch in range(1, args.epochs + 1):
        history = train.fit(
            model,
            train_set,
            test_set,
            epoch,
            128,
            optimizer,
            rng,
            progress=False,
            log=lambda line: None,
            start_epoch=epoch - 1,
            history=history,
        )
        if not args.quick or epoch == args.epochs:  # quick: only the start and the end (Cholesky of 784²)
            trace.append(gaps(model, x))
    epochs = range(args.epochs + 1) if not args.quick else (0, args.epochs)
    for epoch, (log_px, elbo, best) in zip(epochs, trace, strict=True):
        gap, approx, amort = log_px - elbo, log_px - best, best - elbo
        print(f"{epoch:>5} {log_px:>10.2f} {elbo:>10.2f} {gap:>10.3f} {approx:>9.3f} {amort:>10.3f}")

    exact = trace[-1][0]  # exact log p(x) of the trained model
    bounds = [
        float(evaluate.log_likelihood(model, x, k=k, rng=numpy.random.default_rng(args.seed)).mean())
        for k in args.bound_k
    ]
    print(f"\nIWAE bound vs k on the trained model (exact log p(x) = {exact:.2f} nats):")
    for k, value in zip(args.bound_k, bounds, strict=True):
        print(f"  k = {k:>5}: L_k = {value:.2f} nats, {exact - value:.3f} below log p(x)")
    figures = [
        figure_of(list(epochs), trace, args.bound_k, bounds, exact, os.path.join(args.out, "elbo_gap.png"))
    ]

    numbers = {
        "log_px_trace": [t[0] for t in trace],
        "elbo_trace": [t[1] for t in trace],
        "gap_initial": trace[0][0] - trace[0][1],
        "gap_final": trace[-1][0] - trace[-1][1],
        "approximation_gap_final": trace[-1][0] - trace[-1][2],
        "log_px_exact": exact,
        "bound_vs_k": bounds,
    }
    before, after = numbers["gap_initial"], numbers["gap_final"]
    print(f"gap: {before:.2f} nats untrained → {after:.3f} nats after {args.epochs} epochs")
    return _common.report(args, numbers, figures, start)


if __name__ == "__main__":
    main()
