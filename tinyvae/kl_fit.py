"""Which KL? Fitting one Gaussian q to a two-mode target p by KL(q ‖ p) and by KL(p ‖ q).

    from tinyvae import kl_fit

    target = kl_fit.TwoModes()                               # p: ½ N(−2, 0.5²) + ½ N(2, 0.5²)
    mu, sigma, _ = kl_fit.fit_reverse_kl(target, rng)        # mode-seeking: sits on one mode
    mu, sigma, _ = kl_fit.fit_forward_kl(target, samples, rng)  # mass-covering: spans both

The two directions of the KL divergence ask different things of q (Bishop 2006, Sec. 10.1.2, Fig. 10.3;
Murphy 2012, Sec. 21.2.2):

* **Reverse**, KL(q ‖ p) = E_q[log q(z) − log p(z)]: the expectation is under q, so q is punished wherever it
  puts mass that p lacks (log p → −∞ between the modes) and never for missing a mode. The minimiser sits on
  one mode, narrow: *mode-seeking*. This is the KL of variational inference: a VAE's ELBO gap is
  KL(q(z|x) ‖ p(z|x)). It needs only log p up to a constant and samples of q, and its gradient comes from
  the reparameterisation z = μ + σ ε (Kingma & Welling 2014, Sec. 2.4), here through the engine.
* **Forward**, KL(p ‖ q) = E_p[log p] − E_p[log q] = −H(p) + H(p, q): the first term does not depend on q, so
  minimising it is maximising E_p[log q(z)], maximum likelihood on samples of p. q is punished wherever p
  has mass and q has little, so it covers both modes: *mass-covering*. This is the KL that maximum
  likelihood (and EM, and a VAE's decoder) minimises between the data and the model. For a Gaussian q the
  maximiser has a closed form — match the moments of p (:func:`moment_match`).

Reverse KL is fitted by stochastic gradients (fresh ε each step); forward KL by full-batch gradients on a
fixed sample of p, whose exact optimum is that sample's mean and variance (so the fit can be checked against
:func:`sample_moments` to optimiser precision, and those against :func:`moment_match` to sampling error).
"""

from __future__ import annotations

import dataclasses
import math

import numpy

import tinyvae.functional as F
from tinyvae import optim
from tinyvae.tensor import Tensor


@dataclasses.dataclass
class TwoModes:
    """p(z) = Σ_k w_k N(z; m_k, s_k²) in one dimension: the bimodal target."""

    weights: tuple = (0.5, 0.5)  # w_k
    means: tuple = (-2.0, 2.0)  # m_k: the modes, 4 apart
    stds: tuple = (0.5, 0.5)  # s_k: each mode 8 standard deviations from the other

    def log_prob(self, z):
        """log p(z) = logsumexp_k [log w_k + log N(z; m_k, s_k²)] for a Tensor z of shape (S,), through the
        engine (so gradients reach z)."""
        z = z.reshape(-1, 1)  # (S, 1) against the (K,) components
        log_w = Tensor(numpy.log(self.weights), dtype=z.dtype)  # (K,)
        mean = Tensor(numpy.asarray(self.means), dtype=z.dtype)  # (K,)
        logvar = Tensor(2 * numpy.log(self.stds), dtype=z.dtype)  # (K,)
        return F.logsumexp(log_w + F.gaussian_log_prob(z, mean, logvar), axis=1)  # (S,)

    def log_density(self, z):
        """log p(z) for a NumPy array, any shape (float64)."""
        z = numpy.asarray(z, dtype=numpy.float64)[..., None]  # (..., 1)
        w, m, s = (numpy.asarray(v) for v in (self.weights, self.means, self.stds))
        terms = numpy.log(w) - 0.5 * ((z - m) / s) ** 2 - numpy.log(s) - 0.5 * math.log(2 * math.pi)
        shift = terms.max(axis=-1, keepdims=True)
        return numpy.log(numpy.exp(terms - shift).sum(axis=-1)) + shift[..., 0]

    def sample(self, n, rng):
        """n draws of p, shape (n,) float64."""
        component = rng.choice(len(self.weights), size=n, p=self.weights)  # (n,)
        return numpy.asarray(self.means)[component] + numpy.asarray(self.stds)[component] * (
            rng.standard_normal(n)
        )


def moment_match(target):
    """The Gaussian that minimises KL(p ‖ q): q's mean and standard deviation are p's (Bishop eq. 10.17's
    1-D case; setting d/dμ and d/dσ² of E_p[log N(z; μ, σ²)] to zero gives μ = E_p z, σ² = Var_p z). For a
    mixture, E z = Σ w_k m_k and E z² = Σ w_k (s_k² + m_k²)."""
    w, m, s = (numpy.asarray(v, dtype=numpy.float64) for v in (target.weights, target.means, target.stds))
    mean = float((w * m).sum())
    variance = float((w * (s**2 + m**2)).sum()) - mean**2
    return mean, math.sqrt(variance)


