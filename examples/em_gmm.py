"""EM for a Gaussian mixture, the first latent-variable model, next to a VAE on the same 2-D data.

    python examples/em_gmm.py [--epochs 30] [--components 8] [--seed 0] [--out DIR]
    python examples/em_gmm.py --quick  # a few seconds: 3 EM starts, 10 VAE epochs, k = 20

The lesson. A Gaussian mixture (categorical p(z) over K components, Gaussian p(x|z) with full covariances)
is fitted by expectation-maximisation to the "ring of eight Gaussians" toy (tinyvae/em.py has the
equations). Per iteration the script prints

* log p(x) and the ELBO right after the E-step: equal — the gap, KL(q ‖ p(z|x)), is 0 up to rounding,
  because q *is* the exact posterior;
* the ELBO and log p(x) right after the M-step: ELBO ≤ log p(x) (the old q is no longer the posterior),
  and both have risen; log p(x) never decreases.

Then a VAE (2-D latent, Gaussian decoder) learns the same data by gradient ascent on a Monte-Carlo ELBO,
and its log-likelihood is estimated by importance sampling (k samples). The ring's true density is known
(an equal mixture of 8 isotropic Gaussians), so the distance of each model from the data is computable:

    KL(p_data ‖ p_model) = −H[p_data] − E_{p_data}[log p_model(x)]   (cross-entropy minus entropy),

with H[p_data] and the cross-entropy by Monte Carlo (± one standard error). The mixture has the right
form and nails it (KL ≈ 0); the VAE, whose decoder must bend one Gaussian blob of z into eight, does not
(and its k-sample estimate is a lower bound on log p(x), so its KL is an upper bound). em_trace.png draws
the iterations; densities.png the true density, the mixture's and the VAE's estimated density side by side.
"""

from __future__ import annotations

import os
import time

import _common  # examples/_common.py: command line, data, figures, report
import numpy

from tinyvae import data, em, evaluate, models

NAME = "em_gmm"
TOY = "ring"
GRID = 3.0  # the density figures span [−3, 3]²: the ring has radius 2 and std 0.1


def parse_args(argv):
    parser = _common.example_parser(
        NAME, __doc__, epochs=30, quick="3 EM starts, 10 VAE epochs, k = 20, a coarse grid"
    )
    parser.add_argument("--components", type=int, default=8, help="K, mixture components (default 8)")
    parser.add_argument("--iterations", type=int, default=100, help="at most this many EM iterations")
    parser.add_argument("--restarts", type=int, default=5, help="EM runs from different starts (default 5)")
    parser.add_argument("--k", type=int, default=1000, help="importance samples for the VAE's log p(x)")
    args = parser.parse_args(argv)
    # (entropy samples, grid points per side, importance samples on the grid)
    args.entropy_samples, args.grid, args.grid_k = 1_000_000, 80, 200
    if args.quick:
        args.epochs, args.k, args.entropy_samples, args.grid, args.grid_k = 10, 20, 50_000, 30, 20
        args.restarts = 3
    return args


def run_em(x, args):
    """Fit the mixture from several starts, keep the best, print the four numbers of its every iteration;
    returns (params, trace, the final log p(x) of every start)."""
    rng = numpy.random.default_rng(args.seed)
    fits = [em.fit(x, args.components, args.iterations, rng, tol=1e-6) for _ in range(args.restarts)]
    finals = [trace[-1]["log_px_m"] for _, trace in fits]
    print(f"EM, K = {args.components} full-covariance Gaussians, {len(x):,} points; nats per point")
    print("EM climbs to a local maximum; final log p(x) from each of the k-means++ starts:")
    print("  " + ", ".join(f"{v:.4f} ({len(t)} iterations)" for v, (_, t) in zip(finals, fits, strict=True)))
    params, trace = fits[int(numpy.argmax(finals))]
    print("the best start, iteration by iteration:")
    print(
        f"{'iter':>4} | after E-step: {'log p(x)':>9} {'ELBO':>9} {'gap':>9} |"
        f" after M-step: {'ELBO':>9} {'log p(x)':>9} {'gap':>8}"
    )
    for i, t in enumerate(trace, start=1):
        print(
            f"{i:>4} |{'':>14} {t['log_px']:>9.5f} {t['elbo_e']:>9.5f} {t['log_px'] - t['elbo_e']:>9.1e} |"
            f"{'':>14} {t['elbo_m']:>9.5f} {t['log_px_m']:>9.5f} {t['log_px_m'] - t['elbo_m']:>8.1e}"
        )
    rises = numpy.diff([t["log_px"] for t in trace] + [trace[-1]["log_px_m"]])
    print(f"log p(x) never decreased: smallest rise {rises.min():.1e} nats")
    return params, trace, finals


