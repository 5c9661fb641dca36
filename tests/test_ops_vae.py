"""The VAE-specific ops: the reparameterised sample, the Gaussian KL, the Gaussian and Bernoulli
log-densities, and vector quantisation with the straight-through estimator.

Each smooth op passes ``tv.gradcheck`` (float64 central differences) on hypothesis-drawn broadcasting
shapes, and its forward is compared with the textbook formula written out here in NumPy. The
straight-through op is checked against its *definition* (its backward is a surrogate, not a derivative),
and finite differences are used only where the quantiser is differentiable: away from codebook ties.
"""

import math

import numpy
from hypothesis import assume, given
from hypothesis import strategies as st
from strategies import broadcastable_shapes, leaf, tensors, values

import tinyvae as tv
from tinyvae import ops

TIE_MARGIN = 1e-3  # nearest and second-nearest squared distances differ by more than this in the VQ checks


def _sigma(logvar):
    return numpy.exp(0.5 * logvar)


# ---------------------------------------------------------------- reparameterize


@given(data=st.data())
def test_reparameterize(data):
    """z = μ + σ ε with σ = e^(logvar/2) has dz/dμ = 1, dz/dlogvar = ε σ / 2 and dz/dε = σ, summed over
    broadcast dims (e.g. ε with a leading sample axis); the forward is the formula itself."""
    shape_mu, shape_logvar, shape_eps = data.draw(broadcastable_shapes(3))
    mu, logvar, eps = (data.draw(tensors(s)) for s in (shape_mu, shape_logvar, shape_eps))
    z = ops.reparameterize(mu, logvar, eps)
    numpy.testing.assert_allclose(z.data, mu.data + _sigma(logvar.data) * eps.data, rtol=1e-14)
    assert tv.gradcheck(ops.reparameterize, [mu, logvar, eps])


# ---------------------------------------------------------------- gaussian_kl


def _kl_closed_form(mu, logvar, mu_p, logvar_p):
    """KL(N(μ, σ²) ‖ N(μ_p, σ_p²)) per dimension, in terms of the standard deviations:
    log(σ_p/σ) + (σ² + (μ − μ_p)²) / (2σ_p²) − ½, summed over the last axis."""
    sigma, sigma_p = _sigma(logvar), _sigma(logvar_p)
    per_dim = numpy.log(sigma_p / sigma) + (sigma**2 + (mu - mu_p) ** 2) / (2 * sigma_p**2) - 0.5
    return per_dim.sum(axis=-1)


@given(data=st.data())
def test_gaussian_kl_standard_prior(data):
    """KL(N(μ, σ²) ‖ N(0, I)) = ½ Σ_j (μ_j² + σ_j² − log σ_j² − 1) over the last axis, with gradients
    dKL/dμ = μ and dKL/dlogvar = ½(σ² − 1); mu and logvar may broadcast against each other."""
    shape_mu, shape_logvar = data.draw(broadcastable_shapes(2, min_dims=1))
    mu, logvar = data.draw(tensors(shape_mu)), data.draw(tensors(shape_logvar))
    m, lv = numpy.broadcast_arrays(mu.data, logvar.data)
    expected = 0.5 * (m**2 + numpy.exp(lv) - lv - 1).sum(axis=-1)
    numpy.testing.assert_allclose(ops.gaussian_kl(mu, logvar).data, expected, rtol=1e-13, atol=1e-14)
    assert tv.gradcheck(ops.gaussian_kl, [mu, logvar])


@given(data=st.data())
def test_gaussian_kl_general_prior(data):
    """KL(N(μ, σ²) ‖ N(μ_p, σ_p²)) = Σ_j [log(σ_p/σ) + (σ² + (μ − μ_p)²)/(2σ_p²) − ½]: the op's
    log-variance form matches this closed form, and its gradients with respect to all four arguments
    (broadcasting together) match finite differences."""
    shapes4 = data.draw(broadcastable_shapes(4, min_dims=1))
    mu, logvar, mu_p, logvar_p = (data.draw(tensors(s, low=-2.0, high=2.0)) for s in shapes4)
    expected = _kl_closed_form(*numpy.broadcast_arrays(mu.data, logvar.data, mu_p.data, logvar_p.data))
    numpy.testing.assert_allclose(
        ops.gaussian_kl(mu, logvar, mu_p, logvar_p).data, expected, rtol=1e-12, atol=1e-13
    )
    assert tv.gradcheck(ops.gaussian_kl, [mu, logvar, mu_p, logvar_p])


