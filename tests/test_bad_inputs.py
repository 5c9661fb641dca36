"""The bad-input corpus: every mistake a user of tinyvae is likely to make once, each ending in the library's
own error with a message that says what was wrong (asserted here), never a traceback from inside NumPy.

One parametrized case per row, grouped as in issue 6: engine, models, data, command line, checkpoints.
A CLI case asserts exit status 2 and the message on stderr.
"""

import io
import json
import re
import urllib.error

import numpy
import pytest

import tinyvae as tv
import tinyvae.functional as F
from tinyvae import checkpoint, cli, data, models
from tinyvae.autodiff import GraphError, check_same_array_module
from tinyvae.checkpoint import CheckpointError
from tinyvae.data import DataError
from tinyvae.gradcheck import gradcheck
from tinyvae.tensor import Tensor


def tensor(*shape, grad=False):
    return Tensor(numpy.ones(shape, dtype=numpy.float32), requires_grad=grad)


class FakeCupyArray:
    """Stands in for a CuPy array (CuPy cannot be imported here): what the checks look at is the type's
    module, which for CuPy starts with "cupy"."""

    __module__ = "cupy._core.core"

    def __init__(self, *shape):
        self.shape, self.ndim, self.dtype = shape, len(shape), numpy.dtype(numpy.float32)


def on_gpu(*shape):
    """A tensor whose data is a (fake) CuPy array, as a tensor made before a backend switch would be."""
    return Tensor._from_op(FakeCupyArray(*shape), None)


def backward_twice():
    y = (tensor(3, grad=True) * 2).sum()
    y.backward()
    y.backward()


def vae(**config):
    return models.build("vae", **{"x_dim": 4, "z_dim": 2, "hidden": (3,), **config})


def cvae():
    return models.build("cvae", x_dim=4, z_dim=2, hidden=(3,), n_classes=3)


RNG = numpy.random.default_rng(0)
X = numpy.full((2, 4), 0.5, dtype=numpy.float32)

# ---------------------------------------------------------------------------------------------------------
# Engine

