"""Evaluating a trained model: its log-likelihood and what its latent code is used for.

* :func:`log_likelihood` — importance-sampled log p(x) (Burda et al. 2016, eq. 8 with large k).
* :func:`active_units` — latent units whose posterior mean moves with x (Burda et al. 2016, Sec. 5.2).
* :func:`kl_per_dimension` — the analytic KL(q(z|x) ‖ N(0, I)) split by latent dimension.
* :func:`mutual_information` — I_q(x; z) from the "ELBO surgery" decomposition (Hoffman & Johnson 2016).
* :func:`aggregate_kl` — KL(q(z) ‖ p(z)), the other half of that decomposition.
* :func:`attribute_vector` — mean latent with an attribute minus without (White 2016, Sec. 2.4).

Every function runs under ``tv.no_grad()`` and returns NumPy float64 values. The work stays where the
model computes (on the GPU under CuPy: the (chunk, N) density blocks, the log-weights); only the results
cross to the host, through :func:`tinyvae.backend.to_host`. Noise is drawn by a NumPy Generator on the host
and copied over explicitly.
"""

from __future__ import annotations

import math

import numpy

import tinyvae.functional as F
from tinyvae import nn, optim
from tinyvae.autodiff import no_grad
from tinyvae.backend import array_module, to_host
from tinyvae.models.priors import StandardNormal
from tinyvae.nn import as_generator
from tinyvae.tensor import Tensor, host_array

LOG_2PI = math.log(2 * math.pi)


def log_likelihood(model, x, k=5000, batch_size=100, rng=None, y=None, chunk_size=500):
    """Per-example estimate of log p(x): the importance-weighted bound of Burda et al. (2016, eq. 8),

        log p̂(x) = log (1/k) Σ_{i=1..k} w_i,   w_i = p(x, z_i) / q(z_i|x),   z_i ~ q(z|x),

    a lower bound in expectation that tightens as k grows. Needs ``model.log_weights(x, k, rng, y=None)``.

    ``batch_size`` examples are handled at a time and their k samples are drawn ``chunk_size`` at a time,
    so memory grows with batch_size × chunk_size, never with k. Chunks combine exactly in log space: if
    chunk c has S_c = logsumexp_{i ∈ c} log w_i, then logsumexp over all k samples is
    logsumexp_c S_c, accumulated as a running ``numpy.logaddexp``; finally subtract log k.
    For models that draw all of a chunk's noise in one call (the VAE family: vae, beta-vae, iwae, cvae,
    flow, linear) the draws come from ``rng`` in the same order whatever the chunk size, so a chunked run
    equals an unchunked one up to rounding; models that interleave several draws per chunk (mixture, hvae)
    give a different but equally valid estimate for each chunk size.

    Returns a float64 array of shape (B,).
    """
    if not model.has_likelihood_bound:
        raise TypeError(
            f"log_likelihood: model {model.name!r} ({type(model).__name__}) has no likelihood bound "
            "(has_likelihood_bound is False: no log_weights(x, k, rng) to importance-sample)"
        )
    log_weights = model.log_weights
    for name, value in (("k", k), ("batch_size", batch_size), ("chunk_size", chunk_size)):
        _check_positive_int("log_likelihood", name, value)
    rng = as_generator(rng)
    data, labels = _checked(model, x, y)
    xp = array_module(data)
    estimate = numpy.empty(len(data))
    with no_grad():
        for start in range(0, len(data), batch_size):
            rows = slice(start, start + batch_size)
            total = xp.full(len(data[rows]), -numpy.inf)  # running log Σ w over the chunks so far
            for done in range(0, k, chunk_size):
                size = min(chunk_size, k - done)
                extra = {} if labels is None else {"y": labels[rows]}
                log_w = log_weights(data[rows], size, rng, **extra).data.astype(numpy.float64)  # (size, b)
                total = xp.logaddexp(total, _logsumexp(log_w, axis=0))  # (b,)
            estimate[rows] = to_host(total - math.log(k))
    return estimate


