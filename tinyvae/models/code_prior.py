"""An autoregressive prior over the code indices of a trained VQ-VAE: a small causal transformer.

The VQ-VAE (``tinyvae/models/vqvae.py``) is trained with a uniform prior over its K codes, which makes the KL
term of its bound a constant L log K (van den Oord et al. 2017, Sec. 3.1). Their Sec. 3.2 and 4 then fit a
second model, after the first is trained and frozen: an autoregressive prior p(c) over the L code indices
c = (c_1, ..., c_L) that the encoder assigns to each training example. Sampling c from it and decoding gives
new examples; and with it the bound improves by Σ_x [log p(c(x)) + L log K], since for the one-hot posterior
q(z = c(x) | x) = 1 the KL term is −log p(c(x)).

The prior here is a decoder-only transformer (Vaswani et al. 2017) read as a chain of conditionals,

    log p(c) = Σ_i log p(c_i | c_1, ..., c_{i−1}),

each a softmax over the K codes. Position i sees the code before it (a learned start token at i = 1: the
sequence is "shifted right") plus a learned position vector, and its causal attention (``F.causal_attention``)
reaches only positions ≤ i, so the output at i depends on c_<i alone and the product of the conditionals is
a normalised distribution over all K^L sequences (``tests/test_code_prior.py`` sums it exactly). The blocks
are pre-norm, as in GPT-2 (Radford et al. 2019): x + attention(LayerNorm(x)), then x + MLP(LayerNorm(x)).

Codes are NumPy integer arrays (B, L) with values in [0, K). Not registered as a model: it is not a VAE but
a second stage attached to a VQ-VAE run, imported as ``from tinyvae.models.code_prior import ...``.
:class:`LearnedCodes` makes it the VQ-VAE's p(z) for sampling; ``tinyvae train-prior RUN`` fits one to a
run's codes and saves it as ``RUN/code_prior.npz`` (:func:`save_prior`, read back by :func:`load_prior` as
warily as a checkpoint); ``examples/vqvae_prior.py`` is the lesson.
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import numbers
import os
import zipfile

import numpy

import tinyvae.functional as F
from tinyvae import checkpoint, nn, optim
from tinyvae.autodiff import no_grad
from tinyvae.backend import blas_threads, to_host
from tinyvae.checkpoint import CheckpointError
from tinyvae.files import atomic_write_bytes
from tinyvae.models.base import _a, _is_integer, check_choice, check_integer, config_from_dict
from tinyvae.models.priors import Prior
from tinyvae.tensor import Tensor, host_array


@dataclasses.dataclass
class CodePriorConfig:
    """The settings a :class:`TransformerCodePrior` is built from; saved beside its weights."""

    codebook_size: int  # K, the number of codes of the VQ-VAE (each position is a softmax over K)
    length: int  # L, the code vectors per example: the sequence length (the VQ-VAE's latent_vectors)
    width: int = 64  # D, the size of every position's vector in the residual stream
    heads: int = 4  # H, attention heads per layer; each works on D / H numbers
    layers: int = 2  # transformer blocks
    mlp_hidden: int | None = None  # hidden units of each block's MLP; None means 4 · width (Vaswani Sec. 3.3)
    seed: int = 0  # seeds the weight initialisation
    dtype: str = "float32"  # "float32" to train, "float64" for exact checks

    def __post_init__(self):
        if self.mlp_hidden is None and _is_integer(self.width):
            self.mlp_hidden = 4 * int(self.width)
        self.validate()
        for field in ("codebook_size", "length", "width", "heads", "layers", "mlp_hidden", "seed"):
            setattr(self, field, int(getattr(self, field)))  # NumPy integers become plain ints (JSON-able)

    def validate(self):
        """Refuse every field a prior could not be built from (ValueError naming field and value)."""
        check_integer(self, "codebook_size", 2)
        for field in ("length", "width", "heads", "layers", "mlp_hidden"):
            check_integer(self, field, 1)
        if self.width % self.heads:
            raise ValueError(
                f"{type(self).__name__}: width must be divisible by heads (each head gets width / heads "
                f"numbers), got width={self.width} and heads={self.heads}"
            )
        check_integer(self, "seed", 0)
        check_choice(self, "dtype", ("float32", "float64"))

    def to_dict(self):
        """Plain JSON-able values."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values):
        """The config from a dict of its fields (as ``to_dict`` writes it); unknown or missing fields and
        bad values are refused with a ValueError naming them."""
        return config_from_dict(cls, values)


