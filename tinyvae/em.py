"""Expectation-maximisation for a Gaussian mixture: the first latent-variable model, fitted exactly.

    from tinyvae import em

    params, trace = em.fit(x, k=8, iterations=50, rng=numpy.random.default_rng(0))
    em.log_marginal(x, params)  # (N,) log p(x) under the fitted mixture

**The model** (Bishop 2006, *Pattern Recognition and Machine Learning*, Sec. 9.2): a discrete latent z picks
one of K components, then x is drawn from that component's Gaussian,

    p(z = k) = π_k,   p(x | z = k) = N(x; μ_k, Σ_k),   p(x) = Σ_k π_k N(x; μ_k, Σ_k)   (Bishop eq. 9.7).

The covariances Σ_k are *full* D × D matrices (each component is an ellipse of any orientation).

**The chicken and the egg.** If we knew which component made each point, fitting would be easy: each
Gaussian is the mean and covariance of its own points. If we knew the Gaussians, we could say which
component made each point: its posterior p(z | x). We know neither, so EM alternates between the two, and
the ELBO explains why that works. For any distribution q(z) over the components of a point x,

    log p(x) = ELBO(q) + KL(q(z) ‖ p(z | x)),   ELBO(q) = Σ_k q(k) [log p(x, z = k) − log q(k)]
                                                                                        (Bishop eq. 9.70)

and the KL is ≥ 0, so the ELBO is a lower bound on log p(x) — the same bound a VAE maximises, where q is
an encoder network and the sum is a Monte-Carlo estimate.

* **E-step** (:func:`e_step`): for fixed parameters, the ELBO is largest when the KL is 0, i.e. q(z) is the
  exact posterior, the *responsibilities* r_nk = p(z = k | x_n) = π_k N(x_n; μ_k, Σ_k) / p(x_n) (eq. 9.23).
  After it, ELBO = log p(x): the bound touches (the gap is 0 up to rounding). Computed in log space,
  log r_nk = log p(x_n, k) − logsumexp_j log p(x_n, j), since the densities underflow far from a mode.
* **M-step** (:func:`m_step`): for fixed q, the ELBO is Σ_nk r_nk log p(x_n, k) plus a constant, a weighted
  Gaussian log-likelihood, maximised in closed form (eqs. 9.24–9.27): with N_k = Σ_n r_nk,

      π_k = N_k / N,   μ_k = Σ_n r_nk x_n / N_k,   Σ_k = Σ_n r_nk (x_n − μ_k)(x_n − μ_k)ᵀ / N_k.

  The ELBO rises; log p(x) rises at least as much, because the KL, 0 before the step, is ≥ 0 after it.

So log p(x) never decreases over iterations (Bishop Sec. 9.4, Fig. 9.14): the E-step lifts the bound to
touch log p(x), the M-step pushes the bound, and log p(x) with it, up. A VAE gives up both exact steps —
q(z|x) is an amortised Gaussian, not the posterior, and the decoder has no closed-form maximiser — in
exchange for continuous latents and neural decoders; see examples/em_gmm.py.

Everything here is NumPy float64 (no engine, no gradients): the point is the exact steps and their algebra.
"""

from __future__ import annotations

import dataclasses
import math

import numpy

LOG_2PI = math.log(2 * math.pi)


@dataclasses.dataclass
class Mixture:
    """The parameters of a K-component Gaussian mixture in D dimensions (float64)."""

    weights: numpy.ndarray  # (K,) π_k, positive, summing to 1
    means: numpy.ndarray  # (K, D) μ_k
    covariances: numpy.ndarray  # (K, D, D) Σ_k, symmetric positive definite

    @property
    def k(self):
        return len(self.weights)


def ring_mixture(modes=8, radius=2.0, std=0.1):
    """The exact density of :func:`tinyvae.data.ring` (same defaults): an equal mixture of ``modes``
    isotropic Gaussians N(c_k, std² I), the centres c_k evenly spaced on a circle of ``radius``."""
    angles = 2 * numpy.pi * numpy.arange(modes) / modes  # (K,)
    means = radius * numpy.stack([numpy.cos(angles), numpy.sin(angles)], axis=1)  # (K, 2)
    covariances = numpy.broadcast_to(std**2 * numpy.eye(2), (modes, 2, 2)).copy()  # (K, 2, 2)
    return Mixture(numpy.full(modes, 1.0 / modes), means, covariances)


def logsumexp(a, axis):
    """log Σ exp(a) along ``axis``, shifted by the maximum so the largest term is exp(0) = 1 (the densities
    of points far from every mode are exp(−1000) and would round to 0 without the shift)."""
    shift = a.max(axis=axis, keepdims=True)
    return numpy.log(numpy.exp(a - shift).sum(axis=axis)) + numpy.squeeze(shift, axis=axis)


def gaussian_log_density(x, mean, covariance):
    """log N(x; μ, Σ) for each row of x (N, D), via the Cholesky factor Σ = L Lᵀ:

    log N = −½ (D log 2π + log det Σ + ‖L⁻¹ (x − μ)‖²),   log det Σ = 2 Σ_i log L_ii.
    """
    chol = numpy.linalg.cholesky(covariance)  # (D, D), lower triangular
    white = numpy.linalg.solve(chol, (x - mean).T)  # (D, N): L⁻¹ (x − μ)
    log_det = 2 * numpy.log(numpy.diag(chol)).sum()
    return -0.5 * (x.shape[1] * LOG_2PI + log_det + (white**2).sum(axis=0))  # (N,)


