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
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Mapping

import numpy

import tinyvae.functional as F
from tinyvae import nn, optim
from tinyvae.autodiff import no_grad
from tinyvae.models.base import _a, _is_integer, check_choice, check_integer
from tinyvae.tensor import Tensor


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
        if not isinstance(values, Mapping):
            raise ValueError(f"{cls.__name__}.from_dict: values must be a dict of fields, got {_a(values)}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"{cls.__name__}: unknown fields {unknown}; known fields are {sorted(known)}")
        missing = [
            f.name
            for f in dataclasses.fields(cls)
            if f.default is dataclasses.MISSING
            and f.default_factory is dataclasses.MISSING
            and f.name not in values
        ]
        if missing:
            raise ValueError(f"{cls.__name__}.from_dict: missing required fields {missing}")
        return cls(**values)


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