# ---------------------------------------------------------------------------------------------------------
# The layers of a block.


class LayerNorm(nn.Module):
    """``F.layer_norm`` with its gain (starting at 1) and bias (starting at 0) as parameters."""

    def __init__(self, features, dtype):
        super().__init__()
        self.gain = nn.Parameter(numpy.ones(features, dtype=dtype))  # (D,)
        self.bias = nn.Parameter(numpy.zeros(features, dtype=dtype))  # (D,)

    def forward(self, x):
        return F.layer_norm(x, self.gain, self.bias)


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention (Vaswani et al. 2017, Sec. 3.2.2): queries, keys and values are
    three linear maps of x, split into H heads of D / H numbers; each head attends causally on its own;
    the heads' outputs are joined and mapped back to D by a fourth linear map."""

    def __init__(self, width, heads, rng, dtype):
        super().__init__()
        self.heads = heads
        self.query = nn.Linear(width, width, rng=rng, dtype=dtype)
        self.key = nn.Linear(width, width, rng=rng, dtype=dtype)
        self.value = nn.Linear(width, width, rng=rng, dtype=dtype)
        self.output = nn.Linear(width, width, rng=rng, dtype=dtype)

    def forward(self, x):
        B, L, D = x.shape
        H = self.heads

        def split_heads(t):  # (B, L, D) -> (B, H, L, D/H)
            return t.reshape(B, L, H, D // H).transpose(0, 2, 1, 3)

        q, k, v = split_heads(self.query(x)), split_heads(self.key(x)), split_heads(self.value(x))
        heads = F.causal_attention(q, k, v)  # (B, H, L, D/H)
        joined = heads.transpose(0, 2, 1, 3).reshape(B, L, D)  # (B, L, D)
        return self.output(joined)  # (B, L, D)


class Block(nn.Module):
    """One pre-norm transformer block: x + attention(LayerNorm(x)), then x + MLP(LayerNorm(x)). Normalising
    the input of each branch rather than the sum (Vaswani et al.'s original order) leaves the residual path
    an identity, which trains without a learning-rate warm-up (Xiong et al. 2020)."""

    def __init__(self, width, heads, mlp_hidden, rng, dtype):
        super().__init__()
        self.attention_norm = LayerNorm(width, dtype)
        self.attention = CausalSelfAttention(width, heads, rng, dtype)
        self.mlp_norm = LayerNorm(width, dtype)
        self.mlp = nn.MLP([width, mlp_hidden, width], activation="relu", rng=rng, dtype=dtype)

    def forward(self, x):
        x = x + self.attention(self.attention_norm(x))  # (B, L, D)
        return x + self.mlp(self.mlp_norm(x))  # (B, L, D)


# ---------------------------------------------------------------------------------------------------------
# The prior.


class TransformerCodePrior(nn.Module):
    """p(c) = Π_i p(c_i | c_<i) over sequences of L codes in [0, K), a causal transformer (see the module
    docstring). ``log_prob`` is differentiable in the parameters; ``fit`` trains them by maximum likelihood
    with Adam; ``sample`` draws sequences position by position."""

    def __init__(self, config):
        super().__init__()
        if not isinstance(config, CodePriorConfig):
            raise TypeError(f"TransformerCodePrior needs a CodePriorConfig, got {type(config).__name__}")
        config.validate()  # a field may have been changed since the config was made
        self.config = config
        self.dtype = numpy.dtype(config.dtype)
        K, L, D = config.codebook_size, config.length, config.width
        rng = numpy.random.default_rng(config.seed)
        # Rows 0..K−1: one vector per code; row K: the start token, the input at position 1. Entries are
        # N(0, 1), the scale of the LayerNorm outputs that the blocks add to them.
        self.start_token = K
        self.token_embedding = nn.Parameter(rng.standard_normal((K + 1, D)).astype(self.dtype))  # (K+1, D)
        self.position_embedding = nn.Parameter(rng.standard_normal((L, D)).astype(self.dtype))  # (L, D)
        self.blocks = [
            Block(D, config.heads, config.mlp_hidden, rng, self.dtype) for _ in range(config.layers)
        ]
        self.final_norm = LayerNorm(D, self.dtype)
        self.head = nn.Linear(D, K, rng=rng, dtype=self.dtype)  # logits of the next code

    # ----- the conditionals -----
    def _log_conditionals(self, inputs):
        """log p(· | c_<i) for each position i of ``inputs`` (B, m): the start token then m − 1 codes, m ≤ L.
        A Tensor (B, m, K)."""
        m = inputs.shape[1]
        xp = self.token_embedding.xp
        x = F.embedding(self.token_embedding, xp.asarray(inputs))  # (B, m, D)
        x = x + self.position_embedding[:m]  # (B, m, D)
        for block in self.blocks:
            x = block(x)  # (B, m, D)
        logits = self.head(self.final_norm(x))  # (B, m, K)
        return F.log_softmax(logits, axis=-1)  # (B, m, K)

    def _with_start_token(self, prefix):
        """(B, n) codes → (B, n + 1) inputs: the start token, then the codes (the "shift right")."""
        start = numpy.full((prefix.shape[0], 1), self.start_token, dtype=numpy.int64)  # (B, 1)
        return numpy.concatenate([start, prefix], axis=1)  # (B, n + 1)

    def log_prob(self, codes):
        """log p(c) = Σ_i log p(c_i | c_<i) in nats, a Tensor (B,) for codes (B, L), differentiable in the
        parameters. One pass over all L positions: causal attention keeps position i blind to c_≥i."""
        codes = self._check_codes(codes, "log_prob")
        B, L = codes.shape
        log_p = self._log_conditionals(self._with_start_token(codes[:, :-1]))  # (B, L, K)
        xp = log_p.xp
        rows, positions = xp.arange(B)[:, None], xp.arange(L)[None, :]  # (B, 1), (1, L)
        picked = log_p[rows, positions, xp.asarray(codes)]  # (B, L): log p(c_i | c_<i)
        return picked.sum(axis=1)  # (B,)

    def next_code_log_probs(self, prefix):
        """log p(c_{n+1} = k | c_1..c_n) for k = 0..K−1, a Tensor (B, K), from ``prefix`` (B, n), 0 ≤ n < L.
        Runs the network on the prefix alone (n + 1 positions), independently of :meth:`log_prob`."""
        prefix = self._check_codes(prefix, "next_code_log_probs", "prefix", prefix=True)
        return self._log_conditionals(self._with_start_token(prefix))[:, -1]  # (B, K)

    # ----- sampling -----
    def sample(self, n, rng, temperature=1.0):
        """n sequences of L codes drawn ancestrally, c_1 ~ p(c_1), then c_2 ~ p(c_2 | c_1), ...: an int64
        array (n, L). Each step reruns the network on the whole prefix (L is small, and it keeps the code
        one path). ``temperature`` T divides the log-probabilities of each conditional before it is
        renormalised: T < 1 sharpens it, T > 1 flattens it, T = 1 samples the model itself."""
        if not _is_integer(n) or n < 1:
            raise ValueError(f"TransformerCodePrior.sample: n must be a positive integer, got {n!r}")
        if not isinstance(rng, numpy.random.Generator):
            raise TypeError(
                f"TransformerCodePrior.sample: rng must be a numpy.random.Generator, got {_a(rng)}; pass "
                "numpy.random.default_rng(seed)"
            )
        if not (_is_real(temperature) and temperature > 0 and math.isfinite(temperature)):
            raise ValueError(
                "TransformerCodePrior.sample: temperature must be a positive finite number, got "
                f"{temperature!r}"
            )
        codes = numpy.zeros((int(n), self.config.length), dtype=numpy.int64)  # (n, L)
        with no_grad():
            for i in range(self.config.length):
                log_p = self.next_code_log_probs(codes[:, :i]).numpy().astype(numpy.float64)  # (n, K)
                codes[:, i] = draw_categorical(log_p / temperature, rng)
        return codes

    # ----- evaluation and training -----
    def _mean_nats_per_code(self, codes, batch_size=256):
        """Mean over sequences of −log p(c) / L, without a graph, ``batch_size`` sequences at a time (the
        attention weights of a batch take B·H·L² numbers)."""
        total = 0.0
        with no_grad():
            for start in range(0, len(codes), batch_size):
                total -= float(
                    self.log_prob(codes[start : start + batch_size]).numpy().sum(dtype=numpy.float64)
                )
        return total / (len(codes) * self.config.length)

    def bits_per_code(self, codes, batch_size=256):
        """Mean −log₂ p(c) / L over the sequences ``codes`` (B, L): the average code length, in bits, of an
        entropy coder driven by the prior; log₂ K for the uniform prior of the VQ-VAE's own bound."""
        codes = self._check_codes(codes, "bits_per_code")
        return self._mean_nats_per_code(
            codes, _positive_int("bits_per_code", "batch_size", batch_size)
        ) / math.log(2)

    def fit(self, codes, epochs, batch_size=128, lr=1e-3, rng=None, progress=None, held_out=None):
        """Maximum likelihood: Adam (Kingma & Ba 2015) on the mean −log p(c) / L (nats per code) of
        shuffled mini-batches of ``codes`` (N, L), for ``epochs`` passes.

        ``rng`` (a Generator or an int seed; None uses ``config.seed``) shuffles the batches, so a fit is
        deterministic given it and the config. Returns a list with one dict per epoch: ``epoch``, ``steps``
        (Adam steps so far), ``train_nats_per_code`` (the mean training loss over the epoch, as the weights
        moved) and, when ``held_out`` codes are given, ``held_out_nats_per_code`` (at the epoch's end).
        ``progress``, if given, is called with each dict as the epoch ends.
        """
        codes = self._check_codes(codes, "fit")
        if held_out is not None:
            held_out = self._check_codes(held_out, "fit", "held_out")
        epochs = _positive_int("fit", "epochs", epochs)
        batch_size = _positive_int("fit", "batch_size", batch_size)
        if not (_is_real(lr) and lr > 0 and math.isfinite(lr)):
            raise ValueError(f"TransformerCodePrior.fit: lr must be a positive finite number, got {lr!r}")
        if progress is not None and not callable(progress):
            raise TypeError(
                f"TransformerCodePrior.fit: progress must be a function or None, got {_a(progress)}"
            )
        rng = numpy.random.default_rng(self.config.seed) if rng is None else nn.as_generator(rng)
        optimizer = optim.Adam(self.parameters(), lr=lr)
        N, L = codes.shape
        history = []
        for epoch in range(1, epochs + 1):
            order = rng.permutation(N)
            total = 0.0
            for start in range(0, N, batch_size):
                batch = codes[order[start : start + batch_size]]  # (b, L)
                loss = -self.log_prob(batch).mean() / L  # nats per code
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                total += float(loss.item()) * len(batch)
            record = {"epoch": epoch, "steps": optimizer.steps, "train_nats_per_code": total / N}
            if held_out is not None:
                record["held_out_nats_per_code"] = self._mean_nats_per_code(held_out)
            history.append(record)
            if progress is not None:
                progress(record)
        return history

    # ----- input checks -----
    def _check_codes(self, codes, method, name="codes", prefix=False):
        """``codes`` as an int64 NumPy array (B, L) (or (B, n) with n < L for a prefix) with values in
        [0, K), or a TypeError / ValueError naming the method, the argument, its shape and the range."""
        where = f"TransformerCodePrior.{method}"
        K, L = self.config.codebook_size, self.config.length
        expected = f"(batch, n) with 0 <= n < {L}" if prefix else f"(batch, {L})"
        if codes is None or isinstance(codes, Tensor):
            got = "None" if codes is None else f"a Tensor of shape {codes.shape} (Tensors hold floats)"
            raise TypeError(f"{where}: {name} must be an integer array of shape {expected}, got {got}")
        array = (
            codes.get() if hasattr(codes, "get") else numpy.asarray(codes)
        )  # a CuPy array comes to main memory
        if array.dtype.kind not in "iu":
            raise TypeError(
                f"{where}: {name} must be an integer array of shape {expected}, got dtype {array.dtype} "
                f"(shape {array.shape}); code indices are whole numbers in [0, {K})"
            )
        width_ok = array.ndim == 2 and (array.shape[1] < L if prefix else array.shape[1] == L)
        if not width_ok or array.shape[0] == 0:
            raise ValueError(
                f"{where}: {name} has shape {array.shape} but this prior models sequences of length "
                f"L = {L}; expected {expected} with batch >= 1"
            )
        if array.size:
            low, high = int(array.min()), int(array.max())
            if low < 0 or high >= K:
                raise ValueError(
                    f"{where}: {name} (shape {array.shape}) holds values from {low} to {high} but the "
                    f"codebook has K = {K} codes; expected values in [0, {K})"
                )
        return array.astype(numpy.int64, copy=False)


def draw_categorical(logits, rng):
    """One index per row of ``logits`` (n, K), drawn with probability softmax(logits) by inverting the
    cumulative sum with one uniform number per row (a code of zero probability is never drawn)."""
    weights = numpy.exp(logits - logits.max(axis=1, keepdims=True))  # (n, K), the largest is 1
    cumulative = numpy.cumsum(weights, axis=1)  # (n, K)
    u = rng.random(len(logits))[:, None] * cumulative[:, -1:]  # (n, 1), uniform on [0, total)
    index = (cumulative <= u).sum(axis=1)  # the first k with cumulative_k > u
    return numpy.minimum(index, logits.shape[1] - 1)  # u rounded up onto the total: the last code


def _is_real(value):
    return isinstance(value, numbers.Real) and not isinstance(value, bool | numpy.bool_)


def _positive_int(method, name, value):
    if not _is_integer(value) or value < 1:
        raise ValueError(f"TransformerCodePrior.{method}: {name} must be a positive integer, got {value!r}")
    return int(value)


# ---------------------------------------------------------------------------------------------------------
# The prior as the VQ-VAE's p(z), and the BLAS threads it trains best with.


class LearnedCodes(Prior):
    """p(z) of a VQ-VAE once its second stage is fitted: codes c ~ ``prior`` (a :class:`TransformerCodePrior`)
    looked up in the codebook, z = (e_{c_1}, ..., e_{c_L}). It replaces ``UniformCodes`` (the untrained
    prior of the bound) for sampling, as van den Oord et al. (2017, Sec. 4) sample their PixelCNN prior and
    decode. ``codebook()`` returns the current (K, D) codes."""

    description = "a transformer prior over the codes"

    def __init__(self, prior, codebook):
        self.prior, self.codebook = prior, codebook

    def sample(self, n, rng):
        """(n, L·D): L codes drawn from the transformer for each sample, looked up and concatenated."""
        with blas_threads(1):  # small matrices (see blas_threads)
            indices = self.prior.sample(n, rng)  # (n, L)
        return self.codebook()[indices].reshape(n, -1)  # (n, L·D)

    def log_prob(self, z):
        """log p(c) for the codes c nearest to the L vectors of each z (n, L·D): exact for z made of codes,
        which are the only points this prior gives mass to. A Tensor (n,), in nats, not differentiable."""
        codes = to_host(self.codebook())  # (K, D); this evaluation runs on the host
        data = host_array(z)
        vectors = data.reshape(len(data), self.prior.config.length, codes.shape[1])  # (n, L, D)
        distances = ((vectors[:, :, None, :] - codes[None, None]) ** 2).sum(axis=-1)  # (n, L, K)
        with no_grad():
            return Tensor(self.prior.log_prob(distances.argmin(axis=-1)).numpy())


# ---------------------------------------------------------------------------------------------------------
# Saving and loading: one .npz beside the run's checkpoints, read as warily as they are.
#
# Layout: ``meta.json`` (UTF-8 JSON as a uint8 array: the format, the CodePriorConfig, the checkpoint the
# codes came from and what the fit measured) and ``prior/<name>`` (the parameters). The loader reuses the
# checkpoint reader's steps (tinyvae/checkpoint.py): the members' .npy headers are read and checked against
# the bytes the zip directory records, a compression bomb is refused, the config must account for exactly
# the numbers the file declares before the prior is built, every member must be one of its parameters in
# its shape and dtype, and every value must be finite. Each failure is a PriorFileError naming the file.

PRIOR_FORMAT = "tinyvae-code-prior"
PRIOR_FORMAT_VERSION = 1
PRIOR_META_LIMIT = 1 << 20  # bytes of JSON header; a fit's history is about 100 bytes an epoch
_PRIOR_FIELDS = {  # header fields tinyvae writes: (check, what it must be)
    "checkpoint": (lambda v: v in ("best", "last"), '"best" or "last"'),
    "checkpoint_epoch": (lambda v: _is_integer(v) and v >= 0, "an integer >= 0"),
    "checkpoint_sha256": (
        lambda v: isinstance(v, str) and len(v) == 64 and all(c in "0123456789abcdef" for c in v),
        "64 hexadecimal digits",
    ),
    "test_bits_per_code": (lambda v: _is_real(v) and math.isfinite(v) and v >= 0, "a finite number >= 0"),
}


class PriorFileError(CheckpointError):
    """A code-prior file that cannot be used: missing, truncated, forged, or fitted to another codebook.
    A CheckpointError, so the command line reports it the same way (one line, exit status 2)."""


def parameter_count(config):
    """The exact number of parameters of a :class:`TransformerCodePrior` of ``config``, from the config
    alone (Python integers: a forged config cannot overflow it). The loader compares it with the numbers a
    file declares before building anything."""
    K, L, D, M = config.codebook_size, config.length, config.width, config.mlp_hidden
    block = 2 * D + 4 * (D * D + D) + 2 * D + (D * M + M) + (M * D + D)  # norms, q/k/v/out, MLP
    return (K + 1) * D + L * D + config.layers * block + 2 * D + (D * K + K)


def save_prior(path, prior, **meta):
    """Write ``prior`` (config and weights) and ``meta`` (JSON-able values) to ``path`` atomically: the
    file at ``path`` is the old one or the new one, never a mix (``tinyvae.files.atomic_write_bytes``)."""
    state = prior.state_dict()
    for key, value in state.items():
        if not numpy.isfinite(value).all():
            raise PriorFileError(f"code prior {path}: not written: parameter '{key}' is not finite")
    header = {
        "format": PRIOR_FORMAT,
        "format_version": PRIOR_FORMAT_VERSION,
        "config": prior.config.to_dict(),
        **meta,
    }
    arrays = {"meta.json": numpy.frombuffer(json.dumps(header).encode("utf-8"), dtype=numpy.uint8)}
    arrays.update({f"prior/{key}": value for key, value in state.items()})
    buffer = io.BytesIO()
    numpy.savez(buffer, **arrays)
    atomic_write_bytes(path, buffer.getvalue())


def load_prior(path, codebook_size=None, length=None):
    """``(prior, meta)`` from a file :func:`save_prior` wrote, or a :class:`PriorFileError` saying why.

    ``codebook_size`` and ``length``, when given, are the K and L of the VQ-VAE the prior is for: a prior
    over another codebook or sequence length is refused, naming both."""
    if not os.path.isfile(path):
        found = "no such file" if not os.path.lexists(path) else "not a regular file"
        raise PriorFileError(f"code prior {path}: {found}")
    try:
        with zipfile.ZipFile(path) as archive:
            members = checkpoint._read_member_headers(path, archive)
            checkpoint._check_inflation(path, members, os.path.getsize(path))
            meta = _read_prior_meta(path, archive, members)
            prior = _build_checked_prior(path, meta, members, codebook_size, length)
            state = {
                key[len("prior/") :]: checkpoint._read_array(path, archive, key, member)
                for key, member in members.items()
                if key != "meta.json"
            }
    except PriorFileError:
        raise
    except CheckpointError as error:  # the checkpoint reader's words, said of this file
        raise PriorFileError(str(error).replace(f"checkpoint {path}:", f"code prior {path}:", 1)) from None
    except checkpoint.DAMAGED_ARCHIVE_ERRORS as e:
        raise PriorFileError(
            f"code prior {path}: unreadable, truncated or not a .npz file ({type(e).__name__}: {e})"
        ) from None
    for key, value in state.items():
        if not numpy.isfinite(value).all():
            raise PriorFileError(f"code prior {path}: parameter '{key}' holds non-finite values (corrupt)")
    prior.load_state_dict(state)
    return prior, meta


def _read_prior_meta(path, archive, members):
    member = members.get("meta.json")
    if member is None:
        raise PriorFileError(f"code prior {path}: no 'meta.json' header; not a tinyvae code prior")
    if member.dtype != numpy.uint8 or len(member.shape) != 1 or member.nbytes > PRIOR_META_LIMIT:
        raise PriorFileError(
            f"code prior {path}: the 'meta.json' header is {member.describe()}; expected UTF-8 bytes (a 1-D "
            f"uint8 array) of at most {PRIOR_META_LIMIT} bytes"
        )
    text = checkpoint._read_array(path, archive, "meta.json", member).tobytes()
    try:
        meta = json.loads(text.decode("utf-8"), parse_int=checkpoint._parse_int)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise PriorFileError(f"code prior {path}: the 'meta.json' header is not valid JSON") from None
    if not isinstance(meta, dict) or meta.get("format") != PRIOR_FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise PriorFileError(f"code prior {path}: not a tinyvae code prior (format {found!r:.80})")
    checkpoint._check_json_values(path, meta)
    if meta.get("format_version") != PRIOR_FORMAT_VERSION:
        raise PriorFileError(
            f"code prior {path}: format version {meta.get('format_version')!r:.80}, but this tinyvae reads "
            f"version {PRIOR_FORMAT_VERSION}"
        )
    for field, (check, expected) in _PRIOR_FIELDS.items():
        if not check(meta.get(field)):
            raise PriorFileError(
                f"code prior {path}: header field '{field}' must be {expected}, got {meta.get(field)!r:.80}"
            )
    return meta


def _build_checked_prior(path, meta, members, codebook_size, length):
    """The prior the header describes, built only once its config accounts for exactly the numbers the
    file declares (so a forged width of 10**9 is refused before anything is allocated), then every member
    checked against its parameters by name, shape and dtype, before any data is read."""
    try:
        config = CodePriorConfig.from_dict(meta.get("config"))
    except (ValueError, TypeError) as error:
        raise PriorFileError(
            f"code prior {path}: header field 'config' is not a prior's config: {error}"
        ) from None
    for field, wanted in (("codebook_size", codebook_size), ("length", length)):
        if wanted is not None and getattr(config, field) != wanted:
            raise PriorFileError(
                f"code prior {path}: fitted to codes with K = {config.codebook_size}, L = {config.length}, "
                f"but this run's VQ-VAE has K = {codebook_size}, L = {length}; fit it again with "
                "`tinyvae train-prior`"
            )
    stored = sum(math.prod(m.shape) for key, m in members.items() if key != "meta.json")
    if parameter_count(config) != stored:
        raise PriorFileError(
            f"code prior {path}: its config describes {parameter_count(config)} parameters but the file "
            f"holds {stored} numbers; the header does not describe these weights (corrupt or edited)"
        )
    prior = TransformerCodePrior(config)
    expected = {f"prior/{key}": value for key, value in prior.state_dict().items()}
    names = set(members) - {"meta.json"}
    if names != set(expected):
        missing, unexpected = sorted(set(expected) - names), sorted(names - set(expected))
        raise PriorFileError(
            f"code prior {path}: missing arrays {checkpoint._keys(missing)}, unexpected arrays "
            f"{checkpoint._keys(unexpected)}; a code prior holds 'meta.json' and 'prior/…' arrays"
        )
    for key, value in expected.items():
        member = members[key]
        if member.shape != value.shape or member.dtype != value.dtype:
            raise PriorFileError(
                f"code prior {path}: '{key}' is declared {member.describe()} but the prior's parameter is "
                f"shape {value.shape} {value.dtype}"
            )
    return prior


def fit_and_save(path, config, train_codes, test_codes, fit, source, log=print):
    """Fit a :class:`TransformerCodePrior` built from ``config`` to ``train_codes`` (test_codes held out),
    with ``fit`` = {"epochs", "batch_size", "lr", "seed"}, reporting each epoch's bits per code next to the
    uniform prior's log2 K through ``log``; save it to ``path`` with ``source`` (which checkpoint the codes
    came from) and the fit's numbers. Returns the held-out bits per code."""
    uniform = math.log2(config.codebook_size)
    log(
        f"fitting a transformer prior ({config.layers} layers, width {config.width}, {config.heads} heads) "
        f"to {len(train_codes)} training sequences of L = {config.length} codes out of K = "
        f"{config.codebook_size}; the test split's {len(test_codes)} are held out. Uniform codes cost "
        f"log2 K = {uniform:.3f} bits per code"
    )

    def progress(record):
        train_bits = record["train_nats_per_code"] / math.log(2)
        held_out = record["held_out_nats_per_code"] / math.log(2)
        log(
            f"epoch {record['epoch']}/{fit['epochs']}: train {train_bits:.3f}, held-out {held_out:.3f} bits "
            f"per code (log2 K = {uniform:.3f})"
        )

    prior = TransformerCodePrior(config)
    with blas_threads(1):  # small matrices: one thread is ~10x faster on a busy 2-core machine
        history = prior.fit(
            train_codes,
            fit["epochs"],
            batch_size=fit["batch_size"],
            lr=fit["lr"],
            rng=numpy.random.default_rng(fit["seed"]),
            progress=progress,
            held_out=test_codes,
        )
    test_bits = history[-1]["held_out_nats_per_code"] / math.log(2)
    save_prior(
        path,
        prior,
        **source,
        test_bits_per_code=test_bits,
        train_bits_per_code=history[-1]["train_nats_per_code"] / math.log(2),
        uniform_bits_per_code=uniform,
        train_sequences=len(train_codes),
        fit=dict(fit),
        history=history,
    )
    return test_bits
