"""Priors p(z): what a model's latent space looks like before any data is seen.

Every model with a prior holds it as ``model.prior``; training, plots, sampling and evaluation ask it and
assume nothing else (no N(0, I) anywhere outside this file). A prior answers:

* ``log_prob(z)``: log p(z) per example (summed over the latent dimensions), a Tensor, differentiable in z
  and, for a prior with parameters, in them (a learned prior is a :class:`tinyvae.nn.Module`, so its
  parameters train with the model's);
* ``sample(n, rng)``: n draws, an array (n, latent size), what ``model.decode`` takes;
* ``analytic_kl(mu, logvar)``: KL(N(μ, σ²) ‖ p) in closed form per example, or None where there is none
  (the caller then estimates it by Monte Carlo, log q(z|x) − log p(z));
* ``quantile(p)``: per-dimension marginal quantiles, for the decoded-manifold figure;
* ``description``: a few words for figure titles ("N(0, I)").
"""

from __future__ import annotations

import math

import numpy

import tinyvae.functional as F
from tinyvae.backend import to_host
from tinyvae.tensor import Tensor


def normal_ppf(p):
    """Φ⁻¹(p), the inverse CDF of N(0, 1), elementwise for p in (0, 1).

    Start from the rational approximation of Abramowitz & Stegun (1964), 26.2.23 (absolute error below
    4.5e-4), then take two Newton steps on Φ(z) − p with Φ(z) = ½(1 + erf(z/√2)) and Φ'(z) = φ(z); each
    step roughly squares the error, so the result is accurate to float64 rounding in the body of the
    distribution.
    """
    p = numpy.asarray(p, dtype=numpy.float64)
    if not numpy.all((p > 0) & (p < 1)):
        raise ValueError(f"normal_ppf: probabilities must lie strictly between 0 and 1, got {p}")
    q = numpy.minimum(p, 1.0 - p)  # the tail probability; the sign is restored below
    t = numpy.sqrt(-2.0 * numpy.log(q))
    z = t - (2.515517 + 0.802853 * t + 0.010328 * t**2) / (
        1.0 + 1.432788 * t + 0.189269 * t**2 + 0.001308 * t**3
    )
    z = numpy.where(p < 0.5, -z, z)
    erf = numpy.vectorize(math.erf, otypes=[numpy.float64])
    for _ in range(2):
        cdf = 0.5 * (1.0 + erf(z / math.sqrt(2.0)))
        pdf = numpy.exp(-0.5 * z**2) / math.sqrt(2.0 * math.pi)
        z = z - (cdf - p) / pdf
    return z


class Prior:
    """The interface, with the defaults a new prior inherits: no closed-form KL, and quantiles read off
    20,000 draws (a fixed seed, so a figure does not change between calls)."""

    description = "p(z)"

    def log_prob(self, z):
        raise NotImplementedError

    def sample(self, n, rng):
        raise NotImplementedError

    def analytic_kl(self, mu, logvar):
        return None

    def quantile(self, p):
        """(len(p), latent size): the p-quantiles of each latent dimension's marginal."""
        draws = to_host(self.sample(20_000, numpy.random.default_rng(0))).astype(numpy.float64)  # (20000, Z)
        return numpy.quantile(draws, numpy.asarray(p, dtype=numpy.float64), axis=0)


class StandardNormal(Prior):
    """p(z) = N(0, I) over ``dim`` dimensions: the prior of Kingma & Welling (2014)."""

    description = "N(0, I)"

    def __init__(self, dim, dtype="float32"):
        self.dim, self.dtype = int(dim), numpy.dtype(dtype)

    def log_prob(self, z):
        """log N(z; 0, I) = −½ Σ_j (z_j² + log 2π), a Tensor of shape z.shape[:-1]."""
        return F.gaussian_log_prob(z, 0.0, 0.0).sum(axis=-1)

    def sample(self, n, rng):
        return rng.standard_normal((n, self.dim)).astype(self.dtype)

    def analytic_kl(self, mu, logvar):
        """KL(N(μ, σ²) ‖ N(0, I)) = ½ Σ_j (μ_j² + σ_j² − log σ_j² − 1) (Kingma & Welling 2014, App. B)."""
        return F.gaussian_kl(mu, logvar)

    def quantile(self, p):
        """Exact: Φ⁻¹(p) in every dimension."""
        column = normal_ppf(numpy.asarray(p, dtype=numpy.float64))[:, None]  # (len(p), 1)
        return numpy.repeat(column, self.dim, axis=1)


class UniformCodes(Prior):
    """p(z) uniform over the K codes of a codebook, independently for each of L latent vectors: the untrained
    prior of the VQ-VAE's bound (van den Oord et al. 2017, Sec. 3.1). ``codebook()`` returns the current
    (K, D) codes, so the prior follows the codebook as it trains."""

    def __init__(self, codebook, num_vectors):
        self.codebook, self.num_vectors = codebook, num_vectors

    @property
    def description(self):
        return f"uniform over the {len(self.codebook())} codes"

    def log_prob(self, z):
        """−L log K for every z made of codes (the only points this prior gives mass to; it is not checked
        that z is made of codes)."""
        codes = self.codebook()
        value = -self.num_vectors * math.log(len(codes))
        return Tensor(numpy.full(z.shape[:-1], value, dtype=codes.dtype))

    def sample(self, n, rng):
        """(n, L·D): L codes drawn uniformly for each sample, concatenated."""
        codes = self.codebook()
        indices = rng.integers(len(codes), size=(n, self.num_vectors))  # (n, L)
        return codes[indices].reshape(n, -1)


class MarkovChain(Prior):
    """p(z_T) Π_{t<T} p(z_t | z_{t+1}) with p(z_T) = N(0, I) and Gaussian conditionals given by networks
    (the hierarchical VAE's top-down chain, Luo 2022 eq. 6). ``conditionals[t]`` maps z_{t+2} to (μ, log σ²)
    of z_{t+1} (0-based, bottom first). A draw runs the chain top-down and returns the bottom layer z_1,
    the one the decoder reads; :meth:`log_prob` takes the whole chain."""

    description = "the top-down chain p(z_T) Π p(z_t | z_{t+1})"

    def __init__(self, conditionals, top_dim, dtype):
        self.conditionals, self.top = conditionals, StandardNormal(top_dim, dtype)
        self.dtype = numpy.dtype(dtype)

    def sample_chain(self, n, rng):
        """[z_1, …, z_T] as Tensors, drawn top-down (z_T first)."""
        z = Tensor(self.top.sample(n, rng))
        chain = [z]
        for conditional in reversed(self.conditionals):
            mu, logvar = conditional(z)
            z = F.reparameterize(mu, logvar, rng.standard_normal(mu.shape).astype(self.dtype))
            chain.append(z)
        return chain[::-1]

    def sample(self, n, rng):
        return self.sample_chain(n, rng)[0].data

    def log_prob(self, chain):
        """log p(z_T) + Σ_t log p(z_t | z_{t+1}) for ``chain`` = [z_1, …, z_T] (Tensors)."""
        total = self.top.log_prob(chain[-1])
        for t, conditional in enumerate(self.conditionals):
            mu, logvar = conditional(chain[t + 1])
            total = total + F.gaussian_log_prob(chain[t], mu, logvar).sum(axis=-1)
        return total