def sample_moments(samples):
    """Mean and (biased, maximum-likelihood) standard deviation of a sample: the exact maximiser of the
    sample's average log N(z; μ, σ²)."""
    return float(samples.mean()), float(samples.std())


def fit_reverse_kl(target, rng, steps=2000, samples=64, lr=0.02, init=(0.5, 0.0)):
    """Minimise KL(q ‖ p) over q = N(μ, σ²) by Adam on the reparameterised estimate

        KL ≈ (1/S) Σ_s [log q(z_s) − log p(z_s)],   z_s = μ + σ ε_s,   ε_s ~ N(0, 1) from ``rng``,

    whose gradient flows through z_s to μ and log σ² (the engine's :func:`~tinyvae.functional.reparameterize`
    backward) and through log q's own parameters. ``init`` is the starting (μ, log σ²): which mode q ends on
    depends on it (from μ = 0.5 it rolls to the mode at +2). The step size decays linearly to 0, so the last
    steps average the gradient noise out rather than jitter around the optimum. Returns (μ, σ, trace of the
    KL estimates)."""
    mu = Tensor(numpy.array([init[0]]), requires_grad=True, dtype=numpy.float64)  # (1,)
    logvar = Tensor(numpy.array([init[1]]), requires_grad=True, dtype=numpy.float64)  # (1,)
    optimizer = optim.Adam([mu, logvar], lr=lr)
    trace = []
    for step in range(steps):
        optimizer.lr = lr * (1 - step / steps)
        eps = rng.standard_normal(samples)  # (S,)
        z = F.reparameterize(mu, logvar, eps)  # (S,)
        kl = F.mean(F.gaussian_log_prob(z, mu, logvar) - target.log_prob(z))
        optimizer.zero_grad()
        kl.backward()
        optimizer.step()
        trace.append(kl.item())
    return float(mu.item()), math.exp(0.5 * logvar.item()), trace


def fit_forward_kl(samples, rng=None, steps=1500, lr=0.05, init=(0.5, 0.0)):
    """Minimise KL(p ‖ q) over q = N(μ, σ²) given ``samples`` of p: maximise (1/N) Σ_n log N(z_n; μ, σ²),
    the cross-entropy term (−H(p) does not depend on q), by full-batch Adam through the engine. ``rng`` is
    unused (the sample is fixed; kept so both fits are called alike). Returns (μ, σ, trace of −E_p log q)."""
    z = Tensor(numpy.asarray(samples, dtype=numpy.float64))  # (N,)
    mu = Tensor(numpy.array([init[0]]), requires_grad=True, dtype=numpy.float64)  # (1,)
    logvar = Tensor(numpy.array([init[1]]), requires_grad=True, dtype=numpy.float64)  # (1,)
    optimizer = optim.Adam([mu, logvar], lr=lr)
    trace = []
    for _ in range(steps):
        cross_entropy = -F.mean(F.gaussian_log_prob(z, mu, logvar))
        optimizer.zero_grad()
        cross_entropy.backward()
        optimizer.step()
        trace.append(cross_entropy.item())
    return float(mu.item()), math.exp(0.5 * logvar.item()), trace


def gaussian_log_density(z, mean, std):
    """log N(z; mean, std²), NumPy float64."""
    z = numpy.asarray(z, dtype=numpy.float64)
    return -0.5 * ((z - mean) / std) ** 2 - math.log(std) - 0.5 * math.log(2 * math.pi)


def monte_carlo(values):
    """(mean, standard error) of a sample of values: the estimate and its ±1σ sampling error."""
    return float(values.mean()), float(values.std(ddof=1) / math.sqrt(len(values)))


def kl_both_ways(target, mean, std, n, rng):
    """Both KLs between the target p and q = N(mean, std²), estimated with n samples each, with standard
    errors, and the split KL(p ‖ q) = H(p, q) − H(p) (entropy and cross-entropy on the same samples of p).

    Returns a dict of (estimate, standard error) pairs: ``reverse`` KL(q ‖ p), ``forward`` KL(p ‖ q),
    ``cross_entropy`` H(p, q), ``entropy`` H(p)."""
    zq = mean + std * rng.standard_normal(n)  # (n,) samples of q
    zp = target.sample(n, rng)  # (n,) samples of p
    log_p, log_q = target.log_density(zp), gaussian_log_density(zp, mean, std)
    return {
        "reverse": monte_carlo(gaussian_log_density(zq, mean, std) - target.log_density(zq)),
        "forward": monte_carlo(log_p - log_q),
        "cross_entropy": monte_carlo(-log_q),
        "entropy": monte_carlo(-log_p),
    }
