"""Posterior collapse: as β rises the latent units fall silent one by one; free bits bring them back.

    python examples/posterior_collapse.py [--epochs 30] [--seed 0] [--out examples_out/posterior_collapse]
    python examples/posterior_collapse.py --quick  # a few seconds: 1,000 points, 10 epochs

The lesson. A VAE pays KL(q(z|x) ‖ p(z)) for every nat its code carries; when the decoder can explain
the data without the code, the cheapest posterior is the prior itself, q(z_j|x) = N(0, 1), and unit j
is *collapsed*: it carries no information about x (Bowman et al. 2016). Here the data are the 2-D
pinwheel, the code has 8 dimensions and the decoder is a Gaussian with a fixed variance e⁻² (σ ≈ 0.37,
against a data spread of about 0.75), so a model that ignores z still scores a fair likelihood by
predicting the mean. We train the same network with the KL weighted by β = 1, 2, 4, 8 (Higgins et al.
2017) and measure, on the test points,

* the active units, Cov_x E[z_j|x] > 0.01 (Burda et al. 2016, Sec. 5.2),
* the KL term split per dimension (:func:`tinyvae.evaluate.kl_per_dimension`),
* and that KL term split the other way, "ELBO surgery" (Hoffman & Johnson 2016): mean KL =
  I_q(x; z) + KL(q(z) ‖ p(z)), the information the code carries about x plus how far the codes taken
  together sit from the prior (:func:`tinyvae.evaluate.mutual_information`,
  :func:`tinyvae.evaluate.aggregate_kl`).

Two remedies are then tried at β = 8, the most collapsed setting. *Free bits* (Kingma et al. 2016,
eq. 15; the ``free_bits`` option, ``--free-bits`` on the command line of tinyvae and of this script)
stop charging a dimension whose batch KL is below λ nats, so the reconstruction term gets those nats
for free and every unit is used again. *KL warm-up* (Bowman et al. 2016; the ``warmup_steps`` option)
ramps the weight from 0 to β over the first half of training; it helps where collapse is an accident of
early optimisation, but here the objective itself (β = 8) prefers the collapsed code, and once the
weight has reached β the units fall silent again — the table shows it.
"""

from __future__ import annotations

import os
import time

import _common  # examples/_common.py: command line, figures, report
import numpy

from tinyvae import data, evaluate, models, optim, plots, train

NAME = "posterior_collapse"
BETAS = (1.0, 2.0, 4.0, 8.0)
REMEDY_BETA = 8.0  # the remedies are tried where collapse is worst
Z_DIM = 8  # four times what a 2-D data set needs: the surplus dimensions should collapse at any β
DECODER_LOGVAR = -2.0  # log σ² of the Gaussian decoder, fixed: σ ≈ 0.37 against a data spread of 0.75
LR = 3e-3


def parse_args(argv):
    parser = _common.example_parser(NAME, __doc__, epochs=30, quick="1,000 points, 10 epochs", per_model=True)
    parser.add_argument("--free-bits", type=float, default=0.5, help="λ, nats per dimension (default 0.5)")
    args = parser.parse_args(argv)
    if args.quick:
        args.epochs = 10
    args.n_train = 1000 if args.quick else None  # None: the whole 10,000-point training split
    return args


def settings(args):
    """(tag, label, model options, whether the model is expected to use its code) for each run."""
    runs = [(f"beta{b:g}", f"β = {b:g}", {"beta": b}, b == 1.0) for b in BETAS]
    steps = (args.n_train or data.TOY_SIZES["train"]) // _common.BATCH_SIZE * args.epochs // 2
    b = REMEDY_BETA
    runs.append(
        (
            f"beta{b:g}_free_bits",
            f"β = {b:g}, free bits {args.free_bits:g}",
            {"beta": b, "free_bits": args.free_bits},
            True,
        )
    )
    runs.append(
        (f"beta{b:g}_warmup", f"β = {b:g}, warm-up {steps} steps", {"beta": b, "warmup_steps": steps}, False)
    )
    return runs


