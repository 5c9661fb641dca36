"""The ``tinyvae`` command (also ``python -m tinyvae``).

tinyvae train                      # the 784-400-20 Bernoulli VAE on the embedded MNIST, with figures
tinyvae train --model iwae --k 10 --epochs 20 --out runs/iwae
tinyvae evaluate runs/vae-mnist5k-seed0
tinyvae sample | reconstruct | interpolate | plot RUN
tinyvae train-prior runs/vq        # a VQ-VAE run's second stage: a transformer prior over its codes
tinyvae info                       # backends and versions (and why CuPy was or was not chosen)
tinyvae train --device gpu         # any command: gpu (CuPy), cpu (numba, else NumPy), auto (the default)
tinyvae download mnist             # full MNIST into ~/.cache/tinyvae (needs the internet)

``tinyvae train`` is argparse → :class:`tinyvae.train.RunConfig` → :func:`tinyvae.train.run`: its flags
are generated from the RunConfig fields and from the config fields of every registered model (``--beta``,
``--k``, ``--ema``, ``--z-dims``, ...), so a model's new option is a flag without an edit here.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import json
import math
import os
import signal
import sys
import threading

import numpy

# Upper bounds on counts a user types, so that an extra zero is refused at once instead of filling memory
# or running for days: a figure of 10,000 images is already 100 x 100 panels.
MAX_FIGURE_IMAGES = 10_000
MAX_INTERPOLATION_STEPS = 1_000
MAX_EVALUATION_K = 100_000
# `tinyvae train-prior` defaults: 20 epochs take ~20 s for K = 64, L = 16 on mnist5k's 4,500 images (one BLAS
# thread, 2-vCPU AMD EPYC); in examples/vqvae_prior.py the held-out bits per code level off by then.
PRIOR_EPOCHS = 20
PRIOR_BATCH_SIZE = 128
PRIOR_LR = 1e-3


class CommandError(Exception):
    """A user error: printed as ``tinyvae: error: <message>`` with exit status 2, no traceback."""


# ---------------------------------------------------------------- argument types


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _count_at_most(limit, what):
    """An argparse type: a positive integer no larger than ``limit`` (``what`` says why the limit)."""

    def parse(text):
        value = _positive_int(text)
        if value > limit:
            raise argparse.ArgumentTypeError(f"expected at most {limit:,} ({what}), got {value:,}")
        return value

    return parse


def _at_least_two(text):
    value = _positive_int(text)
    if value < 2:
        raise argparse.ArgumentTypeError(f"expected an integer >= 2 (the two ends of the path), got {value}")
    if value > MAX_INTERPOLATION_STEPS:
        raise argparse.ArgumentTypeError(
            f"expected at most {MAX_INTERPOLATION_STEPS:,} points (one image each in a strip), got {value:,}"
        )
    return value


def _number(text):
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None


def _positive_float(text):
    value = _number(text)
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a finite number > 0, got {text}")
    return value


def _integer(text):
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


def _seed(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer seed, got {text!r}") from None
    if not 0 <= value < 2**63:
        raise argparse.ArgumentTypeError(f"expected a seed in 0 .. 2**63 - 1, got {value}")
    return value


def _sizes(text):
    """'400' or '512,256' → (400,) or (512, 256)."""
    try:
        sizes = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated layer sizes like 400 or 512,256, got {text!r}"
        ) from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"expected positive layer sizes like 400 or 512,256, got {text!r}")
    return sizes


def _or_none(parse):
    """An argparse type that also takes ``none`` (for a config field whose default is None)."""

    def parse_or_none(text):
        return None if text.strip().lower() == "none" else parse(text)

    return parse_or_none


# ---------------------------------------------------------------- the parser, generated


def _run_config_types():
    """{RunConfig field: (argparse keyword arguments)} for `tinyvae train`."""
    from tinyvae import data, models

    return {
        "model": {"choices": sorted(models.MODELS)},
        "data": {"choices": data.DATASETS},
        "likelihood": {"choices": ("bernoulli", "gaussian")},
        "pixels": {"choices": data.PIXEL_MODES},
        "epochs": {"type": _positive_int},
        "batch_size": {"type": _positive_int},
        "latent_dim": {"type": _positive_int},
        "limit": {"type": _positive_int},
        "lr": {"type": _positive_float},
        "seed": {"type": _seed},
        "hidden": {"type": _sizes},
    }


def _add_run_config_flags(parser):
    """One flag per RunConfig field (its help from the field), defaults None: a flag not typed stays None,
    so a resumed run can tell it from one typed with the default's value."""
    from tinyvae.train import RunConfig

    types = _run_config_types()
    for field in dataclasses.fields(RunConfig):
        if field.name == "model_options":
            continue
        flag, help_text = "--" + field.name.replace("_", "-"), field.metadata["help"]
        if field.type == "bool" and field.default:
            parser.add_argument(f"--no-{field.name}", dest=field.name, action="store_false", help=help_text)
        elif field.type == "bool":
            parser.add_argument(flag, action="store_true", help=help_text)
        else:
            parser.add_argument(flag, help=help_text, **types.get(field.name, {}))


