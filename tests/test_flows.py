"""Planar and radial flow layers (Rezende & Mohamed 2015): gradients, the log-determinant against a
finite-difference Jacobian, the invertibility constraints, and bad input."""

import numpy
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from strategies import values

import tinyvae as tv
from tinyvae.flows import FlowSequence, PlanarFlow, RadialFlow


@st.composite
def batch_and_dim(draw):
    """A latent size Z in 1..4 and a batch shape of 0 to 2 dims (so z is (Z,), (B, Z) or (K, B, Z))."""
    z_dim = draw(st.integers(1, 4))
    batch = tuple(draw(st.lists(st.integers(1, 3), max_size=2)))
    return batch, z_dim


def planar_layer(z_dim, u, w, b):
    """A float64 planar layer with the given raw parameters."""
    layer = PlanarFlow(z_dim, rng=0, dtype="float64")
    layer.u.data[...], layer.w.data[...], layer.b.data[...] = u, w, b
    return layer


def radial_layer(z_dim, z0, alpha_raw, beta_raw):
    """A float64 radial layer with the given raw parameters."""
    layer = RadialFlow(z_dim, rng=0, dtype="float64")
    layer.z0.data[...], layer.alpha_raw.data[...], layer.beta_raw.data[...] = z0, alpha_raw, beta_raw
    return layer


@st.composite
def planar_cases(draw, low=-2.0, high=2.0):
    """(layer, z) with raw parameters in [low, high] and ‖w‖ ≥ 0.3 (û divides by ‖w‖²)."""
    batch, z_dim = draw(batch_and_dim())
    u, w = draw(values((z_dim,), low, high)), draw(values((z_dim,), low, high))
    assume(numpy.linalg.norm(w) >= 0.3)
    b = draw(values((1,), low, high))
    z = draw(values((*batch, z_dim)))
    return planar_layer(z_dim, u, w, b), tv.Tensor(z, requires_grad=True)


@st.composite
def radial_cases(draw):
    """(layer, z) with raw parameters in [-2, 2] and every z at least 0.3 from the centre z₀, where the
    norm r = ‖z − z₀‖ is not differentiable."""
    batch, z_dim = draw(batch_and_dim())
    z0 = draw(values((z_dim,)))
    z = draw(values((*batch, z_dim)))
    assume(numpy.all(numpy.linalg.norm(z - z0, axis=-1) >= 0.3))
    layer = radial_layer(z_dim, z0, draw(values((1,), -2.0, 2.0)), draw(values((1,), -2.0, 2.0)))
    return layer, tv.Tensor(z, requires_grad=True)


@given(planar_cases())
def test_planar_flow_passes_gradcheck(case):
    """f(z) = z + û tanh(wᵀz + b) and its log-determinant are differentiated correctly with respect to z and
    every raw parameter (u, w, b), through the reparameterisation of û, in float64."""
    layer, z = case
    assert tv.gradcheck(lambda *_: layer(z), [z, layer.u, layer.w, layer.b], name="PlanarFlow")


@given(radial_cases())
def test_radial_flow_passes_gradcheck(case):
    """f(z) = z + β (z − z₀) / (α + r) and its log-determinant are differentiated correctly with respect to z,
    z₀ and the raw α, β, in float64 (z kept 0.3 away from z₀)."""
    layer, z = case
    params = [z, layer.z0, layer.alpha_raw, layer.beta_raw]
    assert tv.gradcheck(lambda *_: layer(z), params, name="RadialFlow")


def finite_difference_log_det(layer, z, step=1e-6):
    """log|det J| per example from a central-difference Jacobian of the layer (float64), and det's sign."""
    z = numpy.asarray(z, dtype=numpy.float64).reshape(-1, layer.z_dim)
    signs, log_dets = [], []
    with tv.no_grad():
        for point in z:
            jacobian = numpy.empty((layer.z_dim, layer.z_dim))
            for j in range(layer.z_dim):
                shift = numpy.zeros(layer.z_dim)
                shift[j] = step
                plus, _ = layer(tv.Tensor(point + shift))
                minus, _ = layer(tv.Tensor(point - shift))
                jacobian[:, j] = (plus.data - minus.data) / (2 * step)  # column j: ∂f/∂z_j
            sign, log_det = numpy.linalg.slogdet(jacobian)
            signs.append(sign)
            log_dets.append(log_det)
    return numpy.array(signs), numpy.array(log_dets)