def active_units(model, x, threshold=1e-2, y=None):
    """Count the active latent units (Burda et al. 2016, Sec. 5.2): unit u is active when

        A_u = Cov_x( E_{q(z|x)}[z_u] ) > threshold   (they use 10⁻²),

    the variance over the examples in ``x`` of the posterior mean (``model.latent_mean``), taken with
    denominator B. Returns (count, variances) with variances a float64 array of shape (z_dim,).
    """
    if not threshold >= 0:
        raise ValueError(f"active_units: threshold must be >= 0, got {threshold!r}")
    means = _latent_means(model, x, y, "active_units")
    if len(means) < 2:
        raise ValueError(f"active_units: x has {len(means)} example(s); a variance needs at least 2")
    variances = means.var(axis=0)  # (Z,)
    return int((variances > threshold).sum()), variances


def kl_per_dimension(model, x, y=None):
    """Mean over the examples of KL(q(z_j|x) ‖ N(0, 1)) for each latent dimension j, shape (z_dim,):

        KL_j = ½ (σ_j² + μ_j² − 1 − log σ_j²)   (Kingma & Welling 2014, Appendix B, one term of the sum),

    for models whose ``encode(x)`` returns the (μ, log σ²) of a diagonal Gaussian q(z|x). The entries sum
    to the batch-mean KL term of the ELBO; dimensions near 0 have collapsed to the prior.
    """
    mu, logvar = _gaussian_posterior(model, x, y, "kl_per_dimension")
    xp = array_module(mu)
    return to_host((0.5 * (xp.exp(logvar) + mu**2 - 1.0 - logvar)).mean(axis=0))


def mutual_information(model, x, rng, n_samples=1, y=None, chunk_size=500):
    """Estimate I_q(x; z), the mutual information between the examples and their codes under q.

    Hoffman & Johnson (2016, eq. 3-4, "ELBO surgery") split the average KL term of the ELBO as

        (1/N) Σ_n KL(q(z|x_n) ‖ p(z)) = I_q(x; z) + KL(q(z) ‖ p(z)),   q(z) = (1/N) Σ_n q(z|x_n),

    with x uniform over the N examples. We use the standard minibatch estimator

        Î = (1/N) Σ_n mean_s [ log q(z_ns|x_n) − log (1/N) Σ_m q(z_ns|x_m) ],   z_ns ~ q(z|x_n),

    drawing ``n_samples`` codes per example, for a diagonal-Gaussian q(z|x) given by ``model.encode``;
    the other half of the split is :func:`aggregate_kl` (on the same draws the two add up to the sampled
    KL term exactly). Memory is (chunk_size, N), never (N, N).
    Bias: for the N examples given, taken as the whole data set as Hoffman & Johnson do, Î is unbiased.
    As an estimate for the population the examples are drawn from it is biased *down*: Î = sampled KL
    term − :func:`aggregate_kl`, whose estimate is biased up (see there). Î is the information between z
    and the *index* n of an example of this batch, so it can never exceed log N (the entropy of the index)
    and saturates there when codes are sharp; with broad codes the shortfall is small (a 2-D Gaussian
    example with N = 2,000 in the tests comes out within 0.01 nats, where the 2,000 examples' own
    sampling spread dominates). It is consistent as N → ∞; compare values only at equal N.
    Returns a float in nats.
    """
    _check_positive_int("mutual_information", "n_samples", n_samples)
    _check_positive_int("mutual_information", "chunk_size", chunk_size)
    rng = as_generator(rng)
    mu, logvar = _gaussian_posterior(model, x, y, "mutual_information")  # (N, Z) each
    total = 0.0
    for _ in range(n_samples):
        z = mu + array_module(mu).exp(0.5 * logvar) * _noise(rng, mu)  # (N, Z): z_n ~ q(z|x_n)
        log_q_own, log_q_aggregate = _log_posterior_densities(z, mu, logvar, chunk_size)  # (N,) each
        total += float((log_q_own - log_q_aggregate).mean())
    return float(total / n_samples)


