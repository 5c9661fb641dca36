"""Normalizing-flow layers for richer posteriors (Rezende & Mohamed 2015, "Variational Inference with
Normalizing Flows").

A flow pushes a sample z of a simple density q_0 through invertible maps f_1 … f_K. By the change of
variables (their eq. 5–6) the density of z_K = f_K ∘ … ∘ f_1(z_0) is

    log q_K(z_K) = log q_0(z_0) − Σ_k log |det ∂f_k/∂z_{k−1}|,

so each layer returns its output *and* its log-determinant. Both layers here change z by a rank-one
(planar) or radial term, which makes the determinant cost O(Z) instead of O(Z³).

Every layer is written with ops whose backward passes are already proved (``F.tanh``, ``F.softplus``,
``F.log``, sums and broadcasting), so no new op class is needed. The parameters are *global* (shared by
every example), not amortised: the encoder still gives the base Gaussian per example, and the flow
reshapes it the same way for all of them. This is the simplest variant; Rezende & Mohamed (Sec. 4.2,
Algorithm 1) also allow the encoder to output the flow parameters.

Inputs z have shape (..., Z): any leading dimensions (batch, importance samples) broadcast through.
"""

from __future__ import annotations

import math

import numpy

import tinyvae.functional as F
from tinyvae import nn
from tinyvae.backend import array_module
from tinyvae.tensor import Tensor


def _check_z(layer, z, z_dim):
    if not isinstance(z, Tensor):
        z = Tensor(z if array_module(z) is not numpy else numpy.asarray(z))  # a device array stays there
    if z.ndim < 1 or z.shape[-1] != z_dim:
        raise ValueError(f"{layer}: z has shape {z.shape} but the flow expects (..., {z_dim})")
    return z


def _check_z_dim(layer, z_dim):
    if not isinstance(z_dim, int | numpy.integer) or isinstance(z_dim, bool) or z_dim < 1:
        raise ValueError(f"{layer}: z_dim must be a positive integer, got {z_dim!r}")


class PlanarFlow(nn.Module):
    """f(z) = z + û h(wᵀz + b), h = tanh (Rezende & Mohamed 2015, eq. 10), with log-determinant

        log |det ∂f/∂z| = log |1 + ûᵀ ψ(z)|,   ψ(z) = h'(wᵀz + b) w            (their eq. 11–12).

    Invertibility needs wᵀû ≥ −1 (their Appendix A.1). The raw parameter ``u`` is unconstrained and

        û = u + [m(wᵀu) − wᵀu] w / ‖w‖²,   m(a) = −1 + softplus(a),

    so that wᵀû = m(wᵀu) > −1 for every u. Then ûᵀψ = h'·wᵀû with h' = 1 − tanh² ∈ (0, 1], hence
    1 + ûᵀψ = 1 + h'·m(wᵀu) > 0: the absolute value is never needed, and we compute it in this form (exact
    in real arithmetic, and free of the rounding of w·û). ``w`` must not be 0 (the map is then a plain
    shift z + u tanh(b), but the formula for û divides by ‖w‖²); it is initialised away from 0.
    """

    def __init__(self, z_dim, rng=None, dtype="float32"):
        super().__init__()
        _check_z_dim("PlanarFlow", z_dim)
        rng = nn.as_generator(rng)
        scale = 1.0 / math.sqrt(z_dim)  # ‖w‖ ≈ 1 at initialisation, so û is not dominated by 1/‖w‖²
        self.z_dim = int(z_dim)
        self.u = nn.Parameter(rng.normal(0.0, scale, z_dim).astype(dtype))  # (Z,) raw, unconstrained
        self.w = nn.Parameter(rng.normal(0.0, scale, z_dim).astype(dtype))  # (Z,)
        self.b = nn.Parameter(numpy.zeros(1, dtype=dtype))  # (1,)

    def constrained_u(self):
        """(û, m(wᵀu)): the reparameterised u of Appendix A.1 and wᵀû, which equals m(wᵀu) > −1."""
        w_dot_u = (self.w * self.u).sum(axis=-1, keepdims=True)  # (1,)
        m = F.softplus(w_dot_u) - 1.0  # (1,)  m(a) = −1 + log(1 + e^a) > −1
        u_hat = self.u + (m - w_dot_u) * self.w / (self.w * self.w).sum(axis=-1, keepdims=True)  # (Z,)
        return u_hat, m

    def forward(self, z):
        """(f(z), log |det ∂f/∂z|) for z of shape (..., Z): shapes (..., Z) and (...,)."""
        z = _check_z("PlanarFlow", z, self.z_dim)
        u_hat, w_dot_u_hat = self.constrained_u()
        activation = F.tanh((z * self.w).sum(axis=-1, keepdims=True) + self.b)  # (..., 1)  h(wᵀz + b)
        out = z + u_hat * activation  # (..., Z)  eq. 10
        slope = 1.0 - activation * activation  # (..., 1)  h'(wᵀz + b) = 1 − tanh²
        log_det = F.log(1.0 + slope * w_dot_u_hat)  # (..., 1)  eq. 12, with ûᵀψ = h'·wᵀû
        return out, log_det.sum(axis=-1)  # (..., Z), (...,)


