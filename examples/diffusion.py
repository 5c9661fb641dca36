"""Diffusion as a deep Markovian hierarchical VAE: samples that sit on the data, and the ELBO term by term.

    python examples/diffusion.py [--epochs 30] [--seed 0] [--data ring] [--out examples_out/diffusion]
    python examples/diffusion.py --quick  # a few seconds: 2,000 points, 3 epochs, a 100-step chain

The lesson. A VAE with a 2-D latent draws z ~ N(0, I) and shows the decoder's mean, a smooth map of the
plane: its samples smear across the gaps between the ring's 8 modes. A diffusion model is the hierarchical
VAE taken to its end (Luo 2022): T latents of the data's size, the encoder fixed to "add a little noise",
only the decoder learned, one small denoising step at a time. So:

* its samples sit on the data: their mean distance to the nearest training point is close to that of real
  held-out points, and far below the VAE's (at full size 1.10× against 18.0×, in --quick 31× against
  55×; benchmarks/RESULTS.md);
* its ELBO is the seeds' Markovian HVAE bound, split exactly as Luo eq. 58 splits it: reconstruction −
  prior matching − Σ_t denoising matching. The lesson prints the three terms, their sum, and the same bound
  computed the other way, E_q[log p(x_{0:T}) − log q(x_{1:T} | x_0)] with the whole chain sampled: the two
  agree within their Monte-Carlo error (at full size −2.200 against −2.195 ± 0.091 nats);
* diffusion_chain.png shows ancestral sampling from x_T ~ N(0, I) down to x_0; denoising_terms.png where
  along the chain the bound's nats are spent: mostly in the least noisy steps, t near 1 (the last steps of
  sampling, which place a point within its mode), and a spike at t = T, where the cosine schedule's β_t
  nears 1.
"""

from __future__ import annotations

import math
import os
import time

import _common  # examples/_common.py: command line, data, figures, report
import numpy

from tinyvae import data, models
from tinyvae.models import diffusion

NAME = "diffusion"


def parse_args(argv):
    parser = _common.example_parser(
        NAME, __doc__, epochs=30, quick="2,000 points, 3 epochs, a 100-step chain", per_model=True
    )
    parser.add_argument(
        "--data", default="ring", choices=data.TOY_DATASETS, help="the 2-D toy (default ring)"
    )
    parser.add_argument("--steps", type=int, default=1000, help="T, the chain's length (default 1000)")
    args = parser.parse_args(argv)
    if args.quick:
        args.epochs, args.steps = 3, 100
    return args