def aggregate_kl(model, x, rng, y=None, samples=1, chunk_size=500):
    """Estimate KL(q(z) ‖ p(z)), how far the aggregate posterior q(z) = (1/N) Σ_n q(z|x_n) of the N
    examples sits from the prior: the second term of the "ELBO surgery" split (Hoffman & Johnson 2016,
    eq. 3-4; see :func:`mutual_information`),

        (1/N) Σ_n KL(q(z|x_n) ‖ p(z)) = I_q(x; z) + KL(q(z) ‖ p(z)).

    A KL term that is all I_q is information the code carries about x; a KL term that is all
    KL(q(z) ‖ p(z)) is the codes, taken together, not filling the prior (holes where p(z) samples decode to
    nothing). The Monte-Carlo estimator, ``samples`` draws per example:

        K̂ = (1/N) Σ_n mean_s [ log q̂(z_ns) − log p(z_ns) ],   z_ns ~ q(z|x_n),
        log q̂(z) = logsumexp_m log q(z|x_m) − log N,

    so z_ns is a draw from q(z) itself (one per mixture component), log q̂ is the mixture's density
    evaluated over all N components, and log p(z) comes from ``model.prior.log_prob``. The N × N
    component densities are taken ``chunk_size`` rows at a time: memory is (chunk_size, N).

    Bias: for the N examples given, q̂ *is* q(z) (Hoffman & Johnson take x uniform over the data set) and
    K̂ is unbiased, with only the Monte-Carlo error of the draws. As an estimate of the aggregate posterior
    of the population the examples are drawn from, q(z) = E_x q(z|x), it is biased *up*: KL is convex in
    its first argument and E[q̂_N] = q, so E K̂_N = E KL(q̂_N ‖ p) ≥ KL(q ‖ p) (Jensen) — N components are
    lumpier than the population mixture, and lumps cost KL. The bias shrinks monotonically as N grows
    (q̂_N is the average of its N leave-one-out mixtures q̂_{N−1}, so E KL(q̂_N ‖ p) ≤ E KL(q̂_{N−1} ‖ p)),
    like 1/N when the codes overlap; with sharp codes, each z_n is recognised as its own x_n and
    K̂ ≈ KL term − log N, the mirror of :func:`mutual_information` saturating at log N. Compare values
    only at equal N. Applies where :func:`has_closed_form_kl` does (diagonal-Gaussian q(z|x)).
    Returns a float in nats.
    """
    _check_positive_int("aggregate_kl", "samples", samples)
    _check_positive_int("aggregate_kl", "chunk_size", chunk_size)
    rng = as_generator(rng)
    mu, logvar = _gaussian_posterior(model, x, y, "aggregate_kl")  # (N, Z) each
    total = 0.0
    for _ in range(samples):
        z = mu + array_module(mu).exp(0.5 * logvar) * _noise(rng, mu)  # (N, Z): z_n ~ q(z|x_n)
        _, log_q_aggregate = _log_posterior_densities(z, mu, logvar, chunk_size)  # (N,)
        with no_grad():
            log_p = model.prior.log_prob(Tensor(z)).data.astype(numpy.float64)  # (N,)
        total += float((log_q_aggregate - log_p).mean())
    return float(total / samples)


def attribute_vector(model, x, mask, y=None):
    """The latent direction of an attribute (White 2016, "Sampling Generative Networks", Sec. 2.4):

        v = mean_{n: mask_n} E_q[z | x_n] − mean_{n: not mask_n} E_q[z | x_n],

    using ``model.latent_mean``. Apply it with ``model.decode(z + alpha * v)``. ``mask`` is a boolean
    array of shape (B,) marking the examples that have the attribute. Returns shape (z_dim,).
    """
    mask = numpy.asarray(mask)
    n = numpy.shape(x)[0] if numpy.ndim(x) else 0
    if mask.dtype != bool or mask.shape != (n,):
        raise ValueError(
            f"attribute_vector: mask must be a boolean array of shape ({n},) (one flag per example), got "
            f"shape {mask.shape} and dtype {mask.dtype}"
        )
    with_count = int(mask.sum())
    if with_count == 0 or with_count == n:
        raise ValueError(
            f"attribute_vector: mask marks {with_count} of {n} examples; both the group with the attribute "
            "and the group without it need at least one example"
        )
    means = _latent_means(model, x, y, "attribute_vector")
    return means[mask].mean(axis=0) - means[~mask].mean(axis=0)