def summary_figure(results, path):
    """Left: active units per setting. Right: the KL term of each setting split into I_q(x; z) and
    KL(q(z) ‖ p(z)), stacked (nats per test point)."""
    figure = _common.new_figure((10, 4))
    left, right = figure.add_subplot(1, 2, 1), figure.add_subplot(1, 2, 2)
    positions = numpy.arange(len(results))
    labels = [r["label"].replace(", ", "\n") for r in results]
    left.bar(positions, [r["units"] for r in results], color="tab:blue")
    left.set_xticks(positions, labels, fontsize="small")
    left.set_ylim(0, Z_DIM + 0.5)
    left.set_ylabel(f"active units (of {Z_DIM})")
    left.set_title("Cov_x E[z_j|x] > 0.01")
    mi = numpy.array([max(r["mutual_information"], 0.0) for r in results])
    right.bar(positions, mi, color="tab:blue", label="I_q(x; z)")
    right.bar(
        positions,
        [max(r["aggregate_kl"], 0.0) for r in results],
        bottom=mi,
        color="tab:orange",
        label="KL(q(z) ‖ p(z))",
    )
    right.plot(positions, [r["kl"] for r in results], "k_", markersize=20, label="mean KL term")
    right.set_xticks(positions, labels, fontsize="small")
    right.set_ylabel("nats per test point")
    right.set_title("KL term = I_q(x; z) + KL(q(z) ‖ p(z))")
    right.legend(loc="best", fontsize="small")
    figure.suptitle("posterior collapse on the pinwheel: β silences the code, free bits restore it")
    return _common.save_figure(figure, path)


def main(argv=None):
    args = parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    start = time.perf_counter()
    train_set = data.load_dataset("pinwheel", "train", n=args.n_train)
    test_set = data.load_dataset("pinwheel", "test", n=500 if args.quick else 1000)

    results, figures = [], []
    for tag, label, options, uses_code in settings(args):
        rng = numpy.random.default_rng(
            args.seed
        )  # same data order and noise for all: only the options differ
        model = models.build(
            "vae",
            x_dim=2,
            z_dim=Z_DIM,
            hidden=(64, 64),
            likelihood="gaussian",
            gaussian_logvar=DECODER_LOGVAR,
            seed=args.seed,
            **options,
        )
        print(f"--- {label}")
        if (
            uses_code
        ):  # its reconstructions must beat the untrained model's (the examples' "it learned" check)
            history = _common.fit_adam(model, train_set, test_set, args.epochs, rng, lr=LR)
        else:  # a collapsed model reconstructs every point as the data mean by design: no such check
            optimizer = optim.Adam(model.parameters(), lr=LR)
            history = train.fit(
                model, train_set, test_set, args.epochs, _common.BATCH_SIZE, optimizer, rng, progress=False
            )
        units, _ = evaluate.active_units(model, test_set.x)
        per_dim = evaluate.kl_per_dimension(model, test_set.x)
        results.append(
            {
                "tag": tag,
                "label": label,
                "units": units,
                "kl_per_dimension": per_dim,
                "kl": float(per_dim.sum()),
                "mutual_information": evaluate.mutual_information(
                    model, test_set.x, numpy.random.default_rng(args.seed), n_samples=4
                ),
                "aggregate_kl": evaluate.aggregate_kl(
                    model, test_set.x, numpy.random.default_rng(args.seed), samples=4
                ),
                "elbo": history[-1]["test_elbo"],
            }
        )
        figures.append(
            plots.kl_per_dimension_bars(
                model, test_set.x, os.path.join(args.out, f"kl_per_dimension_{tag}.png")
            )
        )
    figures.append(summary_figure(results, os.path.join(args.out, "collapse_summary.png")))

    print(
        f"\n{'setting':>32} {'active':>7} {'KL term':>8} {'I_q(x;z)':>9} {'KL(q(z)‖p)':>11} {'test ELBO':>10}"
    )
    for r in results:
        print(
            f"{r['label']:>32} {r['units']:>5d}/{Z_DIM} {r['kl']:>8.3f} {r['mutual_information']:>9.3f}"
            f" {r['aggregate_kl']:>11.3f} {r['elbo']:>10.3f}"
        )
    print(f"I_q(x; z) on {len(test_set.x)} test points is at most log {len(test_set.x)}; KL per dimension:")
    for r in results:
        print(f"{r['label']:>32} " + " ".join(f"{v:5.2f}" for v in r["kl_per_dimension"]))

    numbers = {"full_size": not args.quick, "betas": list(BETAS)}
    for r in results:
        tag = r["tag"]
        numbers[f"active_units_{tag}"] = r["units"]
        numbers[f"kl_{tag}"] = r["kl"]
        numbers[f"kl_per_dimension_{tag}"] = [float(v) for v in r["kl_per_dimension"]]
        numbers[f"mutual_information_{tag}"] = r["mutual_information"]
        numbers[f"aggregate_kl_{tag}"] = r["aggregate_kl"]
        numbers[f"elbo_{tag}"] = r["elbo"]
    return _common.report(args, numbers, figures, start)


if __name__ == "__main__":
    main()