ENGINE = {
    "add shapes": (lambda: tensor(2, 3) + tensor(4, 5), ValueError, r"add: shapes \(2, 3\) and \(4, 5\)"),
    "sub shapes": (lambda: tensor(2, 3) - tensor(2, 4), ValueError, r"sub: shapes \(2, 3\) and \(2, 4\)"),
    "mul shapes": (lambda: tensor(3) * tensor(4), ValueError, r"mul: shapes \(3,\) and \(4,\)"),
    "div shapes": (
        lambda: tensor(5, 1) / tensor(2, 3, 4),
        ValueError,
        r"div: shapes \(5, 1\) and \(2, 3, 4\)",
    ),
    "power shapes": (
        lambda: tensor(2, 3) ** tensor(3, 2),
        ValueError,
        r"power: shapes \(2, 3\) and \(3, 2\)",
    ),
    "broadcast names the axis": (
        lambda: tensor(3, 4, 5) + tensor(2, 5),
        ValueError,
        r"add: shapes \(3, 4, 5\) and \(2, 5\) do not broadcast: axis -2 has sizes 4 vs 2, and broadcasting "
        r"needs them equal or 1",
    ),
    "array operand shapes": (
        lambda: tensor(2, 3) * numpy.ones((3, 2), numpy.float32),
        ValueError,
        r"mul: shapes \(2, 3\) and \(3, 2\)",
    ),
    "matmul inner": (
        lambda: tensor(2, 3) @ tensor(4, 5),
        ValueError,
        r"matmul: shapes \(2, 3\) and \(4, 5\) do not align: a has 3 columns but b has 4 rows",
    ),
    "matmul batch": (
        lambda: tensor(2, 3, 4) @ tensor(5, 4, 6),
        ValueError,
        r"matmul: shapes \(2, 3, 4\) and \(5, 4, 6\) do not align: their batch dimensions \(2,\) and \(5,\)",
    ),
    "matmul scalar": (lambda: F.matmul(tensor(3), 2.0), ValueError, "matmul: both operands must be arrays"),
    "linear features": (
        lambda: F.linear(tensor(32, 785), tensor(784, 400)),
        ValueError,
        r"linear: x has shape \(32, 785\) but W expects 784 input features \(W.shape == \(784, 400\)\)",
    ),
    "linear W 1-D": (lambda: F.linear(tensor(2, 3), tensor(3)), ValueError, r"linear: W must be 2-D"),
    "linear bias": (
        lambda: F.linear(tensor(2, 3), tensor(3, 4), tensor(3)),
        ValueError,
        r"linear: b has shape \(3,\) but W has 4 output features",
    ),
    "backward non-scalar": (
        lambda: (tensor(2, 3, grad=True) * 2).backward(),
        GraphError,
        r"grad can be omitted only for a scalar output, but the output has shape \(2, 3\)",
    ),
    "backward grad shape": (
        lambda: (tensor(2, 3, grad=True) * 2).backward(numpy.ones(3)),
        GraphError,
        r"backward: grad has shape \(3,\) but the output has shape \(2, 3\)",
    ),
    "backward without grad": (
        lambda: (tensor(3) * 2).sum().backward(),
        GraphError,
        "this tensor does not require grad",
    ),
    "backward twice": (backward_twice, GraphError, "already backpropagated .*retain_graph=True"),
    "int array": (
        lambda: Tensor(numpy.arange(3)),
        TypeError,
        "Tensor: data has dtype int64, but tensors hold float32 or float64; pass dtype=numpy.float32",
    ),
    "bool array": (lambda: Tensor(numpy.array([True, False])), TypeError, "data has dtype bool"),
    "object array": (lambda: Tensor(numpy.array([None, 1])), TypeError, "data has dtype object"),
    "complex array": (lambda: Tensor(numpy.ones(2, complex)), TypeError, "data has dtype complex128"),
    "int array operand": (lambda: tensor(3) + numpy.arange(3), TypeError, "data has dtype int64"),
    "numpy + cupy": (
        lambda: tensor(2, 3) + on_gpu(2, 3),
        TypeError,
        r"add: the inputs mix NumPy and CuPy arrays \(numpy.ndarray, cupy._core.core.FakeCupyArray\)",
    ),
    "numpy @ cupy": (lambda: tensor(2, 3) @ on_gpu(3, 2), TypeError, "matmul: the inputs mix NumPy and CuPy"),
    "linear numpy/cupy": (
        lambda: F.linear(tensor(2, 3), on_gpu(3, 2)),
        TypeError,
        "linear: the inputs mix NumPy and CuPy",
    ),
    "module check": (
        lambda: check_same_array_module("op", numpy.ones(2), FakeCupyArray(2)),
        TypeError,
        r"op: the inputs mix NumPy and CuPy arrays .*tinyvae.backend.use",
    ),
    "gradcheck float32": (
        lambda: gradcheck(lambda x: x * 2, [tensor(3, grad=True)]),
        TypeError,
        "input 0 has dtype float32; gradients are checked in float64, since float32 rounding swamps",
    ),
    "gradcheck nothing": (
        lambda: gradcheck(lambda x: x * 2, [Tensor(numpy.ones(3))]),
        ValueError,
        "no input has requires_grad=True",
    ),
    "kl scalar": (lambda: F.gaussian_kl(Tensor(0.0), Tensor(0.0)), ValueError, "gaussian_kl: mu is a scalar"),
    "kl half prior": (
        lambda: F.gaussian_kl(tensor(2), tensor(2), mu_p=tensor(2)),
        ValueError,
        "give both mu_p and logvar_p, or neither",
    ),
    "soft clamp range": (lambda: F.soft_clamp(tensor(2), 3.0, -3.0), ValueError, "soft_clamp: need lo < hi"),
}

# ---------------------------------------------------------------------------------------------------------
# Models