def report(model, x, k=1000, rng=None, y=None, factors=None, categorical=()):
    """Every diagnostic that applies to ``model`` on the examples x, as JSON-able numbers (what ``tinyvae
    evaluate`` prints and saves): ``nll_k{k}`` where the model has a likelihood bound, the active units and
    latent variances, per-dimension KL, I(x; z) and KL(q(z) ‖ p(z)) where the posterior is a diagonal
    Gaussian against N(0, I), ``elbo`` and ``elbo_terms`` (nats per example) where the model splits its
    bound into terms (``model.elbo_terms``: the diffusion model, the hierarchical VAE), ``mig`` and ``sap``
    (:mod:`tinyvae.disentanglement`) when the generating ``factors`` of x are known (an (N, F) integer
    array, e.g. the shapes dataset's; ``categorical``: the indices of its unordered factors) and the latent
    is Gaussian, and whatever the model adds itself (``model.extra_metrics``: the VQ-VAE's perplexity, the
    hierarchical VAE's per-layer KL)."""
    rng = as_generator(rng)
    values = {}
    if model.has_likelihood_bound:
        values[f"nll_k{k}"] = float(-log_likelihood(model, x, k=k, rng=rng, y=y).mean())
    units, variances = active_units(model, x, y=y)
    values["active_units"] = int(units)
    values["latent_variance"] = [float(v) for v in variances]
    if has_closed_form_kl(model):
        values["kl_per_dimension"] = [float(v) for v in kl_per_dimension(model, x, y=y)]
        values["mutual_information"] = float(mutual_information(model, x, rng, y=y))
        # The other half of the KL term (mean KL = I + this, Hoffman & Johnson 2016): codes off the prior.
        values["aggregate_kl"] = float(aggregate_kl(model, x, rng, y=y))
        # The estimator cannot exceed log N (see mutual_information): near it, the number says "at least".
        ceiling = values["mutual_information_ceiling"] = math.log(len(x))
        values["mutual_information_saturated"] = values["mutual_information"] >= MI_SATURATION * ceiling
    terms = model.elbo_terms(x, rng, y=y)
    if terms is not None:  # the bound split into its terms; they sum to it by construction
        values["elbo_terms"] = {name: float(numpy.mean(value)) for name, value in terms.items()}
        values["elbo"] = float(numpy.mean(sum(terms.values())))
    if factors is not None and model.latent_kind == "gaussian":
        from tinyvae import disentanglement

        means = _latent_means(model, x, y, "report")  # (N, Z) float64
        values["mig"] = float(disentanglement.mig(means, numpy.asarray(factors)[: len(x)]))
        values["sap"] = float(disentanglement.sap(means, numpy.asarray(factors)[: len(x)], categorical))
    values.update(model.extra_metrics(x, y))
    return values


MI_SATURATION = 0.95  # an estimate within 5% of its ceiling log N is a lower bound, not a measurement


def has_closed_form_kl(model):
    """Whether q(z|x) is a diagonal Gaussian given by encode(x) and the prior N(0, I): then the KL splits
    into per-dimension terms in closed form (``kl_per_dimension``, ``mutual_information``,
    ``aggregate_kl``)."""
    return model.gaussian_posterior and isinstance(model.prior, StandardNormal)


