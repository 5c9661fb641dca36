"""Disentanglement scores: how well single latent dimensions track single generating factors.

A dataset with known factors (``tinyvae.data.load_dataset("shapes", ...)``: ``.factors`` (N, F) integer
indices) lets us ask of a representation ``codes`` (N, Z) — a VAE's posterior means, say — whether each
factor is captured by one latent dimension and by that one alone. Two scores, each in [0, 1] (1: every
factor has its own dimension that no other dimension rivals; 0: no factor does):

* :func:`mig`, the Mutual Information Gap (Chen et al. 2018, "Isolating Sources of Disentanglement in
  VAEs", eq. 6). Each latent dimension is discretised into ``bins`` equal-width bins (the histogram
  estimator of Locatello et al. 2019 uses 20), the mutual information I(z_j; v_k) of every (dimension,
  factor) pair is read off their joint histogram, and per factor

      MIG_k = (I(z_(1); v_k) − I(z_(2); v_k)) / H(v_k),

  the gap between the two most informative dimensions normalised by the factor's entropy; MIG is the mean
  over the factors. Since a binned z_j is a function of the data, I(z_j; v_k) ≤ H(v_k), so each term lies
  in [0, 1]. A factor captured by two dimensions at once (a rotated code) scores 0 however much each knows.
  The plug-in estimate is biased upwards by about (bins − 1)(K − 1) / 2N nats for a factor of K values
  (Miller 1955): an uninformative dimension scores a little above 0, which lowers the gaps a little. On the
  shapes' 1,000 test images that is ~0.12 nats against H(x position) = log 14 = 2.6; compare models on the
  same examples.
* :func:`sap`, the Separated Attribute Predictability (Kumar et al. 2018, "Variational Inference of
  Disentangled Latent Concepts from Unlabeled Observations", Sec. 3): a score S_jk of how well dimension
  z_j alone predicts factor v_k, then per factor the gap between the two best dimensions, averaged. For an
  ordered factor S_jk is the R² of the linear fit of v_k on z_j (the squared correlation), as in the paper
  for continuous factors; for a categorical one (the shapes' ``shape``) S_jk is the fraction of z_j's
  variance explained by the categories (the correlation ratio η², the R² of z_j on the factor's one-hot),
  which needs no classifier and does not depend on how the categories are numbered.

:func:`mig_of_model` and :func:`sap_of_model` score a model on a dataset from its posterior means
(``model.latent_mean``).
"""

from __future__ import annotations

import numpy

from tinyvae.autodiff import no_grad
from tinyvae.tensor import host_array

MIG_BINS = 20  # bins per latent dimension (Locatello et al. 2019's default for the histogram estimator)


def _check(codes, factors, where):
    codes = numpy.asarray(codes, dtype=numpy.float64)
    factors = numpy.asarray(factors)
    if codes.ndim != 2 or factors.ndim != 2 or len(codes) != len(factors):
        raise ValueError(
            f"{where}: codes must be (N, Z) and factors (N, F) with the same N, got {codes.shape} and "
            f"{factors.shape}"
        )
    if len(codes) < 2:
        raise ValueError(f"{where}: need at least 2 examples, got {len(codes)}")
    if factors.dtype.kind not in "iu":
        raise ValueError(f"{where}: factors must be integer indices, got dtype {factors.dtype}")
    if not numpy.isfinite(codes).all():
        raise ValueError(f"{where}: codes contain NaN or infinite values")
    return codes, factors


def discretize(codes, bins=MIG_BINS):
    """Each column of ``codes`` (N, Z) cut into ``bins`` equal-width bins over its own range: ints (N, Z) in
    [0, bins). A constant column falls into bin 0 (it carries no information)."""
    low, high = codes.min(axis=0), codes.max(axis=0)  # (Z,)
    width = numpy.where(high > low, (high - low) / bins, 1.0)
    return numpy.minimum(((codes - low) / width).astype(numpy.int64), bins - 1)  # the maximum: last bin


def entropy(labels):
    """H(v) in nats of the empirical distribution of the integer ``labels`` (N,)."""
    p = numpy.bincount(labels - labels.min()) / len(labels)
    p = p[p > 0]
    return float(-(p * numpy.log(p)).sum())


def mutual_information(a, b):
    """I(a; b) in nats of two integer arrays (N,) from their joint histogram (the plug-in estimate):
    Σ p(a, b) log(p(a, b) / (p(a) p(b)))."""
    a, b = a - a.min(), b - b.min()
    joint = numpy.zeros((a.max() + 1, b.max() + 1))
    numpy.add.at(joint, (a, b), 1.0)
    joint /= len(a)
    pa, pb = joint.sum(axis=1, keepdims=True), joint.sum(axis=0, keepdims=True)
    nonzero = joint > 0
    return float((joint[nonzero] * numpy.log(joint[nonzero] / (pa @ pb)[nonzero])).sum())


