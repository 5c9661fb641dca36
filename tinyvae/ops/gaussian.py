"""The Gaussian pieces of the VAE objective: the reparameterised sample and the analytic KL.

Variances are carried as log-variances ``logvar = log σ²``: any real number is a valid value, and
σ = exp(logvar / 2) is positive by construction (Kingma & Welling 2014, Sec. 2.4 and Appendix B).
"""

from __future__ import annotations

from tinyvae.autodiff import Function, as_operand, check_broadcastable, is_tensor, sum_to_shape
from tinyvae.backend import array_module
from tinyvae.ops.elementwise import stable_sigmoid

# The range an encoder's log σ² is softly clamped to (see SoftClamp). Why these ends: exp overflows float32
# at 88.7, and the formulas multiply by exp(logvar) (the KL's σ², the sample's σ) or exp(−logvar) (the
# Gaussian log-density's 1/σ², which meets squared differences). At −30 the density's 1/σ² is 1e13 and at
# 20 the KL's σ² is 5e8 and the sample's σ 2e4: finite with room to spare, and far outside any posterior a
# VAE learns (trained MNIST encoders stay within about [−12, 2]), so the clamp changes nothing in use.
LOGVAR_RANGE = (-30.0, 20.0)

# exp(logvar) is +inf for every logvar above 88.7 (float32) or 709.8 (float64), so capping logvar at 1e4
# where the KL subtracts it changes no finite KL, and turns σ² − logvar = +inf − +inf (NaN) at logvar = +inf
# into +inf − 1e4 = +inf: a posterior with infinite variance is infinitely far from any prior.
_LOGVAR_CAP = 1e4


def _refuse_unbroadcastable(op, **named):
    """After a forward failed: if the named tensors' shapes do not broadcast together, raise a ValueError
    naming each argument and its shape (NumPy's "operands could not be broadcast" names neither). Called
    only on failure, so the common path pays nothing."""
    shapes = {name: tuple(t.shape) for name, t in named.items() if is_tensor(t)}
    try:
        check_broadcastable(op, *shapes.values(), names=list(shapes))
    except ValueError as error:
        raise error from None  # NumPy's message would only repeat it, less clearly


class Reparameterize(Function):
    """z = μ + σ ε with σ = exp(logvar / 2): a sample of N(μ, σ²) written as a differentiable function
    of (μ, logvar) and noise ε ~ N(0, I) drawn outside (Kingma & Welling 2014, eq. 10)."""

    @staticmethod
    def forward(ctx, mu, logvar, eps):
        xp = array_module(mu, logvar, eps)
        std = xp.exp(0.5 * logvar)
        ctx.save(std, eps)
        return mu + std * eps

    @staticmethod
    def backward(ctx, g):
        """dz/dμ = 1;  dz/dlogvar = ε · dσ/dlogvar = ε σ / 2;  dz/dε = σ."""
        std, eps = ctx.saved
        grad_mu = sum_to_shape(g, ctx.inputs[0].shape) if ctx.needs_input_grad[0] else None
        grad_logvar = (
            sum_to_shape(0.5 * g * std * eps, ctx.inputs[1].shape) if ctx.needs_input_grad[1] else None
        )
        grad_eps = sum_to_shape(g * std, ctx.inputs[2].shape) if ctx.needs_input_grad[2] else None
        return grad_mu, grad_logvar, grad_eps


def reparameterize(mu, logvar, eps):
    """``mu + exp(logvar / 2) * eps``. The noise is an argument, so a test can hold it fixed; draw it with
    ``rng.standard_normal(shape)``. Shapes broadcast (e.g. eps of shape (K, B, Z) for K samples); shapes
    that do not are refused with a ValueError naming mu, logvar and eps and their shapes."""
    mu, logvar, eps = as_operand(mu), as_operand(logvar), as_operand(eps)
    try:
        return Reparameterize.apply(mu, logvar, eps)
    except ValueError:
        _refuse_unbroadcastable("reparameterize", mu=mu, logvar=logvar, eps=eps)
        raise