MODELS = {
    "x features": (
        lambda: vae().loss(numpy.ones((2, 5)), RNG),
        ValueError,
        r"vae: x has shape \(2, 5\) but the model expects \(batch, 4\)",
    ),
    "x 1-D": (
        lambda: vae().reconstruct(numpy.ones(4)),
        ValueError,
        r"x has shape \(4,\) but the model expects",
    ),
    "x strings": (lambda: vae().loss(numpy.full((2, 4), "a"), RNG), TypeError, "x has dtype <U1; expected"),
    "x NaN": (
        lambda: vae().loss(numpy.where(X > 0, numpy.nan, X), RNG),
        ValueError,
        "vae: x contains NaN or infinite values",
    ),
    "x inf": (lambda: vae().encode(X * numpy.inf), ValueError, "x contains NaN or infinite values"),
    "labels missing": (
        lambda: cvae().loss(X, RNG),
        ValueError,
        r"cvae: this model is conditional; pass labels y of shape \(2,\)",
    ),
    "labels too large": (
        lambda: cvae().loss(X, RNG, y=numpy.array([0, 3])),
        ValueError,
        r"cvae: labels must lie in \[0, 3\), got values from 0 to 3",
    ),
    "labels negative": (
        lambda: cvae().loss(X, RNG, y=numpy.array([-1, 0])),
        ValueError,
        r"labels must lie in \[0, 3\), got values from -1",
    ),
    "labels float": (
        lambda: cvae().loss(X, RNG, y=numpy.array([0.5, 1.0])),
        ValueError,
        r"y must be integer labels of shape \(2,\), got shape \(2,\) and dtype float64",
    ),
    "labels wrong count": (
        lambda: cvae().loss(X, RNG, y=numpy.array([0, 1, 2])),
        ValueError,
        r"y must be integer labels of shape \(2,\), got shape \(3,\)",
    ),
    "k < 1": (
        lambda: models.build("iwae", x_dim=4, k=0),
        ValueError,
        r"IWAEConfig: k \(importance samples per example\) must be an integer >= 1, got 0",
    ),
    "z_dim < 1": (lambda: vae(z_dim=0), ValueError, "VAEConfig: z_dim must be a positive integer, got 0"),
    "x_dim bool": (lambda: vae(x_dim=True), ValueError, "x_dim must be a positive integer, got True"),
    "hidden 0": (lambda: vae(hidden=(0,)), ValueError, r"hidden sizes must be positive, got \(0,\)"),
    "codebook size < 2": (
        lambda: models.build("vqvae", x_dim=4, codebook_size=1),
        ValueError,
        "VQVAEConfig: codebook_size must be an integer >= 2, got 1",
    ),
    "beta < 0": (lambda: vae(beta=-1.0), ValueError, "VAEConfig: beta must be >= 0, got -1.0"),
    "beta NaN": (lambda: vae(beta=float("nan")), ValueError, "beta must be >= 0, got nan"),
    "free bits < 0": (lambda: vae(free_bits=-0.5), ValueError, "free_bits must be >= 0"),
    "components < 1": (
        lambda: models.build("mixture", x_dim=4, components=0),
        ValueError,
        "components must be an integer >= 1, got 0",
    ),
    "likelihood": (lambda: vae(likelihood="poisson"), ValueError, "likelihood must be one of"),
    "activation": (lambda: vae(activation="swish"), ValueError, "activation must be one of"),
    "unknown model": (lambda: models.build("gan", x_dim=4), ValueError, "unknown model 'gan'; choose one of"),
    "sample n": (lambda: vae().sample(0, RNG), ValueError, "vae: n must be a positive integer, got 0"),
    "interpolate steps": (
        lambda: vae().interpolate(X[0], X[1], steps=1),
        ValueError,
        "steps must be an integer >= 2, got 1",
    ),
    "interpolate method": (
        lambda: vae().interpolate(X[0], X[1], method="cubic"),
        ValueError,
        "method must be 'linear' or 'slerp', got 'cubic'",
    ),
}

# ---------------------------------------------------------------------------------------------------------
# Data


def offline(url, timeout):
    raise urllib.error.URLError(OSError(101, "Network is unreachable"))


def download_offline(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "_urlopen", offline)
    data.download("mnist", tmp_path / "cache")


def idx_file(tmp_path, payload):
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(payload)
    return path


IDX = bytes([0, 0, 8, 1]) + (6).to_bytes(4, "big") + bytes(range(6))

