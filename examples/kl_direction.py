"""Which KL? One Gaussian fitted to a two-mode target by KL(q ‖ p) and by KL(p ‖ q).

    python examples/kl_direction.py [--seed 0] [--out DIR]
    python examples/kl_direction.py --quick  # about a second: fewer samples for the KL estimates

The lesson. The target p is ½ N(−2, 0.5²) + ½ N(2, 0.5²); q = N(μ, σ²) can cover only one bump well. Which
one it picks depends on the direction of the KL (tinyvae/kl_fit.py explains both):

* **reverse**, KL(q ‖ p) = E_q[log q − log p], fitted by Adam on reparameterised samples z = μ + σ ε through
  the engine (log p with a logsumexp over the two modes): q sits on one mode, σ ≈ 0.5 — *mode-seeking*, as
  the q(z|x) of variational inference does with a multimodal posterior;
* **forward**, KL(p ‖ q) = H(p, q) − H(p), fitted by maximising E_p[log q] on samples of p: q sits between
  the modes with σ ≈ 2 — *mass-covering*, as maximum likelihood does with data. Its closed form, moment
  matching (μ = E_p z, σ² = Var_p z), gives the same q.

The script prints each fit, then both KLs for both fits, estimated with many samples (± one standard error),
and the split KL(p ‖ q) = H(p, q) − H(p): each fit wins on its own objective and loses badly on the other.
kl_direction.png draws p and both fits.
"""

from __future__ import annotations

import argparse
import os
import time

import _common  # examples/_common.py: command line, data, figures, report
import numpy

from tinyvae import kl_fit

NAME = "kl_direction"


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0, help="seeds the samples and the noise")
    parser.add_argument("--out", default=os.path.join("examples_out", NAME), help="where the figure goes")
    parser.add_argument("--quick", action="store_true", help="a tiny run (fewer samples)")
    args = parser.parse_args(argv)
    # Samples of p for the forward fit, and per KL estimate (its standard error shrinks as 1/sqrt(n)).
    args.fit_samples, args.kl_samples = (5_000, 20_000) if args.quick else (50_000, 1_000_000)
    args.steps = 1000 if args.quick else 3000  # reverse-KL Adam steps
    return args


def figure_of(target, fits, path):
    figure = _common.new_figure((8, 4))
    axes = figure.add_subplot(1, 1, 1)
    z = numpy.linspace(-6, 6, 600)
    axes.fill_between(z, numpy.exp(target.log_density(z)), color="0.85", label="target p (two modes)")
    styles = {"reverse": "tab:red", "forward": "tab:blue", "moments": "k"}
    for name, (mu, sigma) in fits.items():
        label = {
            "reverse": f"argmin KL(q ‖ p): μ = {mu:.2f}, σ = {sigma:.2f}",
            "forward": f"argmin KL(p ‖ q): μ = {mu:.2f}, σ = {sigma:.2f}",
            "moments": "moment matching (closed form)",
        }[name]
        line = "--" if name == "moments" else "-"
        density = numpy.exp(kl_fit.gaussian_log_density(z, mu, sigma))
        axes.plot(z, density, line, color=styles[name], label=label, linewidth=1.2 if line == "--" else 2)
    axes.set_xlabel("z")
    axes.set_ylabel("density")
    axes.set_title("Reverse KL seeks a mode; forward KL covers the mass")
    axes.legend(loc="upper left", fontsize="small")
    return _common.save_figure(figure, path)


def main(argv=None):
    args = parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    start = time.perf_counter()
    rng = numpy.random.default_rng(args.seed)
    target = kl_fit.TwoModes()

    reverse = kl_fit.fit_reverse_kl(target, rng, steps=args.steps)[:2]
    samples = target.sample(args.fit_samples, rng)  # (N,) the fixed sample the forward fit sees
    forward = kl_fit.fit_forward_kl(samples)[:2]
    moments = kl_fit.moment_match(target)
    empirical = kl_fit.sample_moments(samples)
    print(f"target p: modes at {target.means}, std {target.stds}, weights {target.weights}")
    print(f"reverse KL(q ‖ p), Adam on z = μ + σε:   μ = {reverse[0]:+.4f}, σ = {reverse[1]:.4f}")
    print(f"forward KL(p ‖ q), Adam on E_p log q:   μ = {forward[0]:+.4f}, σ = {forward[1]:.4f}")
    print(f"   the sample's own mean and std:        μ = {empirical[0]:+.4f}, σ = {empirical[1]:.4f}")
    print(f"   moment matching, closed form:         μ = {moments[0]:+.4f}, σ = {moments[1]:.4f}")

    n = args.kl_samples
    print(f"\nKLs by Monte Carlo, {n:,} samples each, nats ± one standard error:")
    print(f"{'fit':>9} {'KL(q ‖ p)':>18} {'KL(p ‖ q)':>18} {'H(p, q)':>18} {'− H(p)':>18}")
    numbers = {
        "reverse_mu": reverse[0],
        "reverse_sigma": reverse[1],
        "forward_mu": forward[0],
        "forward_sigma": forward[1],
        "sample_mu": empirical[0],
        "sample_sigma": empirical[1],
        "moment_mu": moments[0],
        "moment_sigma": moments[1],
        "modes": list(target.means),
    }
    for name, (mu, sigma) in (("reverse", reverse), ("forward", forward)):
        kls = kl_fit.kl_both_ways(target, mu, sigma, n, numpy.random.default_rng(args.seed + 1))
        row = [kls["reverse"], kls["forward"], kls["cross_entropy"], (-kls["entropy"][0], kls["entropy"][1])]
        print(f"{name:>9} " + " ".join(f"{v:>9.4f} ± {e:<6.4f}" for v, e in row))
        for key, (value, error) in kls.items():
            numbers[f"{key}_of_{name}"], numbers[f"{key}_error_of_{name}"] = value, error
    print(
        "KL(p ‖ q) = H(p, q) − H(p): the entropy H(p) is the same for both fits, so the forward fit wins by"
    )
    print(
        "having the smaller cross-entropy; the reverse fit wins KL(q ‖ p) (log 2 = 0.693 at best: half of p)"
    )

    fits = {"reverse": reverse, "forward": forward, "moments": moments}
    figures = [figure_of(target, fits, os.path.join(args.out, "kl_direction.png"))]
    return _common.report(args, numbers, figures, start)


if __name__ == "__main__":
    main()