def trace_figure(trace, path):
    figure = _common.new_figure((11, 4))
    left, right = figure.add_subplot(1, 2, 1), figure.add_subplot(1, 2, 2)
    steps = numpy.arange(1, len(trace) + 1)
    # The sawtooth: at t the E-step makes ELBO = log p(x); at t + ½ the M-step lifts both, ELBO below.
    half = numpy.ravel([[s, s + 0.5] for s in steps])
    left.plot(half, numpy.ravel([[t["log_px"], t["log_px_m"]] for t in trace]), "o-", ms=3, label="log p(x)")
    left.plot(half, numpy.ravel([[t["elbo_e"], t["elbo_m"]] for t in trace]), "s--", ms=3, label="ELBO")
    left.set_xlabel("iteration (E-step at t, M-step at t + ½)")
    left.set_ylabel("nats per point")
    left.set_title("log p(x) never decreases; the E-step closes the gap")
    left.legend(loc="lower right")
    left.grid(alpha=0.3)
    gap = [max(t["log_px_m"] - t["elbo_m"], 1e-16) for t in trace]
    right.semilogy(steps, gap, "o-", ms=3)
    right.set_xlabel("iteration")
    right.set_ylabel("log p(x) − ELBO after the M-step (nats)")
    right.set_title("The gap the next E-step closes: KL(old q ‖ new p(z|x))")
    right.grid(alpha=0.3)
    return _common.save_figure(figure, path)


def density_figure(grid, densities, points, path):
    figure = _common.new_figure((13, 4.2))
    top = max(d.max() for d in densities.values())
    for i, (title, density) in enumerate(densities.items(), start=1):
        axes = figure.add_subplot(1, len(densities), i)
        axes.contourf(grid[0], grid[1], density, levels=numpy.linspace(0, top, 15), cmap="viridis")
        axes.scatter(points[:, 0], points[:, 1], s=1, c="w", alpha=0.3)
        axes.set_title(title)
        axes.set_aspect("equal")
    return _common.save_figure(figure, path)


def cross_entropy_and_kl(log_true, log_model):
    """(cross-entropy, its standard error, KL, its standard error) from log p_data and log p_model at the
    same samples of p_data: KL = mean(log p_data − log p_model), a paired estimate with a smaller error."""
    n = len(log_true)
    difference = log_true - log_model
    return (
        float(-log_model.mean()),
        float(log_model.std(ddof=1) / numpy.sqrt(n)),
        float(difference.mean()),
        float(difference.std(ddof=1) / numpy.sqrt(n)),
    )