def model_options():
    """{config field: {model name: default}} over every registered model's config, without the fields a
    run sets itself (x_dim, z_dim, seed, ...): the model options `tinyvae train` has a flag for."""
    from tinyvae import models, train

    options = {}
    for name, cls in sorted(models.MODELS.items()):
        for field in dataclasses.fields(cls.config_class):
            if field.name not in train.RUN_SET_MODEL_FIELDS:
                options.setdefault(field.name, {})[name] = field
    return options


def _option_type(field):
    """The argparse keyword arguments for a model config field, from its default (or its annotation)."""
    kind = type(field.default).__name__ if field.default is not None else str(field.type).split(" |")[0]
    parse = {"bool": None, "int": _integer, "float": _number, "tuple": _sizes, "str": str}.get(kind, str)
    if kind == "bool":
        return {"action": argparse.BooleanOptionalAction}
    return {"type": _or_none(parse) if "None" in str(field.type) else parse, "metavar": kind.upper()}


def _add_model_option_flags(parser):
    group = parser.add_argument_group("model options (each applies to the models listed; see their configs)")
    for option, fields in model_options().items():
        by_default = {}
        for model, field in fields.items():
            by_default.setdefault(repr(field.default), []).append(model)
        defaults = "; ".join(f"{', '.join(names)}: default {value}" for value, names in by_default.items())
        kwargs = _option_type(next(iter(fields.values())))
        group.add_argument("--" + option.replace("_", "-"), dest=f"option_{option}", help=defaults, **kwargs)


def _add_train_parser(commands):
    train = commands.add_parser(
        "train",
        usage="tinyvae train [options]   (tinyvae train --help lists them)",
        help="train a model and write its run directory (metrics, checkpoints, figures)",
        description="Train a model. Defaults: the 784-400-20 VAE with a Bernoulli decoder on the embedded "
        "MNIST 5k (dynamic binarisation), Adam 1e-3, batch 128, 30 epochs.",
        epilog="example: tinyvae train --model iwae --k 10 --epochs 20 --out runs/iwae",
    )
    _add_run_config_flags(train)
    _add_model_option_flags(train)


def _add_run_command(commands, name, help_text, example):
    sub = commands.add_parser(
        name,
        help=help_text,
        description=help_text[0].upper() + help_text[1:] + ".",
        epilog=f"example: {example}",
    )
    sub.add_argument("run", help="a run directory made by `tinyvae train`")
    sub.add_argument(
        "--checkpoint",
        choices=("best", "last"),
        default="last",
        help="which checkpoint (default last: the model the end-of-training figures show)",
    )
    sub.add_argument("--seed", type=_seed, default=0, help="seed for any sampling (default 0)")
    return sub