def log_joint(x, params):
    """log p(x_n, z = k) = log π_k + log N(x_n; μ_k, Σ_k), shape (N, K)."""
    x = numpy.asarray(x, dtype=numpy.float64)
    columns = [
        math.log(w) + gaussian_log_density(x, m, c)
        for w, m, c in zip(params.weights, params.means, params.covariances, strict=True)
    ]
    return numpy.stack(columns, axis=1)  # (N, K)


def log_marginal(x, params):
    """log p(x_n) = logsumexp_k log p(x_n, z = k), shape (N,): the mixture's log density (Bishop eq. 9.14)."""
    return logsumexp(log_joint(x, params), axis=1)


def e_step(x, params):
    """The exact posterior over components: log responsibilities log r_nk = log p(x_n, k) − log p(x_n),
    shape (N, K) (Bishop eq. 9.23, in log space). Each row of exp(log r) sums to 1."""
    joint = log_joint(x, params)  # (N, K)
    return joint - logsumexp(joint, axis=1)[:, None]


def elbo(x, params, log_resp):
    """ELBO(q) = Σ_k q(k) [log p(x_n, k) − log q(k)] for each point, shape (N,), with q(k) = exp(log_resp)
    (N, K) any distribution over components; q(k) = 0 contributes 0 (the limit of q log q)."""
    q = numpy.exp(log_resp)  # (N, K)
    terms = numpy.where(q > 0, q * (log_joint(x, params) - log_resp), 0.0)
    return terms.sum(axis=1)


def m_step(x, log_resp, min_variance=0.0):
    """The parameters that maximise the ELBO for fixed responsibilities (Bishop eqs. 9.24–9.27).

    ``min_variance`` adds that much to every covariance's diagonal, so a component that settles on a
    single point keeps a finite density (0 gives the exact maximiser; the fits below use 1e-6, far below the
    ring's variance 0.01, as scikit-learn's ``reg_covar`` does).
    """
    x = numpy.asarray(x, dtype=numpy.float64)  # (N, D)
    resp = numpy.exp(log_resp)  # (N, K)
    counts = resp.sum(axis=0)  # (K,) N_k, the effective number of points each component owns
    means = resp.T @ x / counts[:, None]  # (K, D)
    covariances = numpy.empty((len(counts), x.shape[1], x.shape[1]))  # (K, D, D)
    for k in range(len(counts)):
        centred = x - means[k]  # (N, D)
        covariances[k] = (resp[:, k, None] * centred).T @ centred / counts[k]
    covariances += min_variance * numpy.eye(x.shape[1])
    return Mixture(counts / len(x), means, covariances)


def initial_mixture(x, k, rng):
    """A starting point: means chosen among the data by k-means++ seeding (Arthur & Vassilvitskii 2007:
    each next mean is a data point drawn with probability ∝ its squared distance to the nearest mean so
    far, so the means spread over the data), every covariance the data's covariance, equal weights.

    EM only climbs to a *local* maximum of log p(x). On the ring, two components sometimes end up sharing
    one mode while a third stretches over two (log p(x) about −0.64 instead of −0.30 nats per point);
    running EM from several starts and keeping the best fit (examples/em_gmm.py) is the usual remedy."""
    x = numpy.asarray(x, dtype=numpy.float64)  # (N, D)
    means = x[rng.integers(len(x))][None]  # (1, D)
    for _ in range(k - 1):
        nearest = ((x[:, None, :] - means[None]) ** 2).sum(axis=2).min(axis=1)  # (N,)
        means = numpy.vstack([means, x[rng.choice(len(x), p=nearest / nearest.sum())]])
    covariances = numpy.broadcast_to(numpy.cov(x.T), (k, x.shape[1], x.shape[1])).copy()  # (K, D, D)
    return Mixture(numpy.full(k, 1.0 / k), means, covariances)


def fit(x, k=None, iterations=100, rng=None, init=None, min_variance=1e-6, tol=0.0):
    """Run EM from ``init`` (a :class:`Mixture`) or from :func:`initial_mixture` (``k`` components, ``rng``).

    Returns ``(params, trace)``; ``trace`` has one dict per iteration, each a mean over the points in nats:
    ``log_px`` and ``elbo_e`` (log p(x) and the ELBO right after the E-step: equal up to rounding),
    ``elbo_m`` and ``log_px_m`` (the same ELBO and log p(x) right after the M-step: ``elbo_m ≤ log_px_m``).
    Stops early once log p(x) rises by less than ``tol`` in an iteration (0: run every iteration).
    """
    x = numpy.asarray(x, dtype=numpy.float64)
    params = init if init is not None else initial_mixture(x, k, rng)
    trace = []
    for _ in range(iterations):
        log_resp = e_step(x, params)  # q(z) = p(z | x): the bound touches log p(x)
        step = {"log_px": log_marginal(x, params).mean(), "elbo_e": elbo(x, params, log_resp).mean()}
        params = m_step(x, log_resp, min_variance)  # maximise the bound for this q
        step["elbo_m"] = elbo(x, params, log_resp).mean()
        step["log_px_m"] = log_marginal(x, params).mean()
        trace.append({key: float(value) for key, value in step.items()})
        if tol and step["log_px_m"] - step["log_px"] < tol:
            break
    return params, trace