def mutual_information_matrix(codes, factors, bins=MIG_BINS):
    """I(z_j; v_k) in nats, an array (Z, F), with every z_j discretised into ``bins`` bins."""
    codes, factors = _check(codes, factors, "mutual_information_matrix")
    binned = discretize(codes, bins)
    return numpy.array(
        [
            [mutual_information(binned[:, j], factors[:, k]) for k in range(factors.shape[1])]
            for j in range(codes.shape[1])
        ]
    )


def _gaps(scores, normaliser):
    """(best − second best) over the rows of ``scores`` (Z, F), divided by ``normaliser`` (F,); factors
    with a zero normaliser (constant factors) are left out. One row: the gap is the best score itself."""
    ranked = -numpy.sort(-scores, axis=0)  # (Z, F), best first
    second = ranked[1] if len(ranked) > 1 else numpy.zeros(scores.shape[1])
    keep = normaliser > 0
    return (ranked[0] - second)[keep] / normaliser[keep]


def mig_per_factor(codes, factors, bins=MIG_BINS):
    """MIG_k of each factor that varies (see the module docstring): an array in [0, 1]."""
    codes, factors = _check(codes, factors, "mig")
    information = mutual_information_matrix(codes, factors, bins)  # (Z, F)
    entropies = numpy.array([entropy(factors[:, k]) for k in range(factors.shape[1])])  # (F,)
    return numpy.clip(_gaps(information, entropies), 0.0, 1.0)  # clip: float rounding only


def mig(codes, factors, bins=MIG_BINS):
    """The Mutual Information Gap of ``codes`` (N, Z) for the integer ``factors`` (N, F), in [0, 1]."""
    return float(mig_per_factor(codes, factors, bins).mean())


def sap_scores(codes, factors, categorical=()):
    """S_jk (Z, F): R² of factor k on dimension j alone (η² for the ``categorical`` factor columns)."""
    codes, factors = _check(codes, factors, "sap")
    centred = codes - codes.mean(axis=0)  # (N, Z)
    variance = (centred**2).mean(axis=0)  # (Z,)
    scores = numpy.zeros((codes.shape[1], factors.shape[1]))
    for k in range(factors.shape[1]):
        v = factors[:, k]
        if k in categorical:  # η²: variance of the class means of z_j over the variance of z_j
            counts = numpy.bincount(v)
            present = counts > 0
            sums = numpy.stack([numpy.bincount(v, weights=centred[:, j]) for j in range(codes.shape[1])])
            between = (sums[:, present] ** 2 / counts[present]).sum(axis=1) / len(v)  # (Z,)
            scores[:, k] = numpy.where(variance > 0, between / numpy.where(variance > 0, variance, 1), 0)
        else:  # squared correlation of z_j and v_k
            dv = v - v.mean()
            covariance = (centred * dv[:, None]).mean(axis=0)  # (Z,)
            denominator = variance * (dv**2).mean()
            scores[:, k] = numpy.where(
                denominator > 0, covariance**2 / numpy.where(denominator > 0, denominator, 1), 0
            )
    return scores


def sap(codes, factors, categorical=()):
    """Separated Attribute Predictability of ``codes`` (N, Z) for ``factors`` (N, F), in [0, 1].
    ``categorical``: the column indices of unordered factors (scored by η², see the module docstring)."""
    scores = sap_scores(codes, factors, categorical)
    varies = numpy.asarray(factors).std(axis=0) > 0
    return float(numpy.clip(_gaps(scores, varies.astype(float)), 0.0, 1.0).mean())


def posterior_means(model, data, batch_size=500):
    """``model.latent_mean`` of every example of ``data`` (a Dataset), an array (N, Z), without gradients."""
    means = []
    with no_grad():
        for start in range(0, len(data.x), batch_size):
            x = model.check_x(data.x[start : start + batch_size])
            y = (
                None
                if not model.conditional
                else model.check_y(data.labels[start : start + batch_size], x.shape[0])
            )
            value = model.latent_mean(x, y)
            means.append(host_array(value))  # the scores run on the host
    return numpy.concatenate(means)


def _factors_of(data, where):
    factors = getattr(data, "factors", None)
    if factors is None:
        raise ValueError(
            f"{where}: the dataset {getattr(data, 'name', '?')!r} has no known generating factors; use one "
            "that does, such as load_dataset('shapes', ...)"
        )
    return factors


def categorical_columns(data):
    """Indices of the unordered factors of ``data`` (the shapes' ``shape``), for :func:`sap`."""
    from tinyvae import shapes

    names = getattr(data, "factor_names", None) or ()
    return tuple(k for k, name in enumerate(names) if name in shapes.CATEGORICAL_FACTORS)


def mig_of_model(model, data, bins=MIG_BINS, batch_size=500):
    """MIG of ``model``'s posterior means on ``data`` (a Dataset with ``factors``, e.g. the shapes)."""
    return mig(posterior_means(model, data, batch_size), _factors_of(data, "mig_of_model"), bins)


def sap_of_model(model, data, batch_size=500):
    """SAP of ``model``'s posterior means on ``data`` (a Dataset with ``factors``)."""
    factors = _factors_of(data, "sap_of_model")
    return sap(posterior_means(model, data, batch_size), factors, categorical_columns(data))