def mean_nearest_distance(points, reference):
    """Mean over ``points`` of the Euclidean distance to the nearest row of ``reference`` (in chunks)."""
    nearest = []
    for chunk in numpy.array_split(points, max(1, len(points) // 250)):
        squared = ((chunk[:, None, :] - reference[None, :, :]) ** 2).sum(axis=-1)  # (c, N)
        nearest.append(numpy.sqrt(squared.min(axis=1)))
    return float(numpy.concatenate(nearest).mean())


def scatter_figure(panels, path):
    """One scatter per (title, points) panel, side by side, on the same axes."""
    figure = _common.new_figure((4.2 * len(panels), 4.2))
    for i, (title, points, colour) in enumerate(panels):
        ax = figure.add_subplot(1, len(panels), i + 1)
        ax.scatter(points[:, 0], points[:, 1], s=3, alpha=0.4, color=colour)
        ax.set_title(title, fontsize=10)
        ax.set_aspect("equal")
        ax.set_xlim(-3, 3)
        ax.set_ylim(-3, 3)
    return _common.save_figure(figure, path)


def main(argv=None):
    args = parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    start = time.perf_counter()
    sizes = (2000, 1000) if args.quick else (None, 1000)
    train_set, test_set = _common.load_splits(args.data, args.quick, sizes, sizes, likelihood="gaussian")
    # Each model as `tinyvae train --model NAME --data ring` builds it (its run defaults).
    vae_hidden = models.VAE.run_defaults(toy=True)["hidden"]
    diffusion_options = dict(diffusion.Diffusion.run_defaults(toy=True))
    contenders = {
        "vae": models.build(
            "vae",
            x_dim=2,
            z_dim=2,
            hidden=vae_hidden,
            likelihood="gaussian",
            gaussian_logvar=None,
            seed=args.seed,
        ),
        "diffusion": models.build(
            "diffusion", x_dim=2, likelihood="gaussian", steps=args.steps, seed=args.seed, **diffusion_options
        ),
    }
    numbers, figures = {}, []
    held_out = mean_nearest_distance(test_set.x, train_set.x)
    numbers["held_out_distance"] = held_out
    samples = {}

    def sample_distance(model, test_set):
        """How far 200 samples lie from the data: the measure of learning for a model whose reconstruction
        is near the identity before any training (the diffusion model decodes x_1, a barely noised x)."""
        return mean_nearest_distance(model.sample(200, numpy.random.default_rng(0)), train_set.x)

    for name, model in contenders.items():
        print(f"--- {name}")
        rng = numpy.random.default_rng(args.seed)
        measure = sample_distance if name == "diffusion" else _common.reconstruction_error
        _common.fit_adam(model, train_set, test_set, args.epochs, rng, 1e-3, measure=measure)
        samples[name] = model.sample(len(test_set.x), numpy.random.default_rng(args.seed))
        numbers[f"distance_{name}"] = mean_nearest_distance(samples[name], train_set.x)
        numbers[f"distance_ratio_{name}"] = numbers[f"distance_{name}"] / held_out

    print(f"\n{'samples from':>14} {'mean distance to the nearest training point':>44} {'÷ held-out':>11}")
    print(f"{'held-out data':>14} {held_out:>44.4f} {1.0:>11.2f}")
    for name in contenders:
        print(f"{name:>14} {numbers[f'distance_{name}']:>44.4f} {numbers[f'distance_ratio_{name}']:>11.2f}")
    figures.append(
        scatter_figure(
            [
                (f"held-out {args.data} points", test_set.x, "tab:blue"),
                ("VAE: decoder means of z ~ N(0, I)", samples["vae"], "tab:orange"),
                (f"diffusion: ancestral samples, T = {args.steps}", samples["diffusion"], "tab:green"),
            ],
            os.path.join(args.out, "samples.png"),
        )
    )

    # The bound, term by term (Luo eq. 58), and the same bound in its first form (Luo eq. 45).
    model = contenders["diffusion"]
    x = test_set.x[:200]
    terms = model.elbo_terms(x, numpy.random.default_rng(1))
    for name, value in terms.items():
        numbers[f"elbo_{name}"] = float(value.mean())
    numbers["elbo"] = float(sum(terms.values()).mean())
    joint = model.log_joint_ratio(numpy.repeat(x, 5, axis=0), numpy.random.default_rng(2))
    numbers["elbo_joint_form"] = float(joint.mean())
    numbers["elbo_joint_form_error"] = float(joint.std() / math.sqrt(len(joint)))
    print(f"\nthe diffusion model's ELBO on {len(x)} test points, nats per point:")
    for name in terms:
        print(f"  {name:>20} {numbers[f'elbo_{name}']:>9.3f}")
    print(f"  {'sum = ELBO':>20} {numbers['elbo']:>9.3f}")
    print(
        f"  {'joint form':>20} {numbers['elbo_joint_form']:>9.3f} ± {numbers['elbo_joint_form_error']:.3f}"
        "   E_q[log p(x_0:T) − log q(x_1:T | x_0)], the whole chain sampled 5 times per point"
    )
    figures += model.extra_figures(args.out, test_set.x, rng=numpy.random.default_rng(args.seed))
    return _common.report(args, numbers, figures, start)


if __name__ == "__main__":
    main()