# ----- helpers -----
def codebook_usage(model, x):
    """For a vector-quantised model: how the examples x use the codebook, as
    ``{"perplexity", "codes_used", "counts"}``. Perplexity is exp(H) of the average code distribution: K when
    all K codes are used equally, 1 when one code takes everything (van den Oord et al. 2017 report it to
    show codebook collapse)."""
    if model.latent_kind != "discrete":
        raise TypeError(
            f"codebook_usage: model {model.name!r} has no codebook (latent_kind {model.latent_kind!r}); "
            "it applies to vector-quantised models (vqvae)"
        )
    return model.codebook_usage(x)


def _noise(rng, like):
    """Standard normal noise of ``like``'s shape, drawn by the NumPy Generator ``rng`` and copied to where
    ``like`` lives (so the draws are the same on every backend)."""
    return array_module(like).asarray(rng.standard_normal(like.shape))


def _log_posterior_densities(z, mu, logvar, chunk_size):
    """For rows z_n (N, Z) drawn from q(z|x_n): log q(z_n|x_n) and log q̂(z_n) = log (1/N) Σ_m q(z_n|x_m),
    (N,) each, ``chunk_size`` rows at a time against all N diagonal Gaussians (μ, log σ²), where they live."""
    xp = array_module(z, mu, logvar)
    n = len(mu)
    inv_var = xp.exp(-logvar)  # (N, Z)
    # log q(z|x_m) = −½ Σ_j [log 2π + lv_mj + (z_j − μ_mj)² / σ_mj²], the square expanded into matrix
    # products so a chunk needs (rows, N) memory, never (rows, N, Z).
    const = -0.5 * (mu.shape[1] * LOG_2PI + logvar.sum(axis=1) + (mu**2 * inv_var).sum(axis=1))  # (N,)
    scaled_mu = mu * inv_var  # (N, Z)
    own, aggregate = xp.empty(n), xp.empty(n)
    for start in range(0, n, chunk_size):
        rows = slice(start, start + chunk_size)
        block = z[rows]  # (b, Z)
        log_q = const - 0.5 * (block**2) @ inv_var.T + block @ scaled_mu.T  # (b, N): [i, m] = log q(z_i|x_m)
        own[rows] = log_q[xp.arange(len(block)), xp.arange(start, start + len(block))]
        aggregate[rows] = _logsumexp(log_q, axis=1) - math.log(n)
    return own, aggregate


def _logsumexp(a, axis):
    """log Σ exp(a) along axis, in a's array module, shifted by the maximum; all −inf gives −inf."""
    xp = array_module(a)
    shift = a.max(axis=axis, keepdims=True)
    shift = xp.where(xp.isfinite(shift), shift, 0.0)
    with numpy.errstate(divide="ignore"):  # NumPy's setting (CuPy has none and never warns)
        return xp.log(xp.exp(a - shift).sum(axis=axis)) + xp.squeeze(shift, axis=axis)


def _check_positive_int(function, name, value):
    if not isinstance(value, int | numpy.integer) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{function}: {name} must be a positive integer, got {value!r}")


def _checked(model, x, y):
    """x as the model's checked array (B, x_dim), where the model computes, and y as checked labels (host
    integers; None for unconditional models)."""
    data = model.check_x(x).data
    return data, model.check_y(y, len(data))


def _in_float64(value):
    """A Tensor's or an array's values as a float64 array in its own array module (it stays on the GPU)."""
    data = value.data if isinstance(value, Tensor) else value
    return array_module(data).asarray(data, dtype=numpy.float64)


def _latent_means(model, x, y, function):
    """model.latent_mean(x) as a NumPy float64 array (N, Z): what the evaluation results are made of."""
    data, labels = _checked(model, x, y)
    with no_grad():
        means = model.latent_mean(data, labels)
    means = host_array(means)
    if means.ndim != 2 or len(means) != len(data):
        raise ValueError(
            f"{function}: model {model.name!r} returned latent means of shape {means.shape}; expected "
            f"({len(data)}, z_dim)"
        )
    return means