@given(q=st.tuples(st.integers(1, 3), st.integers(1, 4)).flatmap(lambda s: st.tuples(values(s), values(s))))
def test_gaussian_kl_is_zero_when_q_equals_the_prior(q):
    """KL(q ‖ p) = 0 when q = p, both for the standard prior (μ = 0, logvar = 0) and for a general one."""
    mu, logvar = q
    zeros = numpy.zeros_like(mu)
    numpy.testing.assert_allclose(ops.gaussian_kl(leaf(zeros), leaf(zeros)).data, 0.0, atol=1e-15)
    kl = ops.gaussian_kl(leaf(mu), leaf(logvar), leaf(mu), leaf(logvar)).data
    numpy.testing.assert_allclose(kl, 0.0, atol=1e-14)


def test_gaussian_kl_general_prior_reduces_to_the_standard_one():
    """With μ_p = 0 and logvar_p = 0 the general formula gives the standard-prior KL."""
    rng = numpy.random.default_rng(1)
    mu, logvar = rng.standard_normal((2, 5, 3))
    zeros = numpy.zeros(3)
    numpy.testing.assert_allclose(
        ops.gaussian_kl(leaf(mu), leaf(logvar), leaf(zeros), leaf(zeros)).data,
        ops.gaussian_kl(leaf(mu), leaf(logvar)).data,
        rtol=1e-14,
    )


# ---------------------------------------------------------------- log-densities


@given(data=st.data())
def test_gaussian_log_prob(data):
    """log N(x; μ, σ²) equals the log of the density e^(−(x−μ)²/2σ²) / √(2πσ²), and its gradients
    −(x−μ)/σ², (x−μ)/σ², ½((x−μ)²/σ² − 1) (for x, μ, logvar) match finite differences."""
    shape_x, shape_mu, shape_logvar = data.draw(broadcastable_shapes(3))
    x, mu, logvar = (data.draw(tensors(s, low=-2.0, high=2.0)) for s in (shape_x, shape_mu, shape_logvar))
    var = numpy.exp(logvar.data)
    density = numpy.exp(-((x.data - mu.data) ** 2) / (2 * var)) / numpy.sqrt(2 * math.pi * var)
    # atol: the terms (log 2π, logvar, ...) are O(1) and can cancel to ~0, leaving only their rounding.
    numpy.testing.assert_allclose(
        ops.gaussian_log_prob(x, mu, logvar).data, numpy.log(density), rtol=1e-12, atol=1e-14
    )
    assert tv.gradcheck(ops.gaussian_log_prob, [x, mu, logvar])


@given(data=st.data())
def test_bernoulli_log_prob(data):
    """log Bern(x; σ(l)) = x log σ(l) + (1 − x) log(1 − σ(l)), with gradients x − σ(l) for the logit and
    l for x (x any value in [0, 1], as for soft targets)."""
    shape_logits, shape_x = data.draw(broadcastable_shapes(2))
    logits = data.draw(tensors(shape_logits, low=-10.0, high=10.0))
    x = data.draw(tensors(shape_x, low=0.0, high=1.0))
    p = 1 / (1 + numpy.exp(-logits.data))
    expected = x.data * numpy.log(p) + (1 - x.data) * numpy.log(1 - p)
    numpy.testing.assert_allclose(ops.bernoulli_log_prob(logits, x).data, expected, rtol=1e-9, atol=1e-12)
    assert tv.gradcheck(ops.bernoulli_log_prob, [logits, x])


def test_bernoulli_log_prob_at_logits_plus_minus_100():
    """At l = ±100 (σ(−100) ≈ 3.7e−44, and log σ(l) computed naively is −inf in float32) the value and
    gradients are finite and equal the exact float64 formulas log σ(l) = −log1p(e^−l) for l > 0,
    l − log1p(e^l) for l < 0, and d/dl = x − σ(l)."""
    tiny = math.exp(-100)
    logits = leaf([100.0, 100.0, -100.0, -100.0, 100.0])
    x = leaf([1.0, 0.0, 1.0, 0.0, 0.25])
    log_sigma = numpy.array([-math.log1p(tiny)] * 2 + [-100 - math.log1p(tiny)] * 2 + [-math.log1p(tiny)])
    log_one_minus_sigma = numpy.array(
        [-100 - math.log1p(tiny)] * 2 + [-math.log1p(tiny)] * 2 + [-100 - math.log1p(tiny)]
    )
    sigma = numpy.array([1 / (1 + tiny)] * 2 + [tiny / (1 + tiny)] * 2 + [1 / (1 + tiny)])
    y = ops.bernoulli_log_prob(logits, x)
    expected = x.data * log_sigma + (1 - x.data) * log_one_minus_sigma
    # x l − softplus(l) cancels to 0 where the exact value is −3.7e−44: a log-probability is judged by
    # its absolute error (it is the relative error of the probability), so 1e−13 absolute is the bar.
    numpy.testing.assert_allclose(y.data, expected, rtol=1e-15, atol=1e-13)
    y.sum().backward()
    assert numpy.all(numpy.isfinite(logits.grad)) and numpy.all(numpy.isfinite(x.grad))
    numpy.testing.assert_allclose(logits.grad, x.data - sigma, rtol=1e-15, atol=1e-300)
    numpy.testing.assert_allclose(x.grad, logits.data, rtol=1e-15)