class RadialFlow(nn.Module):
    """f(z) = z + β h(α, r)(z − z₀), r = ‖z − z₀‖, h(α, r) = 1 / (α + r) (Rezende & Mohamed 2015, eq. 14),

        log |det ∂f/∂z| = (Z − 1) log(1 + β h) + log(1 + β h + β h'(α, r) r),   h' = −1 / (α + r)².

    Invertibility needs α > 0 and β ≥ −α (their Appendix A.2), enforced by α = softplus(a) and
    β = −α + softplus(c) for unconstrained a, c. Both factors are then positive: 1 + βh = (α + r + β)/(α + r)
    and 1 + βh + βh'r = 1 + αβ/(α + r)² ≥ 1 − α²/(α + r)². The map is not differentiable through
    r = ‖z − z₀‖ at z = z₀ (the gradient of the norm is undefined there), which has probability 0.
    """

    def __init__(self, z_dim, rng=None, dtype="float32"):
        super().__init__()
        _check_z_dim("RadialFlow", z_dim)
        rng = nn.as_generator(rng)
        self.z_dim = int(z_dim)
        self.z0 = nn.Parameter(rng.normal(0.0, 1.0 / math.sqrt(z_dim), z_dim).astype(dtype))  # (Z,)
        self.alpha_raw = nn.Parameter(numpy.zeros(1, dtype=dtype))  # (1,)  α = softplus(·) = log 2
        self.beta_raw = nn.Parameter(numpy.zeros(1, dtype=dtype))  # (1,)  β = −α + softplus(·) = 0

    def constrained(self):
        """(α, β) with α > 0 and β ≥ −α (Appendix A.2)."""
        alpha = F.softplus(self.alpha_raw)
        return alpha, F.softplus(self.beta_raw) - alpha

    def forward(self, z):
        """(f(z), log |det ∂f/∂z|) for z of shape (..., Z): shapes (..., Z) and (...,)."""
        z = _check_z("RadialFlow", z, self.z_dim)
        alpha, beta = self.constrained()
        diff = z - self.z0  # (..., Z)
        r = F.sqrt((diff * diff).sum(axis=-1, keepdims=True))  # (..., 1)
        h = 1.0 / (alpha + r)  # (..., 1)
        beta_h = beta * h  # (..., 1)
        out = z + beta_h * diff  # (..., Z)  eq. 14
        # 1 + βh + βh'r = 1 + βh − βr h² = 1 + αβ h², the second factor of the determinant
        log_det = (self.z_dim - 1) * F.log(1.0 + beta_h) + F.log(1.0 + alpha * beta * h * h)  # (..., 1)
        return out, log_det.sum(axis=-1)


FLOWS = {"planar": PlanarFlow, "radial": RadialFlow}


class FlowSequence(nn.Module):
    """f_K ∘ … ∘ f_1 with the log-determinants added up: log q_K(z_K) = log q_0(z_0) − Σ_k log|det J_k|
    (Rezende & Mohamed 2015, eq. 13). Zero layers is the identity with log-determinant 0."""

    def __init__(self, kind, steps, z_dim, rng=None, dtype="float32"):
        super().__init__()
        if kind not in FLOWS:
            raise ValueError(f"FlowSequence: flow must be one of {sorted(FLOWS)}, got {kind!r}")
        if not isinstance(steps, int | numpy.integer) or isinstance(steps, bool) or steps < 0:
            raise ValueError(f"FlowSequence: steps must be an integer >= 0, got {steps!r}")
        rng = nn.as_generator(rng)
        self.layers = [FLOWS[kind](z_dim, rng=rng, dtype=dtype) for _ in range(steps)]

    def forward(self, z):
        """(z_K, Σ_k log |det J_k|): shapes (..., Z) and (...,)."""
        total = None
        for layer in self.layers:
            z, log_det = layer(z)
            total = log_det if total is None else total + log_det
        if total is None:
            total = Tensor(numpy.zeros(z.shape[:-1], dtype=z.dtype))
        return z, total

    def __len__(self):
        return len(self.layers)
