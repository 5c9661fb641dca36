"""The ``tinyvae`` command (also ``python -m tinyvae``).

tinyvae train                      # the 784-400-20 Bernoulli VAE on the embedded MNIST, with figures
tinyvae train --model iwae --k 10 --epochs 20 --out runs/iwae
tinyvae evaluate runs/vae-mnist5k-seed0
tinyvae sample | reconstruct | interpolate | plot RUN
tinyvae info                       # backends and versions
tinyvae download mnist             # full MNIST into ~/.cache/tinyvae (needs the internet)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import threading

import numpy

DATASETS = ("mnist5k", "mnist", "fashion-mnist", "ring", "moons", "pinwheel")
TOY_DATASETS = ("ring", "moons", "pinwheel")
# Upper bounds on counts a user types, so that an extra zero is refused at once instead of filling memory
# or running for days: a figure of 10,000 images is already 100 x 100 panels.
MAX_FIGURE_IMAGES = 10_000
MAX_INTERPOLATION_STEPS = 1_000
MAX_EVALUATION_K = 100_000


class CommandError(Exception):
    """A user error: printed as ``tinyvae: error: <message>`` with exit status 2, no traceback."""


# ---------------------------------------------------------------- argument parsing


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


def _non_negative_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text}")
    return value


def _positive_float(text):
    value = _non_negative_float(text)
    if value == 0:
        raise argparse.ArgumentTypeError("expected a number > 0, got 0")
    return value


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


def build_parser():
    from tinyvae import models

    parser = argparse.ArgumentParser(
        prog="tinyvae",
        description="Variational autoencoders from scratch on NumPy.",
        epilog="Run `tinyvae COMMAND --help` for each command's options and an example.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    train = commands.add_parser(
        "train",
        help="train a model and write its run directory (metrics, checkpoints, figures)",
        description="Train a model. Defaults: the 784-400-20 VAE with a Bernoulli decoder on the embedded "
        "MNIST 5k (dynamic binarisation), Adam 1e-3, batch 128, 30 epochs.",
        epilog="example: tinyvae train --model iwae --k 10 --epochs 20 --out runs/iwae",
    )
    train.add_argument("--model", choices=sorted(models.MODELS), help="which model (default vae)")
    train.add_argument("--data", choices=DATASETS, help="dataset (default mnist5k, embedded)")
    train.add_argument("--epochs", type=_positive_int, help="epochs in total (default 30)")
    train.add_argument("--batch-size", type=_positive_int, help="minibatch size (default 128)")
    train.add_argument("--lr", type=_positive_float, help="Adam learning rate (default 1e-3)")
    train.add_argument(
        "--latent-dim", type=_positive_int, help="latent dimensions (default 20; 2 for 2-D toys)"
    )
    train.add_argument("--hidden", type=_sizes, help="hidden layer sizes, e.g. 400 or 512,256 (default 400)")
    train.add_argument("--likelihood", choices=("bernoulli", "gaussian"), help="decoder (default by dataset)")
    train.add_argument(
        "--pixels",
        choices=("continuous", "binarized-static", "binarized-dynamic"),
        help="pixel mode of the training split (default: dynamic binarisation for a Bernoulli decoder)",
    )
    train.add_argument("--beta", type=_non_negative_float, help="KL weight (vae, beta-vae, cvae, ...)")
    train.add_argument("--k", type=_positive_int, help="importance samples (iwae; default 5)")
    train.add_argument("--codebook-size", type=_positive_int, help="codes (vqvae; default 64)")
    train.add_argument("--components", type=_positive_int, help="mixture components (mixture; default 4)")
    train.add_argument("--flow-steps", type=_positive_int, help="flow layers (flow; default 4)")
    train.add_argument("--seed", type=_seed, help="seeds the weights, shuffling and noise (default 0)")
    train.add_argument("--out", help="run directory (default runs/MODEL-DATA-seedSEED)")
    train.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --out from its last.npz (--epochs, --lr and --batch-size may change)",
    )
    train.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the tinyvae run in --out (only the files a run writes are removed)",
    )
    train.add_argument("--data-dir", help="where the IDX files of mnist / fashion-mnist are")
    train.add_argument(
        "--limit", type=_positive_int, help="use only the first N training examples (quick runs)"
    )
    train.add_argument(
        "--no-progress", action="store_true", help="one line per epoch instead of a progress bar"
    )
    train.add_argument("--no-plots", action="store_true", help="skip the figures at the end")

    def run_command(name, help_text, example):
        sub = commands.add_parser(
            name,
            help=help_text,
            description=help_text[0].upper() + help_text[1:] + ".",
            epilog=f"example: {example}",
        )
        sub.add_argument("run", help="a run directory made by `tinyvae train`")
        sub.add_argument("--checkpoint", choices=("best", "last"), default="best", help="which checkpoint")
        sub.add_argument("--seed", type=_seed, default=0, help="seed for any sampling (default 0)")
        return sub

    evaluate = run_command(
        "evaluate",
        "report the test split's k-sample log-likelihood, active units, per-dimension KL, mutual information "
        "(and codebook perplexity for VQ); writes evaluation.json",
        "tinyvae evaluate runs/vae-mnist5k-seed0 --k 1000",
    )
    evaluate.add_argument(
        "--k",
        type=_count_at_most(MAX_EVALUATION_K, "the time grows with k: 1e5 samples take ~100x the default"),
        default=1000,
        help="importance samples (default 1000)",
    )
    evaluate.add_argument("--limit", type=_positive_int, help="evaluate only the first N test examples")
    sample = run_command("sample", "draw samples from the prior and save a grid", "tinyvae sample RUN --n 64")
    sample.add_argument(
        "--n",
        type=_count_at_most(MAX_FIGURE_IMAGES, "one image each in a single figure"),
        default=64,
        help="number of samples (default 64)",
    )
    sample.add_argument("--label", type=int, help="class to generate (conditional models)")
    reconstruct = run_command(
        "reconstruct", "reconstruct test examples and save them", "tinyvae reconstruct RUN"
    )
    reconstruct.add_argument(
        "--n",
        type=_count_at_most(MAX_FIGURE_IMAGES, "two images each in a single figure"),
        default=10,
        help="examples (default 10)",
    )
    interpolate = run_command(
        "interpolate", "decode the path between two test examples", "tinyvae interpolate RUN --method slerp"
    )
    interpolate.add_argument(
        "--steps", type=_at_least_two, default=10, help="points on the path, >= 2 (default 10)"
    )
    interpolate.add_argument("--method", choices=("linear", "slerp"), default="linear")
    run_command("plot", "make every figure that applies to the run", "tinyvae plot RUN")

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
    return parser


# ---------------------------------------------------------------- helpers


def banner():
    import tinyvae

    info = tinyvae.backend.info()
    threads = f", {info['threads']} threads" if "threads" in info else ""
    return f"tinyvae {tinyvae.__version__} | backend {info['backend']} ({info['reason']}){threads}"


def _model_fields(args, train_data):
    """The model config from the command line, the dataset and the model's own defaults."""
    from tinyvae import models

    cls = models.MODELS[args.model]
    toy = args.data in TOY_DATASETS
    fields = {
        "x_dim": int(train_data.x.shape[1]),
        "z_dim": args.latent_dim or (2 if toy else 20),
        "hidden": args.hidden or ((64, 64) if toy else (400,)),
        "likelihood": args.likelihood or ("gaussian" if toy else "bernoulli"),
        "seed": args.seed,
    }
    if fields["likelihood"] == "gaussian":
        fields["gaussian_logvar"] = None  # learn the decoder's variance: a fixed σ = 1 would blur everything
    options = {"beta": args.beta, "k": args.k, "codebook_size": args.codebook_size}
    options.update({"components": args.components, "flow_steps": args.flow_steps})
    known = set(cls.config_class.__dataclass_fields__)
    for name, value in options.items():
        if value is None:
            continue
        if name not in known:
            flag = "--" + name.replace("_", "-")
            raise CommandError(f"{flag} does not apply to --model {args.model}")
        fields[name] = value
    if "n_classes" in known:
        fields["n_classes"] = int(train_data.n_classes)
    if "z_dims" in known:  # hierarchical: the latent size for the bottom layer, half of it above
        fields["z_dims"] = (fields["z_dim"], max(1, fields["z_dim"] // 2))
    if args.model == "linear":
        fields["hidden"] = ()
        fields["likelihood"] = "gaussian"
        fields["gaussian_logvar"] = 0.0
    return cls, fields


def _load_splits(settings, rng):
    from tinyvae import data

    likelihood = settings["model_config"]["likelihood"]
    train_pixels = settings.get("pixels") or data.default_pixels(likelihood, "train")
    common = {"data_dir": settings.get("data_dir")}
    train = data.load_dataset(
        settings["data"], "train", pixels=train_pixels, rng=rng, n=settings.get("limit"), **common
    )
    test = data.load_dataset(
        settings["data"], "test", pixels=data.default_pixels(likelihood, "test"), **common
    )
    return train, test


def _read_settings(run):
    from tinyvae import rundir

    return rundir.read_settings(run)


TRAIN_DEFAULTS = {"model": "vae", "data": "mnist5k", "epochs": 30, "batch_size": 128, "lr": 1e-3, "seed": 0}
RESUME_MAY_CHANGE = ("epochs", "lr", "batch_size")  # applied to the continued run and recorded
RESUME_FIXED_SETTINGS = ("model", "data", "seed", "pixels", "limit", "data_dir")
RESUME_FIXED_MODEL_FIELDS = {  # flag attribute: the model-config field it sets
    "latent_dim": "z_dim",
    "hidden": "hidden",
    "likelihood": "likelihood",
    "beta": "beta",
    "k": "k",
    "codebook_size": "codebook_size",
    "components": "components",
    "flow_steps": "flow_steps",
}


def _flag(attribute):
    return "--" + attribute.replace("_", "-")


def _given_train_flags(args):
    """The train flags the user typed (argparse leaves the others None), then the defaults filled in."""
    given = {name for name, value in vars(args).items() if value is not None and value is not False}
    for name, value in TRAIN_DEFAULTS.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    return given


def _resume_conflicts(args, given, settings):
    """'--flag value (recorded: value)' for every flag that would change what the run is."""
    conflicts = []
    for name in RESUME_FIXED_SETTINGS:
        if name in given and getattr(args, name) != settings[name]:
            conflicts.append(f"{_flag(name)} {getattr(args, name)} (recorded: {settings[name]})")
    model_config = settings["model_config"]
    for name, field in RESUME_FIXED_MODEL_FIELDS.items():
        if name not in given:
            continue
        value, recorded = getattr(args, name), model_config.get(field)
        if isinstance(value, tuple):
            value, recorded = list(value), list(recorded) if isinstance(recorded, list | tuple) else recorded
        if value != recorded:
            shown = ",".join(map(str, value)) if isinstance(value, list) else value
            conflicts.append(f"{_flag(name)} {shown} (recorded: {recorded})")
    return conflicts


def _estimated_training_bytes(fields, batch_size, limit):
    """Bytes a training run of this config needs, roughly: float32 weights, gradients and two Adam moments,
    activations kept for the backward pass, and the generated data of a 2-D toy. An estimate to refuse
    impossible requests up front (a --hidden or --flow-steps typed with too many zeros), not a promise."""
    x_dim, z_dim = fields["x_dim"], sum(fields.get("z_dims") or (fields["z_dim"],))
    hidden = list(fields["hidden"])
    encoder, decoder = [x_dim, *hidden, 2 * z_dim], [z_dim, *hidden, x_dim]
    parameters = sum(
        (fan_in + 1) * fan_out
        for layers in (encoder, decoder)
        for fan_in, fan_out in zip(layers[:-1], layers[1:], strict=True)
    )
    codes = fields.get("codebook_size") or 0
    parameters += codes * z_dim + (fields.get("flow_steps") or 0) * (2 * z_dim + 1)
    parameters += (fields.get("components") or 0) * 2 * z_dim * ((hidden or [x_dim])[-1] + 1)
    samples = batch_size * (fields.get("k") or 1) * max(1, fields.get("components") or 1)
    activations = samples * (sum(encoder) + sum(decoder) + codes)
    data = 3 * x_dim * (limit or 0)
    return 4 * (4 * parameters + 6 * activations + data)


def _physical_memory_bytes():
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def _check_memory(needed, what, advice):
    available = _physical_memory_bytes()
    if available is not None and needed > 0.8 * available:
        raise CommandError(
            f"{what} would need about {needed / 2**30:,.1f} GiB, more than this machine's "
            f"{available / 2**30:,.1f} GiB of memory; {advice}"
        )


def _build_new_model(args, given):
    """The model and the settings of a new run, from the flags; every check that can refuse happens
    here, before the run directory is touched."""
    from tinyvae import data

    likelihood = args.likelihood or ("gaussian" if args.data in TOY_DATASETS else "bernoulli")
    probe = data.load_dataset(
        args.data, "test", pixels=data.default_pixels(likelihood, "test"), data_dir=args.data_dir
    )
    cls, fields = _model_fields(args, probe)
    _check_memory(
        _estimated_training_bytes(fields, args.batch_size, args.limit if args.data in TOY_DATASETS else 0),
        "this model and batch",
        "choose smaller sizes (--hidden, --latent-dim, --codebook-size, --k, --components, --flow-steps, "
        "--batch-size, --limit)",
    )
    try:
        model = cls(cls.config_class(**fields))
    except (ValueError, TypeError) as error:
        raise CommandError(str(error)) from error
    settings = {
        "model": args.model,
        "data": args.data,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "seed": args.seed,
        "pixels": args.pixels,
        "limit": args.limit,
        "data_dir": args.data_dir,
        "model_config": model.config.to_dict(),
    }
    return model, settings


def _check_new_run_dir(out, overwrite):
    """Refuse, changing nothing, a new run in ``out`` that would mix with or delete something: an existing
    non-empty folder needs --overwrite, and must then be a tinyvae run holding nothing but run files."""
    from tinyvae import rundir

    occupied = os.path.isdir(out) and [name for name in os.listdir(out) if name != rundir.LOCK_NAME]
    if not occupied:
        return False
    if not overwrite:
        raise CommandError(
            f"run directory {out} already exists; pass --resume to continue it or --overwrite to start over"
        )
    try:
        rundir.read_config(out)
    except rundir.RunDirError as error:
        raise CommandError(f"--overwrite refused: {error}; nothing was deleted") from None
    foreign = rundir.foreign_entries(out)
    if foreign:
        shown = ", ".join(foreign[:10]) + (f" and {len(foreign) - 10} more" if len(foreign) > 10 else "")
        raise CommandError(
            f"--overwrite refused: {out} holds files a tinyvae run does not write, which would be lost: "
            f"{shown}; move them out first. Nothing was deleted"
        )
    return True


def _claim_new_run_dir(out, overwrite, lock_command):
    """Make or take ``out`` for a new run and lock it; returns (lock, created). Under the lock the folder
    is checked again (another writer may have filled it since) and the old run's files are removed."""
    from tinyvae import rundir

    created = not os.path.isdir(out)
    try:
        os.makedirs(out, exist_ok=True)
    except OSError as error:
        raise CommandError(f"cannot create run directory {out}: {error.strerror}") from None
    try:
        lock = rundir.RunLock(out, lock_command).acquire()
    except rundir.RunDirError:
        if created:
            _remove_if_empty(out)
        raise
    try:
        if _check_new_run_dir(out, overwrite):
            rundir.remove_run_files(out)
    except BaseException:
        lock.release()
        raise
    return lock, created


def _remove_if_empty(folder):
    try:
        os.rmdir(folder)
    except OSError:  # not empty (another process's files), or already gone: leave it
        pass


def _abandon_new_run(run_dir, lock, created):
    """Undo a new run that saved no checkpoint, so the same command can simply be run again."""
    from tinyvae import rundir

    if os.path.exists(os.path.join(run_dir, "last.npz")):
        return False
    rundir.remove_run_files(run_dir)
    lock.release()
    lock_path = os.path.join(run_dir, rundir.LOCK_NAME)
    if os.path.exists(lock_path):
        os.unlink(lock_path)
    if created:
        _remove_if_empty(run_dir)
    return True


def _record_resume(run_dir, settings, done, changed):
    """config.json after a resume: the settings now in force, and which flags changed after which epoch."""
    from tinyvae import rundir
    from tinyvae.train import atomic_write_bytes

    payload = rundir.read_config(run_dir)
    payload["settings"] = settings
    payload.setdefault("resumes", []).append({"after_epoch": done, "changed": changed})
    atomic_write_bytes(os.path.join(run_dir, rundir.CONFIG_NAME), json.dumps(payload, indent=2).encode())


# ---------------------------------------------------------------- commands


def command_train(args):
    from tinyvae import rundir

    given = _given_train_flags(args)
    out = args.out or os.path.join("runs", f"{args.model}-{args.data}-seed{args.seed}")
    if args.resume and args.overwrite:
        raise CommandError("--resume and --overwrite contradict each other: choose one")
    try:
        rundir.check_writable_location(out)
    except rundir.RunDirError as error:
        raise CommandError(str(error)) from None
    print(banner())
    start = _start_resumed_run(args, given, out) if args.resume else _start_new_run(args, given, out)
    try:
        return _train_and_plot(args, out, start)
    finally:
        start["lock"].release()


def _start_resumed_run(args, given, out):
    """Lock the run in ``out`` and restore everything needed to continue it."""
    from tinyvae import optim, rundir, train

    if not os.path.isfile(os.path.join(out, "last.npz")):
        raise CommandError(f"--resume: {out} has no last.npz to continue from")
    settings = _read_settings(out)
    conflicts = _resume_conflicts(args, given, settings)
    if conflicts:
        raise CommandError(
            "--resume continues the recorded run, and these flags would change what it is: "
            + "; ".join(conflicts)
            + ". Drop them, or start a new run in another --out (only "
            + ", ".join(map(_flag, RESUME_MAY_CHANGE))
            + " may change on resume)"
        )
    lock = rundir.RunLock(out, rundir.command_line()).acquire()
    try:
        model, optimizer, rng, history, done = train.resume(
            out,
            lambda p: optim.Adam(p, lr=settings["lr"]),
            expected_model=settings["model"],
            expected_config=settings["model_config"],
        )
        changed = {}
        for name in RESUME_MAY_CHANGE:
            if name in given and getattr(args, name) != settings[name]:
                changed[name] = [settings[name], getattr(args, name)]
                settings[name] = getattr(args, name)
        optimizer.lr = settings["lr"]
        train_data, test_data = _load_splits(settings, numpy.random.default_rng(settings["seed"]))
        if changed:
            _record_resume(out, settings, done, changed)
    except BaseException:
        lock.release()
        raise
    print(f"resuming {out} after epoch {done} of {settings['epochs']}")
    return dict(
        model=model, optimizer=optimizer, rng=rng, history=history, done=done, settings=settings,
        train_data=train_data, test_data=test_data, lock=lock, created=False, new=False,
    )  # fmt: skip


def _start_new_run(args, given, out):
    """Check everything that can refuse, then make or take ``out``, lock it and write config.json."""
    from tinyvae import optim, rundir, train

    _check_new_run_dir(out, args.overwrite)  # the quick refusals, before data and model are built
    model, settings = _build_new_model(args, given)
    train_data, test_data = _load_splits(settings, numpy.random.default_rng(args.seed))
    lock, created = _claim_new_run_dir(out, args.overwrite, rundir.command_line())
    try:
        train.write_run_config(out, settings)
    except BaseException:
        _abandon_new_run(out, lock, created)
        raise
    optimizer, rng = optim.Adam(model.parameters(), lr=args.lr), numpy.random.default_rng(args.seed)
    return dict(
        model=model, optimizer=optimizer, rng=rng, history=[], done=0, settings=settings,
        train_data=train_data, test_data=test_data, lock=lock, created=created, new=True,
    )  # fmt: skip


def _train_and_plot(args, out, start):
    """Train from ``start`` (see the two functions above) to the recorded epochs, then draw the figures.
    Every way training can stop is a message and an exit status; a new run that saved nothing is undone."""
    from tinyvae import plots, train

    model, settings = start["model"], start["settings"]
    train_data, test_data = start["train_data"], start["test_data"]
    print(f"run directory: {out}")
    print(f"{model.name} on {settings['data']}: {len(train_data.x)} train / {len(test_data.x)} test examples")
    last = os.path.join(out, "last.npz")

    def undo_if_nothing_saved():
        return start["new"] and _abandon_new_run(out, start["lock"], start["created"])

    try:
        history = train.fit(
            model,
            train_data,
            test_data,
            settings["epochs"],
            settings["batch_size"],
            start["optimizer"],
            start["rng"],
            run_dir=out,
            progress=not args.no_progress and sys.stderr.isatty(),
            start_epoch=start["done"],
            history=start["history"],
        )
    except KeyboardInterrupt as interrupt:
        what = "terminated (SIGTERM)" if isinstance(interrupt, Terminated) else "interrupted"
        if undo_if_nothing_saved():
            print(f"\n{what} before the first epoch finished: nothing was saved, and {out} was cleared")
        else:
            print(f"\n{what}; the last finished epoch is saved in {last}")
            print(f"continue with: tinyvae train --out {out} --resume")
        return 143 if isinstance(interrupt, Terminated) else 130
    except train.TrainingDiverged as error:
        print(f"error: {error}", file=sys.stderr)
        if undo_if_nothing_saved():
            print(
                "no checkpoint was saved before it diverged, so none is kept; try a smaller --lr",
                file=sys.stderr,
            )
        else:
            print(
                f"the last good (finite) checkpoint is {last} (epoch {_saved_epoch(last)})", file=sys.stderr
            )
        return 1
    except OSError as error:  # a full disk or a quota: the atomic writes left the previous files whole
        print(f"error: could not write to {out}: {error.strerror or error}", file=sys.stderr)
        if undo_if_nothing_saved():
            print("no checkpoint was saved, so none is kept", file=sys.stderr)
        else:
            print(f"the last complete checkpoint is {last} (epoch {_saved_epoch(last)})", file=sys.stderr)
        return 1
    except BaseException:
        undo_if_nothing_saved()
        raise
    if not args.no_plots:
        figure_rng = numpy.random.default_rng(settings["seed"])
        written = plots.plot_run(model, train_data, test_data, out, figure_rng, history)
        print(f"figures: {', '.join(os.path.basename(p) for p in written)}")
    print(f"done: {out}")
    return 0


def _saved_epoch(path):
    from tinyvae import checkpoint

    try:
        return checkpoint.read_checkpoint(path)[0].get("epoch", "?")
    except checkpoint.CheckpointError:
        return "?"


def _load_run(args):
    from tinyvae import checkpoint

    settings = _read_settings(args.run)
    path = os.path.join(args.run, f"{args.checkpoint}.npz")
    try:
        model, meta = checkpoint.load_model(
            path, expected_model=settings["model"], expected_config=settings["model_config"]
        )
    except checkpoint.CheckpointError as error:
        raise CommandError(str(error)) from error
    rng = numpy.random.default_rng(args.seed)
    train_data, test_data = _load_splits(settings, numpy.random.default_rng(settings["seed"]))
    return model, meta, train_data, test_data, rng


def command_evaluate(args):
    from tinyvae import evaluate
    from tinyvae.train import atomic_write_bytes

    model, meta, _, test, rng = _load_run(args)
    x = test.x[: args.limit] if args.limit else test.x
    labels = None if test.labels is None else test.labels[: len(x)]
    y = labels if model.conditional else None
    report = {"checkpoint": args.checkpoint, "epoch": meta.get("epoch"), "examples": int(len(x))}
    report.update(evaluate.report(model, x, k=args.k, rng=rng, y=y))
    atomic_write_bytes(os.path.join(args.run, "evaluation.json"), json.dumps(report, indent=2).encode())
    for key, value in report.items():
        if not isinstance(value, list):
            print(f"{key:>20}: {value}")
    print(f"written: {os.path.join(args.run, 'evaluation.json')}")
    return 0


def command_sample(args):
    from tinyvae import plots

    model, _, train_data, _, rng = _load_run(args)
    if model.conditional and args.label is None:
        raise CommandError(f"--label is required for the conditional model {model.name!r}")
    if not model.conditional and args.label is not None:
        raise CommandError(f"--label applies to conditional models only (cvae), not to {model.name!r}")
    if model.conditional and not 0 <= args.label < model.config.n_classes:
        raise CommandError(
            f"--label must be a class in 0..{model.config.n_classes - 1} for this {model.name!r} model, "
            f"got {args.label}"
        )
    path = plots.samples_grid(
        model,
        rng,
        os.path.join(args.run, "samples.png"),
        n=args.n,
        y=args.label,
        image_shape=train_data.image_shape,
    )
    print(f"written: {path}")
    return 0


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
    "info": command_info,
    "download": command_download,
}


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like a Ctrl-C so that it is handled like one: the save in progress finishes, the run
    stays resumable, and the process exits with a message (status 143) instead of dying mid-write."""


def _raise_terminated(signum, frame):
    raise Terminated


@contextlib.contextmanager
def _interrupt_handlers():
    """Ctrl-C raises KeyboardInterrupt and SIGTERM raises Terminated inside the block, whatever handlers the
    process inherited (a job started in the background of a shell inherits SIGINT ignored)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {
        signal.SIGINT: signal.signal(signal.SIGINT, signal.default_int_handler),
        signal.SIGTERM: signal.signal(signal.SIGTERM, _raise_terminated),
    }
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    from tinyvae import backend, checkpoint, data, rundir

    user_errors = (CommandError, data.DataError, checkpoint.CheckpointError, rundir.RunDirError)
    try:
        with _interrupt_handlers():
            return COMMANDS[args.command](args)
    except (*user_errors, backend.BackendError) as error:
        parser.exit(2, f"tinyvae: error: {error}\n")
    except KeyboardInterrupt as interrupt:
        terminated = isinstance(interrupt, Terminated)
        print(
            f"\ntinyvae {args.command}: {'terminated (SIGTERM)' if terminated else 'interrupted'}",
            file=sys.stderr,
        )
        return 143 if terminated else 130


if __name__ == "__main__":
    sys.exit(main())