# ---------------------------------------------------------------- vector_quantize (straight-through)


def _brute_force_squared_distances(z_e, codebook):
    """‖z − e_k‖² for every vector of z_e (..., D) and every code (K, D), by broadcasting: (..., K)."""
    return ((z_e[..., None, :] - codebook) ** 2).sum(axis=-1)


def _quantize_case():
    """(z_e, codebook) leaves: z_e of shape (..., D) with 1–2 leading dims, codebook (K, D)."""

    @st.composite
    def case(draw):
        leading = tuple(draw(st.lists(st.integers(1, 3), min_size=1, max_size=2)))
        num_codes, dim = draw(st.integers(1, 5)), draw(st.integers(1, 3))
        z_e = draw(tensors(leading + (dim,), low=-2.0, high=2.0))
        codebook = draw(tensors((num_codes, dim), low=-2.0, high=2.0))
        return z_e, codebook

    return case()


@given(_quantize_case())
def test_vector_quantize_forward_is_nearest_code(backend, case):
    """indices[n] = argmin_k ‖z_n − e_k‖² and z_q = codebook[indices], compared with a brute-force
    search over all codes. Where two codes are equally near up to rounding (the op expands the square,
    the reference does not) either may win, so there the check is that the chosen code is as near."""
    z_e, codebook = case
    z_q, indices = ops.vector_quantize(z_e, codebook)
    distances = _brute_force_squared_distances(z_e.data, codebook.data)  # (..., K)
    assert indices.shape == z_e.shape[:-1]
    numpy.testing.assert_array_equal(z_q.data, codebook.data[indices])
    chosen = numpy.take_along_axis(distances, indices[..., None], axis=-1)[..., 0]
    nearest = distances.min(axis=-1)
    numpy.testing.assert_allclose(chosen, nearest, rtol=1e-12, atol=1e-12)
    clear_winner = (numpy.sort(distances, axis=-1)[..., 1:2].min(axis=-1, initial=numpy.inf) - nearest) > 1e-9
    numpy.testing.assert_array_equal(indices[clear_winner], distances.argmin(axis=-1)[clear_winner])


def test_vector_quantize_ties_go_to_the_lowest_index(backend):
    """When z is exactly as far from several codes, the lowest index wins: z = (0.5, 0) lies halfway
    between codes 1 and 2 (both at squared distance 0.25), and code 3 duplicates code 0."""
    codebook = leaf([[5.0, 5.0], [0.0, 0.0], [1.0, 0.0], [5.0, 5.0]])
    z_e = leaf([[0.5, 0.0], [5.0, 5.0], [0.0, 0.0]])
    _, indices = ops.vector_quantize(z_e, codebook)
    numpy.testing.assert_array_equal(indices, [1, 0, 1])


@given(_quantize_case(), st.data())
def test_straight_through_backward_is_exactly_the_identity_to_z_e(case, data):
    """By definition of the straight-through estimator, dL/dz_e := dL/dz_q, bit for bit, and nothing
    flows to the codebook through z_q (codebook.grad stays None)."""
    z_e, codebook = case
    z_q, _ = ops.vector_quantize(z_e, codebook)
    upstream = data.draw(values(z_q.shape))
    z_q.backward(upstream)
    numpy.testing.assert_array_equal(z_e.grad, upstream)
    assert codebook.grad is None


@given(_quantize_case())
def test_vq_vae_codebook_and_commitment_losses_pass_gradcheck(backend, case):
    """Away from ties (nearest and second-nearest squared distances more than 1e-3 apart, so a step of
    h ≤ 2e-6 cannot change the winner) the codebook loss mean ‖sg[z_e] − e_k*‖² has gradient
    2(e_k* − z_e)/N for each chosen code, and the commitment loss mean ‖z_e − sg[e_k*]‖² has gradient
    2(z_e − e_k*)/N, both matching finite differences."""
    z_e, codebook = case
    distances = numpy.sort(_brute_force_squared_distances(z_e.data, codebook.data), axis=-1)
    if codebook.shape[0] > 1:
        assume(numpy.all(distances[..., 1] - distances[..., 0] > TIE_MARGIN))

    def codebook_loss(codes):
        _, indices = ops.vector_quantize(z_e.detach(), codes)
        return ((z_e.detach() - codes[indices]) ** 2).sum(axis=-1).mean()

    def commitment_loss(z):
        _, indices = ops.vector_quantize(z, codebook.detach())
        return ((z - codebook.detach()[indices].detach()) ** 2).sum(axis=-1).mean()

    assert tv.gradcheck(codebook_loss, [codebook])
    assert tv.gradcheck(commitment_loss, [z_e])