DATA = {
    "missing data dir": (
        lambda tmp_path, mp: data.load_dataset("mnist", "train", data_dir=tmp_path / "nowhere"),
        r"mnist: could not find the train files train-images-idx3-ubyte\[.gz\] .* Looked in:\n  - .*nowhere "
        r"\(does not exist\)(.|\n)*Get them with `tinyvae download mnist`",
    ),
    "truncated IDX": (
        lambda tmp_path, mp: data.read_idx(idx_file(tmp_path, IDX[:-2])),
        r"truncated IDX file: dims \(6,\) need 6 data bytes after the header, found 4",
    ),
    "IDX bad magic": (
        lambda tmp_path, mp: data.read_idx(idx_file(tmp_path, b"\x89PNG" + IDX[4:])),
        "bad magic number: an IDX file starts with bytes 0x00 0x00, found 0x89 0x50",
    ),
    "IDX too long": (
        lambda tmp_path, mp: data.read_idx(idx_file(tmp_path, IDX + b"\x00")),
        r"IDX file too long: .* \(1 extra\)",
    ),
    "unknown dataset": (
        lambda tmp_path, mp: data.load_dataset("cifar10"),
        "unknown dataset 'cifar10'; valid names are: mnist5k, mnist, fashion-mnist, shapes, ring, moons, "
        "pinwheel",
    ),
    "unknown split": (lambda tmp_path, mp: data.load_dataset("ring", "val"), "unknown split 'val'"),
    "unknown pixels": (
        lambda tmp_path, mp: data.load_dataset("mnist5k", pixels="grey"),
        "unknown pixel mode 'grey'; valid modes are: continuous, binarized-static, binarized-dynamic",
    ),
    "binarized toy": (
        lambda tmp_path, mp: data.load_dataset("ring", pixels="binarized-static"),
        "ring is a 2-D toy of real-valued points",
    ),
    "n too large": (
        lambda tmp_path, mp: data.load_dataset("mnist5k", "test", n=501),
        "n=501 but the test split has only 500 examples",
    ),
    "download offline": (
        download_offline,
        r"could not reach https://\S+train-images-idx3-ubyte.gz \(offline\?\): .*Network is unreachable\. "
        r"Copy the four IDX files",
    ),
    "download unknown": (
        lambda tmp_path, mp: data.download("ring", tmp_path),
        "cannot download 'ring'; downloadable datasets are: mnist, fashion-mnist",
    ),
}

# ---------------------------------------------------------------------------------------------------------
# Checkpoints


def save_good(tmp_path, name="good.npz"):
    model = vae()
    path = tmp_path / name
    checkpoint.save_checkpoint(str(path), model, tv.optim.Adam(model.parameters()), epoch=1)
    return path


def rewrite(tmp_path, change_meta=None, change_arrays=None, name="bad.npz"):
    """A copy of a good checkpoint with its header and/or arrays changed by the given functions."""
    with numpy.load(save_good(tmp_path)) as archive:
        arrays = {k: archive[k] for k in archive.files}
    meta = json.loads(arrays.pop("meta.json").tobytes())
    if change_meta:
        change_meta(meta)
    if change_arrays:
        change_arrays(arrays)
    arrays["meta.json"] = numpy.frombuffer(json.dumps(meta).encode(), dtype=numpy.uint8)
    path = tmp_path / name
    numpy.savez(path, **arrays)
    return path