def _add_run_commands(commands):
    evaluate = _add_run_command(
        commands,
        "evaluate",
        "report the test split's k-sample log-likelihood, active units, per-dimension KL, mutual information "
        "and the model's own metrics (codebook perplexity for VQ); writes evaluation.json",
        "tinyvae evaluate runs/vae-mnist5k-seed0 --k 1000",
    )
    slow = "the time grows with k: 1e5 samples take ~100x the default"
    evaluate.add_argument(
        "--k",
        type=_count_at_most(MAX_EVALUATION_K, slow),
        default=1000,
        help="importance samples (default 1000)",
    )
    evaluate.add_argument("--limit", type=_positive_int, help="evaluate only the first N test examples")
    _add_sample_parser(commands)
    reconstruct = _add_run_command(
        commands, "reconstruct", "reconstruct test examples and save them", "tinyvae reconstruct RUN"
    )
    two = _count_at_most(MAX_FIGURE_IMAGES, "two images each in a single figure")
    reconstruct.add_argument("--n", type=two, default=10, help="examples (default 10)")
    interpolate = _add_run_command(
        commands,
        "interpolate",
        "decode the path between two test examples",
        "tinyvae interpolate RUN --method slerp",
    )
    interpolate.add_argument(
        "--steps", type=_at_least_two, default=10, help="points on the path, >= 2 (default 10)"
    )
    interpolate.add_argument("--method", choices=("linear", "slerp"), default="linear")
    _add_run_command(commands, "plot", "make every figure that applies to the run", "tinyvae plot RUN")
    _add_train_prior_parser(commands)


def _add_sample_parser(commands):
    sample = _add_run_command(
        commands, "sample", "draw samples from the prior and save a grid", "tinyvae sample RUN --n 64"
    )
    one = _count_at_most(MAX_FIGURE_IMAGES, "one image each in a single figure")
    sample.add_argument("--n", type=one, default=64, help="number of samples (default 64)")
    sample.add_argument("--label", type=int, help="class to generate (conditional models)")
    sample.add_argument(
        "--prior",
        choices=("learned", "uniform"),
        help="VQ runs: draw the codes from the prior `tinyvae train-prior` saved (learned; the default when "
        "RUN/code_prior.npz exists) or uniformly (uniform; the default otherwise)",
    )
    sample.add_argument(
        "--save-array",
        metavar="FILE",
        help="also write the samples (decoder means) as an (n, x_dim) float32 .npy file; an existing FILE "
        "is replaced only with --force, and a run's own files never",
    )
    sample.add_argument("--force", action="store_true", help="let --save-array replace an existing file")


def _add_train_prior_parser(commands):
    from tinyvae.models.code_prior import CodePriorConfig
    from tinyvae.rundir import PRIOR_NAME

    prior = _add_run_command(
        commands,
        "train-prior",
        "fit a transformer prior over the codes of a VQ-VAE run (the second stage of van den Oord et al. "
        f"2017) and save it in the run as {PRIOR_NAME}; `sample` then draws codes from it",
        "tinyvae train-prior runs/vq --epochs 20",
    )
    prior.add_argument("--epochs", type=_positive_int, default=PRIOR_EPOCHS, help=f"default {PRIOR_EPOCHS}")
    prior.add_argument(
        "--batch-size", type=_positive_int, default=PRIOR_BATCH_SIZE, help=f"default {PRIOR_BATCH_SIZE}"
    )
    prior.add_argument(
        "--lr", type=_positive_float, default=PRIOR_LR, help=f"Adam's step (default {PRIOR_LR})"
    )
    defaults = {field.name: field.default for field in dataclasses.fields(CodePriorConfig)}
    sizes = {  # name: (what it is, an upper bound that refuses a typo before it fills memory)
        "width": ("numbers per position", 4096),
        "heads": ("attention heads, dividing the width", 256),
        "layers": ("transformer blocks", 64),
    }
    for name, (what, limit) in sizes.items():
        prior.add_argument(
            f"--{name}",
            type=_count_at_most(limit, "a prior far larger than its codes need"),
            default=defaults[name],
            help=f"{what} (default {defaults[name]})",
        )