def main(argv=None):
    args = parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    start = time.perf_counter()
    train_set, test_set = _common.load_splits(
        TOY, args.quick, quick_sizes=(None, 200), full_sizes=(None, None), likelihood="gaussian"
    )

    params, trace, finals = run_em(train_set.x, args)

    print(f"\n--- VAE, 2-D latent, Gaussian decoder, {args.epochs} epochs")
    vae = models.build(
        "vae", x_dim=2, z_dim=2, likelihood="gaussian", gaussian_logvar=None, hidden=(64, 64), seed=args.seed
    )
    _common.fit_adam(vae, train_set, test_set, args.epochs, numpy.random.default_rng(args.seed), lr=3e-3)

    # Test log-likelihoods, and the distance of each model from the true ring density.
    truth = em.ring_mixture()  # the exact density of data.ring
    x_test = test_set.x.astype(numpy.float64)
    log_true = em.log_marginal(x_test, truth)  # (N,)
    log_gmm = em.log_marginal(x_test, params)
    log_vae = evaluate.log_likelihood(vae, test_set.x, k=args.k, rng=numpy.random.default_rng(args.seed))
    many = data.ring(args.entropy_samples, numpy.random.default_rng(args.seed + 1))[0]
    log_many = em.log_marginal(many, truth)
    entropy = float(-log_many.mean())
    entropy_error = float(log_many.std(ddof=1) / numpy.sqrt(len(many)))
    entropy_test = float(-log_true.mean())

    numbers = {
        "log_px_trace": [t["log_px"] for t in trace],
        "elbo_after_e": [t["elbo_e"] for t in trace],
        "elbo_after_m": [t["elbo_m"] for t in trace],
        "log_px_after_m": [t["log_px_m"] for t in trace],
        "gap_after_e_max": max(abs(t["log_px"] - t["elbo_e"]) for t in trace),
        "iterations": len(trace),
        "final_log_px_of_starts": finals,
        "test_log_px_true": -entropy_test,
        "test_log_px_gmm": float(log_gmm.mean()),
        "test_log_px_vae": float(log_vae.mean()),
        "entropy": entropy,
        "entropy_error": entropy_error,
    }
    n = len(x_test)
    print(f"\nTest log-likelihood, {n:,} test points, nats per point:")
    print(f"  true ring density {numbers['test_log_px_true']:.4f}")
    print(f"  EM mixture        {numbers['test_log_px_gmm']:.4f}")
    print(f"  VAE (k = {args.k})      {numbers['test_log_px_vae']:.4f}   (importance-sampled: a lower bound)")
    print("\nKL(p_data ‖ p_model) = −H[p_data] − E_p_data[log p_model], nats ± one standard error:")
    print(
        f"  H[p_data] = {entropy:.4f} ± {entropy_error:.4f} ({len(many):,} samples of the ring);"
        f" {entropy_test:.4f} on the {n:,} test points"
    )
    print(f"{'model':>8} {'H(p_data, p_model)':>20} {'KL(p_data ‖ p_model)':>22}")
    for name, log_model in (("gmm", log_gmm), ("vae", log_vae)):
        ce, ce_error, kl, kl_error = cross_entropy_and_kl(log_true, log_model)
        numbers.update(
            {f"ce_{name}": ce, f"ce_error_{name}": ce_error, f"kl_{name}": kl, f"kl_error_{name}": kl_error}
        )
        print(f"{name.upper():>8} {ce:>11.4f} ± {ce_error:<6.4f} {kl:>13.4f} ± {kl_error:<6.4f}")
    print("(cross-entropy and KL on the test points; KL = cross-entropy − H on those same points)")

    side = numpy.linspace(-GRID, GRID, args.grid)
    grid = numpy.meshgrid(side, side)  # 2 × (G, G)
    cells = numpy.stack([g.ravel() for g in grid], axis=1)  # (G², 2)
    log_grid_vae = evaluate.log_likelihood(
        vae, cells.astype(numpy.float32), k=args.grid_k, rng=numpy.random.default_rng(args.seed)
    )
    densities = {
        "true ring density": numpy.exp(em.log_marginal(cells, truth)).reshape(grid[0].shape),
        f"EM mixture, K = {args.components}": numpy.exp(em.log_marginal(cells, params)).reshape(
            grid[0].shape
        ),
        f"VAE, k = {args.grid_k} importance samples": numpy.exp(log_grid_vae).reshape(grid[0].shape),
    }
    figures = [
        trace_figure(trace, os.path.join(args.out, "em_trace.png")),
        density_figure(grid, densities, test_set.x[:500], os.path.join(args.out, "densities.png")),
    ]
    return _common.report(args, numbers, figures, start)


if __name__ == "__main__":
    main()