class GaussianKL(Function):
    """KL(N(μ, diag σ²) ‖ N(μ_p, diag σ_p²)), summed over the last axis:

        KL = ½ Σ_j [ log σ_p² − log σ² + (σ² + (μ − μ_p)²) / σ_p² − 1 ]

    With the standard-normal prior (μ_p = 0, σ_p = 1) this is ½ Σ (μ² + σ² − log σ² − 1)
    (Kingma & Welling 2014, Appendix B).

    Edge: logvar = +inf (σ² = ∞) gives KL = +inf, the limit, rather than ∞ − ∞ = NaN (see _LOGVAR_CAP);
    logvar = −inf (σ² = 0) gives +inf as it is (−log σ² = +∞).
    """

    @staticmethod
    def forward(ctx, mu, logvar, mu_p, logvar_p):
        xp = array_module(mu, logvar)
        var = xp.exp(logvar)
        capped = xp.minimum(logvar, _LOGVAR_CAP)  # = logvar, except +inf → 1e4: KL = +inf, not NaN
        if mu_p is None:  # N(0, I): the common case, with fewer passes over the data
            diff, inv_var_p = mu, None
            terms = mu * mu + var - capped - 1
        else:
            diff = mu - mu_p
            inv_var_p = xp.exp(-logvar_p)
            terms = logvar_p - capped + (var + diff * diff) * inv_var_p - 1
        ctx.save(var, diff, inv_var_p)
        ctx.terms_shape = terms.shape  # (..., Z): all inputs broadcast together, before the sum
        return 0.5 * terms.sum(axis=-1)

    @staticmethod
    def backward(ctx, g):
        """Per dimension j, with r = 1/σ_p² (r = 1 for the standard prior):
        dKL/dμ = (μ − μ_p) r,   dKL/dlogvar = ½ (σ² r − 1),
        dKL/dμ_p = −(μ − μ_p) r,   dKL/dlogvar_p = ½ (1 − (σ² + (μ − μ_p)²) r).
        At logvar = +inf the forward's cap is constant in logvar, but σ² = ∞ already makes dKL/dlogvar
        = ½ (∞ · r − 1) = +inf, the limit of the formula; dKL/dμ stays finite."""
        var, diff, inv_var_p = ctx.saved
        xp = array_module(var)
        g = g[..., None]  # the KL summed over the last axis: each dimension receives g
        if inv_var_p is None:
            scaled_diff, scaled_var = diff, var
        else:
            scaled_diff, scaled_var = diff * inv_var_p, var * inv_var_p

        def to_input(per_dim, i):
            # An input broadcast along the last axis (mu of shape (1,) beside logvar of shape (Z,)) was
            # counted once per dimension: spread the gradient over all Z dims first, then sum_to_shape
            # adds up those copies (g[..., None] alone has size 1 there).
            return sum_to_shape(xp.broadcast_to(per_dim, ctx.terms_shape), ctx.inputs[i].shape)

        grads = [None, None, None, None]
        if ctx.needs_input_grad[0]:
            grads[0] = to_input(g * scaled_diff, 0)
        if ctx.needs_input_grad[1]:
            grads[1] = to_input(0.5 * g * (scaled_var - 1), 1)
        if ctx.needs_input_grad[2]:
            grads[2] = to_input(-g * scaled_diff, 2)
        if ctx.needs_input_grad[3]:
            grads[3] = to_input(0.5 * g * (1 - scaled_var - diff * scaled_diff), 3)
        return tuple(grads)


def gaussian_kl(mu, logvar, mu_p=None, logvar_p=None):
    """KL divergence between diagonal Gaussians, summed over the last axis (the latent dimensions).

    The prior defaults to N(0, I); give both ``mu_p`` and ``logvar_p`` for another one (as in a
    hierarchical VAE, where the prior of one layer is computed from the layer above). Shapes broadcast.
    """
    if (mu_p is None) != (logvar_p is None):
        raise ValueError("gaussian_kl: give both mu_p and logvar_p, or neither (for the N(0, I) prior)")
    args = [as_operand(a) if a is not None else None for a in (mu, logvar, mu_p, logvar_p)]
    for name, a in zip(("mu", "logvar", "mu_p", "logvar_p"), args, strict=True):
        if is_tensor(a) and a.ndim == 0:
            raise ValueError(
                f"gaussian_kl: {name} is a scalar, but the KL sums over the last axis "
                "(the latent dimensions); give it shape (..., Z)"
            )
    try:
        return GaussianKL.apply(*args)
    except ValueError:
        _refuse_unbroadcastable(
            "gaussian_kl", **dict(zip(("mu", "logvar", "mu_p", "logvar_p"), args, strict=True))
        )
        raise


def _log1p_exp_minus_abs(xp, v):
    """log(1 + e^−|v|) ∈ (0, log 2]: the part of softplus that never overflows."""
    return xp.log1p(xp.exp(-xp.abs(v)))


class SoftClamp(Function):
    """y = x − softplus(x − hi) + softplus(lo − x): a smooth, increasing map of the real line onto (lo, hi)
    that is the identity, to within e^−(distance to the nearest end), well inside it.

    Computed as clip(x, lo, hi) − log(1 + e^−|x − hi|) + log(1 + e^−|x − lo|), which is the same function
    (softplus(v) = max(v, 0) + log(1 + e^−|v|)) without the cancellation x − (x − hi) that loses every
    digit for |x| ≫ hi."""

    @staticmethod
    def forward(ctx, x, lo, hi):
        xp = array_module(x)
        ctx.save(x)
        ctx.lo, ctx.hi = lo, hi
        y = xp.clip(x, lo, hi)
        y -= _log1p_exp_minus_abs(xp, x - hi)
        y += _log1p_exp_minus_abs(xp, x - lo)
        return y

    @staticmethod
    def backward(ctx, g):
        """dy/dx = 1 − σ(x − hi) − σ(lo − x) = σ(hi − x) − σ(lo − x) ∈ (0, 1], since softplus' = σ."""
        (x,) = ctx.saved
        return g * (stable_sigmoid(ctx.hi - x) - stable_sigmoid(ctx.lo - x))


def soft_clamp(x, lo, hi):
    """Squash ``x`` smoothly into (lo, hi), leaving values well inside unchanged (see :class:`SoftClamp`)."""
    if not lo < hi:
        raise ValueError(f"soft_clamp: need lo < hi, got lo={lo!r} and hi={hi!r}")
    return SoftClamp.apply(as_operand(x), lo=float(lo), hi=float(hi))


def clamp_logvar(logvar):
    """The guard every Gaussian encoder applies to its log σ² output: :func:`soft_clamp` into
    :data:`LOGVAR_RANGE`, so exp(±logvar) in the sample, the KL and the log-density cannot overflow."""
    return soft_clamp(logvar, *LOGVAR_RANGE)