def build_parser():
    parser = argparse.ArgumentParser(
        prog="tinyvae",
        description="Variational autoencoders from scratch on NumPy.",
        epilog="Run `tinyvae COMMAND --help` for each command's options and an example.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_train_parser(commands)
    _add_run_commands(commands)
    commands.add_parser(
        "info", help="show the backends, versions and threads", epilog="example: tinyvae info"
    )
    download = commands.add_parser(
        "download",
        help="fetch the IDX files of mnist or fashion-mnist (SHA-256 checked)",
        epilog="example: tinyvae download mnist",
    )
    download.add_argument("name", choices=("mnist", "fashion-mnist"))
    download.add_argument("--data-dir", help="destination folder (default ~/.cache/tinyvae/NAME)")
    from tinyvae.backend import DEVICE_CHOICES

    for command in commands.choices.values():
        command.add_argument(
            "--device",
            choices=DEVICE_CHOICES,
            help="where the arrays and kernels run: gpu (CuPy), cpu (numba, else NumPy), or auto (the GPU "
            "only when a test kernel compiles and runs there); default $TINYVAE_BACKEND, else auto",
        )
    return parser


# ---------------------------------------------------------------- helpers


def banner():
    import tinyvae

    info = tinyvae.backend.info()
    threads = f", {info['threads']} threads" if "threads" in info else ""
    return f"tinyvae {tinyvae.__version__} | backend {info['backend']} ({info['reason']}){threads}"


def _read_settings(run):
    from tinyvae import rundir

    return rundir.read_settings(run)


def run_config_from(args):
    """The RunConfig of parsed `tinyvae train` arguments (model options collected into model_options)."""
    from tinyvae.train import RunConfig

    values = vars(args)
    options = {k[len("option_") :]: v for k, v in values.items() if k.startswith("option_") and v is not None}
    names = [field.name for field in dataclasses.fields(RunConfig) if field.name != "model_options"]
    return RunConfig(model_options=options, **{name: values[name] for name in names})


# ---------------------------------------------------------------- commands


def command_train(args):
    from tinyvae import train

    config = run_config_from(args).validate()
    print(banner())
    try:
        with numpy.errstate(over="ignore", invalid="ignore", divide="ignore"):  # divergence is reported below
            out = train.run(config)
    except KeyboardInterrupt as interrupt:
        return _report_interrupt(interrupt, config)
    except (train.TrainingDiverged, OSError) as stop:
        reason = (
            stop if isinstance(stop, train.TrainingDiverged) else f"could not write to {config.run_dir()}"
        )
        if isinstance(stop, OSError):
            reason = f"{reason}: {stop.strerror or stop}"
        print(f"error: {reason}", file=sys.stderr)
        print(getattr(stop, "kept", ""), file=sys.stderr)
        return 1
    print(f"done: {out}")
    return 0


def _report_interrupt(interrupt, config):
    """The message of a Ctrl-C (exit 130) or SIGTERM (143) during training, with what was kept."""
    what = _interrupted(interrupt)
    kept = getattr(interrupt, "kept", "")
    print(f"\n{what} {kept}" if kept.startswith("before") else f"\n{what}; {kept}")
    if kept.startswith("the last finished epoch"):
        print(f"continue with: tinyvae train --out {config.run_dir()} --resume")
    return 143 if isinstance(interrupt, Terminated) else 130


def _load_run(args):
    from tinyvae import checkpoint, train

    settings = _read_settings(args.run)
    path = os.path.join(args.run, f"{args.checkpoint}.npz")
    try:
        model, meta = checkpoint.load_model(
            path, expected_model=settings["model"], expected_config=settings["model_config"]
        )
    except checkpoint.CheckpointError as error:
        raise CommandError(str(error)) from error
    print(f"checkpoint: {path} (epoch {meta.get('epoch')})")  # every output below describes this model
    rng = numpy.random.default_rng(args.seed)
    train_data, test_data = train.load_splits(settings)
    return model, meta, train_data, test_data, rng


def command_evaluate(args):
    from tinyvae import disentanglement, evaluate
    from tinyvae.train import atomic_write_bytes

    model, meta, _, test, rng = _load_run(args)
    x = test.x[: args.limit] if args.limit else test.x
    labels = None if test.labels is None else test.labels[: len(x)]
    y = labels if model.conditional else None
    report = {"checkpoint": args.checkpoint, "epoch": meta.get("epoch"), "examples": int(len(x))}
    factors = None if test.factors is None else test.factors[: len(x)]  # known for the shapes: MIG, SAP
    categorical = disentanglement.categorical_columns(test)
    report.update(evaluate.report(model, x, args.k, rng, y, factors=factors, categorical=categorical))
    if model.latent_kind == "discrete":
        report.update(_code_prior_report(args, model, meta, x))
    if report.get("mutual_information_saturated"):
        print(
            f"note: I(x; z) = {report['mutual_information']:.4f} is within 5% of its estimator's ceiling "
            f"log {len(x)} = {report['mutual_information_ceiling']:.4f}: the true value may be higher; "
            "evaluate more examples (--limit) to raise the ceiling"
        )
    atomic_write_bytes(os.path.join(args.run, "evaluation.json"), json.dumps(report, indent=2).encode())
    for key, value in report.items():
        if not isinstance(value, list):
            print(f"{key:>20}: {value}")
    print(f"written: {os.path.join(args.run, 'evaluation.json')}")
    return 0


def command_sample(args):
    from tinyvae import plots
    from tinyvae.files import atomic_write_bytes

    model, meta, train_data, _, rng = _load_run(args)
    if model.conditional and args.label is None:
        raise CommandError(f"--label is required for the conditional model {model.name!r}")
    if not model.conditional and args.label is not None:
        raise CommandError(f"--label applies to conditional models only (cvae), not to {model.name!r}")
    if model.conditional and not 0 <= args.label < model.config.n_classes:
        raise CommandError(
            f"--label must be a class in 0..{model.config.n_classes - 1} for this {model.name!r} model, "
            f"got {args.label}"
        )
    if args.prior is not None and model.latent_kind != "discrete":
        raise CommandError(
            f"--prior applies to VQ runs (--model vqvae), whose codes a prior is fitted to; this run's model "
            f"is {model.name!r}"
        )
    target = _array_target(args) if args.save_array else None
    if model.latent_kind == "discrete":
        _choose_code_prior(args, model, meta)
    path = plots.samples_grid(
        model,
        rng,
        os.path.join(args.run, "samples.png"),
        n=args.n,
        y=args.label,
        image_shape=train_data.image_shape,
    )
    print(f"written: {path}")
    if target is not None:  # the same draws as the figure: the same seed, drawn the same way
        from tinyvae.backend import to_host

        samples = model.sample(args.n, numpy.random.default_rng(args.seed), y=args.label)
        buffer = io.BytesIO()
        numpy.save(buffer, numpy.asarray(to_host(samples), dtype=numpy.float32))
        atomic_write_bytes(target, buffer.getvalue())
        print(f"written: {target} ({args.n} samples, float32)")
    return 0


def _array_target(args):
    """The path --save-array may write, or a CommandError: never a file of a run directory (a run's files
    are tinyvae's, whatever --force says), an existing file only with --force, never a folder."""
    from tinyvae import rundir

    path = os.path.abspath(args.save_array)
    folder, name = os.path.split(path)
    if os.path.isdir(path):
        raise CommandError(
            f"--save-array {args.save_array} is a folder; give a file name such as samples.npy"
        )
    if not os.path.isdir(folder):
        raise CommandError(f"--save-array {args.save_array}: the folder {folder} does not exist")
    if rundir.is_run_file(name) and os.path.isfile(os.path.join(folder, rundir.CONFIG_NAME)):
        raise CommandError(
            f"--save-array {args.save_array} would replace {name}, a file of the run directory {folder}; "
            "choose another name"
        )
    if os.path.lexists(path) and not args.force:
        raise CommandError(f"--save-array {args.save_array} already exists; pass --force to replace it")
    return path


def _sha256(path):
    from tinyvae import data

    return data.sha256_of(path)


def _codes_of(model, x, batch_size=1000):
    """The code indices (N, L) that the VQ-VAE's encoder assigns to the examples x (N, x_dim)."""
    from tinyvae.backend import to_host

    parts = [to_host(model.encode(x[i : i + batch_size])[1]) for i in range(0, len(x), batch_size)]
    return numpy.concatenate(parts).astype(numpy.int64)


def _saved_code_prior(args, model, meta):
    """(prior, header, problem) for the run's code prior: (None, None, None) when there is none; a prior
    fitted to another checkpoint than the one this command read (or an older state of it) comes back
    with ``problem`` saying so. A damaged file is a PriorFileError (a one-line error, exit status 2)."""
    from tinyvae import rundir
    from tinyvae.models import code_prior

    path = os.path.join(args.run, rundir.PRIOR_NAME)
    if not os.path.lexists(path):
        return None, None, None
    K, L = model.config.codebook_size, model.config.latent_vectors
    prior, header = code_prior.load_prior(path, codebook_size=K, length=L)
    checkpoint_path = os.path.join(args.run, f"{args.checkpoint}.npz")
    if header["checkpoint_sha256"] != _sha256(checkpoint_path):
        problem = (
            f"{path} was fitted to the codes of {header['checkpoint']}.npz at epoch "
            f"{header['checkpoint_epoch']}, not to this {args.checkpoint}.npz (epoch {meta.get('epoch')}); "
            f"fit it again with `tinyvae train-prior {args.run} --checkpoint {args.checkpoint}`"
        )
        return prior, header, problem
    return prior, header, None


def _choose_code_prior(args, model, meta):
    """Make the VQ-VAE draw its codes from the saved prior (``--prior learned``, the default when there is
    one that fits this checkpoint) or leave them uniform, saying which."""
    from tinyvae import rundir
    from tinyvae.models.code_prior import LearnedCodes

    uniform = f"codes drawn uniformly (log2 K = {math.log2(model.config.codebook_size):.3f} bits per code)"
    if args.prior == "uniform":
        print(f"prior: {uniform}")
        return
    prior, header, problem = _saved_code_prior(args, model, meta)
    if prior is None:
        if args.prior == "learned":
            raise CommandError(
                f"--prior learned: {os.path.join(args.run, rundir.PRIOR_NAME)} does not exist; fit the prior "
                f"first with `tinyvae train-prior {args.run}`"
            )
        print(f"note: no code prior in {args.run} (fit one with `tinyvae train-prior {args.run}`); {uniform}")
        return
    if problem is not None:
        if args.prior == "learned":
            raise CommandError(f"--prior learned: {problem}")
        print(f"note: {problem}; {uniform}")
        return
    model.prior = LearnedCodes(prior, model.codebook.numpy)  # the second stage replaces the uniform prior
    print(
        f"prior: {os.path.join(args.run, rundir.PRIOR_NAME)}, a transformer over the codes "
        f"({header['test_bits_per_code']:.3f} bits per test code against log2 K = "
        f"{math.log2(model.config.codebook_size):.3f})"
    )


def _code_prior_report(args, model, meta, x):
    """``uniform_bits_per_code`` = log2 K, and ``prior_bits_per_code`` on the codes of x when the run has
    a code prior fitted to this checkpoint: the average code length, in bits, under each prior."""
    from tinyvae.models import code_prior

    values = {"uniform_bits_per_code": math.log2(model.config.codebook_size)}
    prior, _, problem = _saved_code_prior(args, model, meta)
    if problem is not None:
        print(f"note: no prior_bits_per_code: {problem}")
    elif prior is not None:
        codes = _codes_of(model, x)
        with code_prior.blas_threads(1):  # small matrices: one thread is faster (see blas_threads)
            values["prior_bits_per_code"] = float(prior.bits_per_code(codes))
    return values


def command_train_prior(args):
    """Encode the run's training split to code indices, fit a TransformerCodePrior to them (the test
    split's codes held out) and save it as RUN/code_prior.npz, holding the run's writer lock throughout."""
    from tinyvae import rundir
    from tinyvae.models import code_prior

    config = _code_prior_config(args, _read_settings(args.run))
    with rundir.RunLock(args.run, rundir.command_line()):  # refused while the run trains, and vice versa
        model, meta, train_data, test_data, _ = _load_run(args)
        # The encoder trained on binary draws of the grey training images (binarized-dynamic pixels): encode
        # one such draw, as the test split's codes come from its fixed binary draw.
        drawn = train_data.draw(numpy.random.default_rng(args.seed))  # (N, x_dim)
        source = {
            "checkpoint": args.checkpoint,
            "checkpoint_epoch": int(meta.get("epoch") or 0),
            "checkpoint_sha256": _sha256(os.path.join(args.run, f"{args.checkpoint}.npz")),
        }
        fit = {"epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr, "seed": args.seed}
        path = os.path.join(args.run, rundir.PRIOR_NAME)
        test_bits = code_prior.fit_and_save(
            path, config, _codes_of(model, drawn), _codes_of(model, test_data.x), fit, source, log=print
        )
    print(f"written: {path} (test {test_bits:.3f} bits per code)")
    return 0


def _code_prior_config(args, settings):
    """The CodePriorConfig for a VQ run's codes and the size flags, or a CommandError for another model."""
    from tinyvae import models
    from tinyvae.models import code_prior

    if models.MODELS[settings["model"]].latent_kind != "discrete":
        raise CommandError(
            f"train-prior: {args.run} holds a {settings['model']!r} model, which has no codes; only VQ runs "
            "(--model vqvae) have code indices to fit a prior to"
        )
    try:
        return code_prior.CodePriorConfig(
            codebook_size=settings["model_config"].get("codebook_size"),
            length=settings["model_config"].get("latent_vectors"),
            width=args.width,
            heads=args.heads,
            layers=args.layers,
            seed=args.seed,
        )
    except ValueError as error:
        raise CommandError(str(error)) from None


def command_reconstruct(args):
    from tinyvae import plots

    model, _, _, test, _ = _load_run(args)
    y = test.labels[: args.n] if model.conditional else None
    path = plots.reconstructions(
        model,
        test.x[: args.n],
        os.path.join(args.run, "reconstructions.png"),
        y=y,
        image_shape=test.image_shape,
        n=args.n,
    )
    print(f"written: {path}")
    return 0


def command_interpolate(args):
    from tinyvae import plots

    model, _, _, test, _ = _load_run(args)
    y = int(test.labels[0]) if model.conditional else None
    path = plots.interpolation_strip(
        model,
        test.x[0],
        test.x[1],
        os.path.join(args.run, "interpolation.png"),
        steps=args.steps,
        method=args.method,
        image_shape=test.image_shape,
        y=y,
    )
    print(f"written: {path}")
    return 0


def command_plot(args):
    from tinyvae import plots

    model, _, train_data, test, rng = _load_run(args)
    rows = []
    metrics = os.path.join(args.run, "metrics.jsonl")
    if os.path.isfile(metrics):
        with open(metrics, encoding="utf-8") as file:
            rows = [json.loads(line) for line in file if line.strip()]
    for path in plots.plot_run(model, train_data, test, args.run, rng, rows):
        print(f"written: {path}")
    return 0


def command_info(args):
    import tinyvae

    print(banner())
    for key, value in tinyvae.backend.info().items():
        print(f"{key:>24}: {value}")
    return 0


def command_download(args):
    from tinyvae import data

    path = data.download(args.name, dest=args.data_dir)
    print(f"downloaded {args.name} into {path}")
    return 0


COMMANDS = {
    "train": command_train,
    "evaluate": command_evaluate,
    "sample": command_sample,
    "reconstruct": command_reconstruct,
    "interpolate": command_interpolate,
    "plot": command_plot,
    "train-prior": command_train_prior,
    "info": command_info,
    "download": command_download,
}


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like a Ctrl-C so that it is handled like one: the save in progress finishes, the run
    stays resumable, and the process exits with a message (status 143) instead of dying mid-write."""


def _raise_terminated(signum, frame):
    raise Terminated(signal.Signals(signum).name)


def _interrupted(interrupt):
    """ "interrupted" for a Ctrl-C, "terminated (SIGTERM)" or "terminated (SIGHUP)" for the others."""
    if isinstance(interrupt, Terminated):
        return f"terminated ({interrupt.args[0] if interrupt.args else 'SIGTERM'})"
    return "interrupted"


@contextlib.contextmanager
def _interrupt_handlers():
    """Ctrl-C raises KeyboardInterrupt and SIGTERM (or SIGHUP) raises Terminated inside the block, whatever
    handlers the process inherited (a job started in the background of a shell inherits SIGINT ignored)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {
        signal.SIGINT: signal.signal(signal.SIGINT, signal.default_int_handler),
        signal.SIGTERM: signal.signal(signal.SIGTERM, _raise_terminated),
        signal.SIGHUP: signal.signal(signal.SIGHUP, _raise_terminated),  # the terminal closed: the same
    }
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _mpi_world(command):
    """The MPI world when this process is one of several ranks started by an MPI launcher, else None.

    Only ``tinyvae train`` runs on several ranks (tinyvae/distributed.py); any other command there is
    refused, since N copies of it would write the same files."""
    from tinyvae import distributed

    if not distributed.launched_by_mpi():
        return None
    world = distributed.world()
    if not world.distributed:
        return None
    if command != "train":
        raise CommandError(
            f"`tinyvae {command}` runs as one process, and this one is one of {world.size} MPI ranks; only "
            "`tinyvae train` runs on several ranks (run this command without mpiexec)"
        )
    return world


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    from tinyvae import distributed

    try:
        world = _mpi_world(args.command)
    except (CommandError, distributed.DistributedError) as error:
        parser.exit(2, f"tinyvae: error: {error}\n")
    from tinyvae.kernels import _jit

    _jit.notice = lambda message: print(message, file=sys.stderr, flush=True)  # a first run's compile
    if world is None:
        return _run_command(parser, args)
    if not world.is_root:
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 (for the process's life): rank 0 alone prints
    try:
        status = _run_command(parser, args)
    except SystemExit as stop:  # parser.exit: a user error, already printed
        status = stop.code if isinstance(stop.code, int) else 1
    except BaseException as error:  # one rank failing must end them all: the others would wait forever
        world.abort(
            f"tinyvae {args.command} (rank {world.rank} of {world.size}): {type(error).__name__}: {error}"
        )
    if status:
        world.abort(
            f"tinyvae {args.command}: rank {world.rank} of {world.size} stopped (exit status {status}); "
            "ending every rank",
            status,
        )
    return status


def _run_command(parser, args):
    from tinyvae import backend, checkpoint, data, distributed, rundir, train

    user_errors = (CommandError, data.DataError, checkpoint.CheckpointError, rundir.RunDirError)
    user_errors += (train.RunConfigError, distributed.DistributedError)
    try:
        if args.device is not None:
            backend.use(args.device, source=f"--device {args.device}")
        with _interrupt_handlers():
            return COMMANDS[args.command](args)
    except (*user_errors, backend.BackendError) as error:
        parser.exit(2, f"tinyvae: error: {error}\n")
    except KeyboardInterrupt as interrupt:
        print(f"\ntinyvae {args.command}: {_interrupted(interrupt)}", file=sys.stderr)
        return 143 if isinstance(interrupt, Terminated) else 130
    except OSError as error:  # a full disk, a read-only folder, a file where a folder should be
        where = f" {error.filename}" if error.filename else ""
        print(
            f"tinyvae {args.command}: error: could not write or read{where}: {error.strerror or error}",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