@given(planar_cases(low=-1.0, high=1.0))
def test_planar_log_det_matches_slogdet_of_the_jacobian(case):
    """The closed form log(1 + ûᵀψ(z)) (eq. 12) equals numpy.linalg.slogdet of a central-difference Jacobian
    of f, per example, within 1e-6 absolute, and det J > 0. (Raw u, w in [−1, 1] keep det J ≥ 0.018, so
    the Jacobian's ~1e-10 differencing error moves the log-det by well under 1e-6.)"""
    layer, z = case
    _, log_det = layer(z)
    signs, reference = finite_difference_log_det(layer, z.data)
    assert (signs == 1).all()
    numpy.testing.assert_allclose(log_det.data.reshape(-1), reference, atol=1e-6, rtol=0)


@given(radial_cases())
def test_radial_log_det_matches_slogdet_of_the_jacobian(case):
    """The closed form (Z − 1) log(1 + βh) + log(1 + βh + βh'r) (Rezende & Mohamed, below eq. 14) equals
    slogdet of a central-difference Jacobian per example within 1e-6, and det J > 0."""
    layer, z = case
    _, log_det = layer(z)
    signs, reference = finite_difference_log_det(layer, z.data)
    assert (signs == 1).all()
    numpy.testing.assert_allclose(log_det.data.reshape(-1), reference, atol=1e-6, rtol=0)


@given(st.integers(1, 6).flatmap(lambda n: st.tuples(values((n,), -10.0, 10.0), values((n,), -10.0, 10.0))))
def test_planar_constraint_holds_for_any_raw_parameters(raw):
    """For every raw u and w ≠ 0, the reparameterised û satisfies wᵀû ≥ −1 (Appendix A.1), up to the
    rounding of the dot product (64 ε (1 + ‖w‖‖u‖)); the value the log-det uses, m(wᵀu), is ≥ −1 exactly."""
    u, w = raw
    assume(numpy.linalg.norm(w) >= 1e-3)
    layer = planar_layer(len(u), u, w, 0.0)
    u_hat, m = layer.constrained_u()
    rounding = 64 * numpy.finfo(numpy.float64).eps * (1 + numpy.linalg.norm(w) * numpy.linalg.norm(u))
    assert w @ u_hat.data >= -1 - rounding
    assert m.item() >= -1
    numpy.testing.assert_allclose(w @ u_hat.data, m.item(), atol=rounding * (1 + abs(w @ u)))


def test_planar_constraint_leaves_no_direction_with_zero_determinant():
    """A raw u with wᵀu = −5 would make det J = 1 + h'(·) wᵀu vanish where h' = 1/5; after reparameterising,
    det J > 0 on a line of z crossing that region (the flow stays invertible)."""
    w = numpy.array([1.0, 0.0])
    layer = planar_layer(2, numpy.array([-5.0, 0.3]), w, 0.0)
    z = numpy.stack([numpy.linspace(-4, 4, 801), numpy.zeros(801)], axis=1)
    _, log_det = layer(tv.Tensor(z))
    assert numpy.isfinite(log_det.data).all()
    raw_det = 1 + (1 - numpy.tanh(z[:, 0]) ** 2) * -5.0
    assert (raw_det < 0).any()  # without the constraint the determinant would change sign


def test_flow_sequence_adds_log_dets_and_zero_steps_is_the_identity():
    """FlowSequence composes its layers and adds their log-determinants (eq. 13); with no layers it
    returns z unchanged with log-determinant 0."""
    rng = numpy.random.default_rng(0)
    z = tv.Tensor(rng.normal(size=(5, 3)))
    chain = FlowSequence("planar", 3, 3, rng=1, dtype="float64")
    out, total = chain(z)
    expected_z, expected_total = z, 0.0
    for layer in chain.layers:
        expected_z, log_det = layer(expected_z)
        expected_total = expected_total + log_det.data
    numpy.testing.assert_allclose(out.data, expected_z.data)
    numpy.testing.assert_allclose(total.data, expected_total)
    identity, zero = FlowSequence("radial", 0, 3)(z)
    numpy.testing.assert_array_equal(identity.data, z.data)
    numpy.testing.assert_array_equal(zero.data, numpy.zeros(5))


@pytest.mark.parametrize(
    "call, message",
    [
        (
            lambda: PlanarFlow(3)(tv.Tensor(numpy.zeros((2, 4)))),
            r"PlanarFlow: z has shape \(2, 4\).*\(\.\.\., 3\)",
        ),
        (lambda: RadialFlow(2)(tv.Tensor(numpy.zeros(3))), r"RadialFlow: z has shape \(3,\).*\(\.\.\., 2\)"),
        (lambda: PlanarFlow(0), "z_dim must be a positive integer, got 0"),
        (lambda: FlowSequence("iaf", 2, 3), "flow must be one of.*'iaf'"),
        (lambda: FlowSequence("planar", -1, 3), "steps must be an integer >= 0, got -1"),
    ],
)
def test_bad_input_is_named(call, message):
    """Wrong latent sizes and bad settings give errors that name the argument, the value and what was
    expected."""
    with pytest.raises(ValueError, match=message):
        call()