def _gaussian_posterior(model, x, y, function):
    """(μ, log σ²) of a diagonal-Gaussian q(z|x) as float64 arrays (B, Z) in the model's array module, or an
    error naming the model."""
    if not has_closed_form_kl(model):
        raise TypeError(
            f"{function}: model {model.name!r} ({type(model).__name__}) has no diagonal-Gaussian posterior "
            "against an N(0, I) prior, which this estimate needs (flows, mixtures, hierarchical and "
            f"quantised posteriors are not; its prior is {model.prior and model.prior.description})"
        )
    data, labels = _checked(model, x, y)
    with no_grad():
        encoded = model.encode(data) if labels is None else model.encode(data, labels)
    if not (isinstance(encoded, tuple) and len(encoded) == 2):
        raise TypeError(
            f"{function}: model {model.name!r} ({type(model).__name__}) has no diagonal-Gaussian posterior: "
            f"encode(x) returned {type(encoded).__name__}, expected a (mu, logvar) pair"
        )
    mu, logvar = (_in_float64(t) for t in encoded)
    if mu.shape != logvar.shape or mu.ndim != 2:
        raise TypeError(
            f"{function}: model {model.name!r} encode(x) returned mu {mu.shape} and logvar {logvar.shape}; "
            "expected two arrays of shape (batch, z_dim)"
        )
    return mu, logvar


# ----- an independent judge for conditional samples -----
class Classifier(nn.Module):
    """An MLP classifier (softmax over classes) trained with tinyvae itself: the judge of whether a
    conditional model's samples show the class they were drawn for. Independent of the model it judges:
    its own weights, trained on the labelled examples only."""

    def __init__(self, sizes, rng):
        super().__init__()
        self.net = nn.MLP(sizes, activation="relu", rng=rng)

    def log_probs(self, x):
        """log p(class | x), a Tensor (B, classes)."""
        return F.log_softmax(self.net(Tensor(numpy.asarray(x, dtype=numpy.float32))), axis=-1)

    def predict(self, x, batch_size=500):
        """The most probable class of each row of x, an int array (B,)."""
        with no_grad():
            parts = [
                self.log_probs(x[i : i + batch_size]).numpy().argmax(-1) for i in range(0, len(x), batch_size)
            ]
        return numpy.concatenate(parts) if parts else numpy.zeros(0, dtype=int)


def train_classifier(dataset, epochs=15, hidden=256, lr=1e-3, batch_size=64, seed=7):
    """A :class:`Classifier` (x_dim → ``hidden`` → classes) fitted to ``dataset`` (``.x``, ``.labels``,
    ``.n_classes``) by Adam on the cross-entropy −log p(y | x). On mnist5k's 4,500 grey-level training
    images, 15 epochs take a few seconds and reach about 96% on the 500 test images."""
    rng = as_generator(seed)
    classifier = Classifier([dataset.x.shape[1], hidden, dataset.n_classes], rng)
    optimizer = optim.Adam(classifier.parameters(), lr=lr)
    one_hot = numpy.eye(dataset.n_classes, dtype=numpy.float32)
    for _ in range(epochs):
        order = rng.permutation(len(dataset.x))
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            optimizer.zero_grad()
            log_p = classifier.log_probs(dataset.x[rows])  # (B, C)
            loss = -(log_p * Tensor(one_hot[dataset.labels[rows]])).sum(axis=-1).mean()
            loss.backward()
            optimizer.step()
    return classifier


def class_conditional_accuracy(model, classifier, per_class=100, rng=None):
    """How often ``classifier`` labels a conditional model's samples with the class they were drawn for:
    ``per_class`` samples (decoder means, z from the prior) of each class. Returns (overall fraction,
    per-class fractions (C,))."""
    if not model.conditional:
        raise TypeError(f"class_conditional_accuracy: model {model.name!r} is not conditional")
    rng = as_generator(rng)
    hits = []
    for label in range(model.config.n_classes):
        samples = numpy.asarray(model.sample(per_class, rng, y=label))
        hits.append(float((classifier.predict(samples) == label).mean()))
    return float(numpy.mean(hits)), numpy.array(hits)