def truncated(tmp_path):
    good = save_good(tmp_path).read_bytes()
    path = tmp_path / "truncated.npz"
    path.write_bytes(good[: len(good) * 2 // 3])
    return path


def pickled(tmp_path):
    path = tmp_path / "pickled.npz"
    numpy.savez(path, **{"meta.json": numpy.array([{"run": "os.system"}], dtype=object)})
    return path


def header_bytes(tmp_path, payload):
    path = tmp_path / "header.npz"
    numpy.savez(path, **{"meta.json": numpy.frombuffer(payload, dtype=numpy.uint8)})
    return path


def not_a_zip(tmp_path):
    path = tmp_path / "x.npz"
    path.write_bytes(b"hello, not an archive")
    return path


def plain_npz(tmp_path):
    path = tmp_path / "plain.npz"
    numpy.savez(path, weights=numpy.zeros(3))
    return path


def set_item(key, value):
    return lambda mapping: mapping.__setitem__(key, value)


CHECKPOINTS = {
    "missing file": (lambda p: p / "none.npz", checkpoint.load_model, "no such file"),
    "truncated file": (truncated, checkpoint.read_checkpoint, "unreadable, truncated or not a .npz file"),
    "not a zip": (
        lambda p: not_a_zip(p),
        checkpoint.read_checkpoint,
        "refused|unreadable",
    ),
    "pickled object": (pickled, checkpoint.read_checkpoint, "refused .* checkpoints hold plain arrays only"),
    "no header": (plain_npz, checkpoint.read_checkpoint, "no 'meta.json' header; not a tinyvae checkpoint"),
    "header not JSON": (
        lambda p: header_bytes(p, b"\xff{"),
        checkpoint.read_checkpoint,
        "the 'meta.json' header is not valid JSON",
    ),
    "header a list": (
        lambda p: header_bytes(p, b"[1, 2]"),
        checkpoint.read_checkpoint,
        "the 'meta.json' header is a JSON list, not an object",
    ),
    "other format": (
        lambda p: rewrite(p, set_item("format", "keras")),
        checkpoint.read_checkpoint,
        "not a tinyvae checkpoint \\(format 'keras'\\)",
    ),
    "other format version": (
        lambda p: rewrite(p, set_item("format_version", 2)),
        checkpoint.read_checkpoint,
        "format version 2, but this tinyvae reads version 1",
    ),
    "unknown model": (
        lambda p: rewrite(p, set_item("model", "gan")),
        checkpoint.load_model,
        "unknown model 'gan'; known: ",
    ),
    "missing key": (
        lambda p: rewrite(p, change_arrays=lambda a: a.pop("model/decoder.layers.0.bias")),
        checkpoint.load_model,
        r"does not fit a 'vae' model: .*missing keys \['decoder.layers.0.bias'\]",
    ),
    "unexpected key": (
        lambda p: rewrite(p, change_arrays=set_item("model/extra", numpy.zeros(2))),
        checkpoint.load_model,
        r"does not fit a 'vae' model: .*unexpected keys \['extra'\]",
    ),
    "wrong shape": (
        lambda p: rewrite(p, change_arrays=set_item("model/decoder.layers.0.bias", numpy.zeros(7))),
        checkpoint.load_model,
        r"'decoder.layers.0.bias' has shape \(7,\) in the state but the parameter has shape \(3,\)",
    ),
    "config of another size": (
        lambda p: rewrite(p, lambda m: m["config"].__setitem__("x_dim", 5)),
        checkpoint.load_model,
        r"does not fit a 'vae' model: .*has shape \(4, 3\) in the state but the parameter has shape \(5, 3\)",
    ),
    "config too large": (
        lambda p: rewrite(p, lambda m: m["config"].__setitem__("x_dim", 10**9)),
        checkpoint.load_model,
        "its config asks for arrays of 3000000000 numbers but the file holds only",
    ),
    "bad config field": (
        lambda p: rewrite(p, lambda m: m["config"].__setitem__("beta", -1)),
        checkpoint.load_model,
        "does not fit a 'vae' model: VAEConfig: beta must be >= 0",
    ),
}


# ---------------------------------------------------------------------------------------------------------
# Command line (each run in-process: exit status 2 and the message on stderr)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two finished one-epoch runs on the ring toy: a VAE and a conditional VAE."""
    root = tmp_path_factory.mktemp("runs")
    for model in ("vae", "cvae"):
        args = ["--model", model, "--data", "ring", "--limit", "64", "--epochs", "1"]
        assert cli.main(["train", *args, "--no-progress", "--no-plots", "--out", str(root / model)]) == 0
    return root


def with_checkpoint(runs, tmp_path, edit):
    """A copy of the VAE run whose best.npz has its header changed by ``edit``; returns the run."""
    run = tmp_path / "edited"
    run.mkdir()
    (run / "config.json").write_bytes((runs / "vae" / "config.json").read_bytes())
    for name in ("best.npz", "last.npz"):
        with numpy.load(runs / "vae" / name) as archive:
            arrays = {k: archive[k] for k in archive.files}
        meta = json.loads(arrays["meta.json"].tobytes())
        edit(meta)
        arrays["meta.json"] = numpy.frombuffer(json.dumps(meta).encode(), dtype=numpy.uint8)
        buffer = io.BytesIO()
        numpy.savez(buffer, **arrays)
        (run / name).write_bytes(buffer.getvalue())
    return run


def other_model(runs, tmp_path):
    return with_checkpoint(runs, tmp_path, set_item("model", "iwae"))


def other_version(runs, tmp_path):
    return with_checkpoint(runs, tmp_path, set_item("format_version", 0))


def foreign_folder(runs, tmp_path):
    """A folder with someone's files in it, not a run directory."""
    folder = tmp_path / "thesis"
    folder.mkdir()
    (folder / "chapter1.tex").write_text("precious")
    return folder


NEW = "{tmp}/new"
CLI = {
    "epochs 0": (["train", "--epochs", "0"], "argument --epochs: expected a positive integer, got 0"),
    "epochs text": (
        ["train", "--epochs", "ten"],
        "argument --epochs: expected a positive integer, got 'ten'",
    ),
    "batch size 0": (["train", "--batch-size", "0"], "argument --batch-size: expected a positive integer"),
    "lr 0": (["train", "--lr", "0"], "argument --lr: expected a finite number > 0, got 0"),
    "lr negative": (["train", "--lr", "-1"], "argument --lr: expected a finite number > 0, got -1"),
    "lr nan": (["train", "--lr", "nan"], "argument --lr: expected a finite number > 0, got nan"),
    "lr inf": (["train", "--lr", "inf"], "argument --lr: expected a finite number > 0, got inf"),
    "lr text": (["train", "--lr", "fast"], "argument --lr: expected a number, got 'fast'"),
    "latent dim 0": (["train", "--latent-dim", "0"], "argument --latent-dim: expected a positive integer"),
    "hidden text": (
        ["train", "--hidden", "400,abc"],
        "argument --hidden: expected comma-separated layer sizes",
    ),
    "hidden 0": (["train", "--hidden", "0"], "argument --hidden: expected positive layer sizes"),
    "likelihood": (["train", "--likelihood", "poisson"], "argument --likelihood: invalid choice: 'poisson'"),
    "pixels": (["train", "--pixels", "grey"], "argument --pixels: invalid choice: 'grey'"),
    "beta negative": (["train", "--beta", "-0.5"], "VAEConfig: beta must be >= 0, got -0.5"),
    "k 0": (["train", "--model", "iwae", "--k", "0"], "IWAEConfig: k .* must be an integer >= 1, got 0"),
    "k for vae": (["train", "--data", "ring", "--k", "5"], "--k does not apply to --model vae"),
    "codebook 1": (
        ["train", "--model", "vqvae", "--data", "ring", "--codebook-size", "1"],
        "VQVAEConfig: codebook_size must be an integer >= 2, got 1",
    ),
    "components 0": (
        ["train", "--model", "mixture", "--components", "0"],
        "MixtureVAEConfig: components must be an integer >= 1, got 0",
    ),
    "components for vae": (["train", "--components", "3"], "--components does not apply to --model vae"),
    "flow steps -1": (["train", "--model", "flow", "--flow-steps", "-1"], "FlowVAEConfig: flow_steps must"),
    "seed text": (["train", "--seed", "x"], "argument --seed: expected an integer seed, got 'x'"),
    "limit 0": (["train", "--limit", "0"], "argument --limit: expected a positive integer, got 0"),
    "model": (["train", "--model", "gan"], "argument --model: invalid choice: 'gan'"),
    "data": (["train", "--data", "cifar"], "argument --data: invalid choice: 'cifar'"),
    "data dir missing": (
        ["train", "--data", "mnist", "--data-dir", "{tmp}/nowhere"],
        "mnist: could not find the test files (.|\\n)*Get them with `tinyvae download mnist`",
    ),
    "run exists": (
        ["train", "--data", "ring", "--out", "{runs}/vae"],
        "run directory .*vae already exists; pass --resume to continue it or --overwrite to start over",
    ),
    "resume nothing": (
        ["train", "--resume", "--out", NEW],
        "--resume: .*new has no last.npz to continue from",
    ),
    "overwrite non-run": (
        ["train", "--overwrite", "--out", foreign_folder],
        "--overwrite refused: .* is not a tinyvae run directory \\(no config.json\\).*; nothing was deleted",
    ),
    "resume other model": (
        ["train", "--resume", "--data", "ring", "--out", other_model],
        "last.npz: holds a 'iwae' model, expected 'vae'",
    ),
    "resume other version": (
        ["train", "--resume", "--data", "ring", "--out", other_version],
        "last.npz: format version 0, but this tinyvae reads version 1",
    ),
    "sample other model": (["sample", other_model], "last.npz: holds a 'iwae' model, expected 'vae'"),
    "sample other version": (["sample", other_version], "format version 0, but this tinyvae reads version 1"),
    "not a run": (["evaluate", "{tmp}"], "is not a tinyvae run directory \\(no config.json\\)"),
    "evaluate k 0": (["evaluate", "{runs}/vae", "--k", "0"], "argument --k: expected a positive integer"),
    "evaluate limit 0": (["evaluate", "{runs}/vae", "--limit", "0"], "argument --limit: expected a positive"),
    "checkpoint name": (["sample", "{runs}/vae", "--checkpoint", "worst"], "invalid choice: 'worst'"),
    "sample n 0": (["sample", "{runs}/vae", "--n", "0"], "argument --n: expected a positive integer, got 0"),
    "sample seed": (
        ["sample", "{runs}/vae", "--seed", "1.5"],
        "argument --seed: expected an integer seed, got '1.5'",
    ),
    "label missing": (["sample", "{runs}/cvae"], "--label is required for the conditional model 'cvae'"),
    "label range": (
        ["sample", "{runs}/cvae", "--label", "99"],
        "--label must be a class in 0..7 for this 'cvae' model, got 99",
    ),
    "label not conditional": (
        ["sample", "{runs}/vae", "--label", "1"],
        "--label applies to conditional models only",
    ),
    "reconstruct n 0": (
        ["reconstruct", "{runs}/vae", "--n", "0"],
        "argument --n: expected a positive integer",
    ),
    "interpolate steps 1": (
        ["interpolate", "{runs}/vae", "--steps", "1"],
        "argument --steps: expected an integer >= 2 \\(the two ends of the path\\), got 1",
    ),
    "interpolate method": (["interpolate", "{runs}/vae", "--method", "cubic"], "invalid choice: 'cubic'"),
    "download name": (["download", "cifar"], "argument name: invalid choice: 'cifar'"),
    "no command": ([], "the following arguments are required: COMMAND"),
}


# ---------------------------------------------------------------------------------------------------------
# The tests


@pytest.mark.parametrize("case", list(ENGINE))
def test_engine_refuses_with_a_message(case):
    """Each engine misuse raises the engine's own error naming the op (and the shapes or dtypes involved)."""
    action, error, message = ENGINE[case]
    with pytest.raises(error, match=message):
        action()


@pytest.mark.parametrize("case", list(MODELS))
def test_models_refuse_with_a_message(case):
    """Each bad config or model input raises a ValueError/TypeError naming the model and the field."""
    action, error, message = MODELS[case]
    with pytest.raises(error, match=message):
        action()


@pytest.mark.parametrize("case", list(DATA))
def test_data_refuses_with_a_message(case, tmp_path, monkeypatch):
    """Each data problem raises DataError saying what was expected, what was found and what to do."""
    action, message = DATA[case]
    with pytest.raises(DataError, match=message):
        action(tmp_path, monkeypatch)


@pytest.mark.parametrize("case", list(CHECKPOINTS))
def test_checkpoints_refuse_with_a_message(case, tmp_path):
    """Each bad checkpoint raises CheckpointError naming the file and what is wrong; nothing is unpickled."""
    make, load, message = CHECKPOINTS[case]
    path = make(tmp_path)
    with pytest.raises(CheckpointError, match=message) as error:
        load(str(path))
    assert str(error.value).startswith(f"checkpoint {path}")


@pytest.mark.parametrize("case", list(CLI))
def test_cli_refuses_with_exit_status_2_and_a_message(case, runs, tmp_path, capsys):
    """Each invalid option value or unusable run ends with exit status 2 and `error: <message>` on stderr,
    without a traceback and before any training."""
    args = [
        str(arg(runs, tmp_path)) if callable(arg) else arg.format(tmp=tmp_path, runs=runs)
        for arg in CLI[case][0]
    ]
    if args and args[0] == "train" and "--out" not in args:
        args += ["--out", str(tmp_path / "new")]
    capsys.readouterr()
    try:
        status = cli.main(args)
    except SystemExit as stop:
        status = stop.code
    err = capsys.readouterr().err
    assert status == 2, err
    assert re.search(CLI[case][1], err), err
    assert "Traceback" not in err


def test_corpus_size():
    """The corpus covers at least every row of issue 6 (the count is reported in the issue's note)."""
    total = len(ENGINE) + len(MODELS) + len(DATA) + len(CHECKPOINTS) + len(CLI)
    assert total >= 100, total
