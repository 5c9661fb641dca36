"""Layers and optimisers: parameter bookkeeping, state dicts, and update rules checked against the papers'
formulas written out in NumPy; plus the end-to-end VAE gradient check."""

import numpy
import pytest

import tinyvae as tv
import tinyvae.functional as F

# ---------------------------------------------------------------- modules


def test_mlp_parameters_have_stable_names_and_shapes():
    """MLP([4, 3, 2]) holds two Linear layers; parameters are named by their path, in creation order."""
    mlp = tv.nn.MLP([4, 3, 2], rng=0)
    names = [name for name, _ in mlp.named_parameters()]
    assert names == ["layers.0.weight", "layers.0.bias", "layers.1.weight", "layers.1.bias"]
    assert [p.shape for p in mlp.parameters()] == [(4, 3), (3,), (3, 2), (2,)]
    assert all(p.dtype == numpy.float32 for p in mlp.parameters())


def test_same_seed_same_weights():
    """Initialisers draw from the given Generator, so one seed gives one network."""
    a, b = tv.nn.MLP([5, 4, 3], rng=1), tv.nn.MLP([5, 4, 3], rng=1)
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        numpy.testing.assert_array_equal(p.data, q.data)


def test_linear_matches_numpy():
    """Linear computes x W + b."""
    layer = tv.nn.Linear(3, 2, rng=0)
    x = numpy.arange(6, dtype=numpy.float32).reshape(2, 3)
    expected = x @ layer.weight.data + layer.bias.data
    numpy.testing.assert_allclose(layer(tv.Tensor(x)).data, expected, rtol=1e-6)


def test_linear_shape_error_names_both_shapes():
    """A wrong feature count is reported with x's shape and W's shape."""
    layer = tv.nn.Linear(784, 400, rng=0)
    with pytest.raises(ValueError, match=r"x has shape \(32, 785\) but W expects 784 input features"):
        layer(tv.Tensor(numpy.zeros((32, 785), dtype=numpy.float32)))


def test_state_dict_round_trip_and_errors():
    """load_state_dict restores every array; missing/unexpected keys and wrong shapes are refused before
    anything changes."""
    source, target = tv.nn.MLP([3, 4, 2], rng=0), tv.nn.MLP([3, 4, 2], rng=1)
    state = source.state_dict()
    target.load_state_dict(state)
    for p, q in zip(source.parameters(), target.parameters(), strict=True):
        numpy.testing.assert_array_equal(p.data, q.data)

    before = target.state_dict()
    with pytest.raises(KeyError, match=r"missing keys \['layers.1.bias'\]"):
        target.load_state_dict({k: v for k, v in state.items() if k != "layers.1.bias"})
    with pytest.raises(KeyError, match=r"unexpected keys \['extra'\]"):
        target.load_state_dict({**state, "extra": numpy.zeros(1)})
    bad = {**state, "layers.1.weight": numpy.zeros((5, 2))}
    with pytest.raises(ValueError, match=r"'layers.1.weight' has shape \(5, 2\).*\(4, 2\)"):
        target.load_state_dict(bad)
    for name, array in target.state_dict().items():
        numpy.testing.assert_array_equal(array, before[name])


def test_train_and_eval_modes_propagate():
    """eval() switches every sub-module off training mode; train() back on."""
    model = tv.nn.Sequential(tv.nn.Linear(2, 2, rng=0), F.relu, tv.nn.MLP([2, 2], rng=0))
    model.eval()
    assert not any(m.training for m in model.modules())
    model.train()
    assert all(m.training for m in model.modules())


def test_unknown_activation_lists_the_choices():
    """An unknown activation name is refused with the list of valid names."""
    with pytest.raises(ValueError, match=r"unknown activation 'gelu'.*'relu'"):
        tv.nn.MLP([2, 2], activation="gelu")


# ---------------------------------------------------------------- optimisers


def quadratic_problem():
    """Parameters p and the gradient of L(p) = ½‖p − target‖², which is p − target."""
    p = tv.Tensor(numpy.array([1.0, -2.0, 3.0]), requires_grad=True)
    target = numpy.array([0.5, 0.5, 0.5])
    return p, target


def test_sgd_momentum_matches_the_update_rule():
    """SGD with momentum follows v ← μ v + g, p ← p − lr v, step by step."""
    p, target = quadratic_problem()
    optimizer = tv.optim.SGD([p], lr=0.1, momentum=0.9)
    expected_p, velocity = p.data.copy(), numpy.zeros(3)
    for _ in range(5):
        optimizer.zero_grad()
        (0.5 * (p - target) ** 2).sum().backward()
        optimizer.step()
        velocity = 0.9 * velocity + (expected_p - target)
        expected_p = expected_p - 0.1 * velocity
        numpy.testing.assert_allclose(p.data, expected_p, rtol=1e-12)


def test_adam_matches_algorithm_1(backend):
    """Adam's rearranged update equals Kingma & Ba's Algorithm 1 with bias-corrected moments."""
    p, target = quadratic_problem()
    optimizer = tv.optim.Adam([p], lr=0.01, betas=(0.9, 0.99), eps=1e-8)
    expected_p, m, v = p.data.copy(), numpy.zeros(3), numpy.zeros(3)
    for t in range(1, 8):
        optimizer.zero_grad()
        (0.5 * (p - target) ** 2).sum().backward()
        optimizer.step()
        g = expected_p - target
        m = 0.9 * m + 0.1 * g
        v = 0.99 * v + 0.01 * g * g
        m_hat, v_hat = m / (1 - 0.9**t), v / (1 - 0.99**t)
        expected_p = expected_p - 0.01 * m_hat / (numpy.sqrt(v_hat) + 1e-8)
        numpy.testing.assert_allclose(p.data, expected_p, rtol=1e-12)


def test_adamw_decays_weights_without_gradient():
    """With a zero gradient, AdamW still shrinks p by the factor (1 − lr · weight_decay) each step, while
    plain Adam leaves it unchanged."""
    p = tv.Tensor(numpy.array([2.0]), requires_grad=True)
    q = tv.Tensor(numpy.array([2.0]), requires_grad=True)
    adamw, adam = tv.optim.AdamW([p], lr=0.1, weight_decay=0.5), tv.optim.Adam([q], lr=0.1)
    for _ in range(3):
        p.grad, q.grad = numpy.zeros(1), numpy.zeros(1)
        adamw.step()
        adam.step()
    numpy.testing.assert_allclose(p.data, [2.0 * 0.95**3])
    numpy.testing.assert_array_equal(q.data, [2.0])


def test_optimizer_state_round_trip_resumes_exactly():
    """Saving an optimiser's state and loading it into a fresh one continues the same trajectory."""
    p, target = quadratic_problem()
    first = tv.optim.Adam([p], lr=0.05)
    for _ in range(3):
        first.zero_grad()
        (0.5 * (p - target) ** 2).sum().backward()
        first.step()
    q = tv.Tensor(p.data.copy(), requires_grad=True)
    second = tv.optim.Adam([q], lr=0.05)
    second.load_state_dict(first.state_dict())
    for optimizer, param in ((first, p), (second, q)):
        optimizer.zero_grad()
        (0.5 * (param - target) ** 2).sum().backward()
        optimizer.step()
    numpy.testing.assert_array_equal(p.data, q.data)


def test_clip_grad_norm():
    """Gradients with global norm 5 clipped to 1 are scaled by 1/5; the returned value is the old norm."""
    a = tv.Tensor(numpy.zeros(1), requires_grad=True)
    b = tv.Tensor(numpy.zeros(1), requires_grad=True)
    a.grad, b.grad = numpy.array([3.0]), numpy.array([4.0])
    assert tv.optim.clip_grad_norm([a, b], 1.0) == pytest.approx(5.0)
    numpy.testing.assert_allclose([a.grad[0], b.grad[0]], [0.6, 0.8])


@pytest.mark.parametrize(
    "make", [lambda ps: tv.optim.SGD(ps, lr=0), lambda ps: tv.optim.Adam(ps, betas=(1.0, 0.9))]
)
def test_bad_hyperparameters_are_refused(make):
    """lr must be positive and betas in [0, 1)."""
    with pytest.raises(ValueError, match="must be"):
        make([tv.Tensor(numpy.zeros(1), requires_grad=True)])


def test_training_reduces_a_regression_loss():
    """A small MLP trained with Adam fits y = sin(x) on 64 points: the loss falls by 10x."""
    rng = numpy.random.default_rng(0)
    x = rng.uniform(-3, 3, (64, 1)).astype(numpy.float32)
    y = numpy.sin(x)
    model = tv.nn.MLP([1, 32, 1], activation="tanh", rng=rng)
    optimizer = tv.optim.Adam(model.parameters(), lr=0.02)
    losses = []
    for _ in range(300):
        optimizer.zero_grad()
        loss = ((model(tv.Tensor(x)) - y) ** 2).mean()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] / 10


# ---------------------------------------------------------------- end to end


def test_small_vae_loss_passes_gradcheck_in_every_parameter(backend):
    """The negative ELBO of a small MLP VAE (encoder → reparameterize → decoder → Bernoulli log-likelihood
    + Gaussian KL), with the noise held fixed, has correct gradients for every weight and bias."""
    rng = numpy.random.default_rng(0)
    x_dim, hidden, z_dim, batch = 6, 5, 2, 4
    encoder = tv.nn.MLP([x_dim, hidden, 2 * z_dim], activation="tanh", rng=rng, dtype=numpy.float64)
    decoder = tv.nn.MLP([z_dim, hidden, x_dim], activation="tanh", rng=rng, dtype=numpy.float64)
    x = (rng.uniform(size=(batch, x_dim)) < 0.5).astype(numpy.float64)
    eps = rng.standard_normal((batch, z_dim))
    params = encoder.parameters() + decoder.parameters()

    def negative_elbo(*_params):
        stats = encoder(tv.Tensor(x))
        mu, logvar = stats[:, :z_dim], stats[:, z_dim:]
        z = F.reparameterize(mu, logvar, eps)
        log_px = F.bernoulli_log_prob(decoder(z), x).sum(axis=-1)
        return (F.gaussian_kl(mu, logvar) - log_px).mean()

    assert tv.gradcheck(negative_elbo, params, name="negative_elbo")


def test_state_arrays_are_the_live_buffers_state_dict_copies():
    """The names of state_arrays are state_dict's (but "steps"); the arrays are the optimiser's own (a check
    over them copies nothing), while state_dict's are copies with the same values."""
    import numpy

    import tinyvae as tv

    p = tv.Tensor(numpy.ones(3), requires_grad=True)
    optimizer = tv.optim.Adam([p], lr=0.1)
    (p * p).sum().backward()
    optimizer.step()
    live = dict(optimizer.state_arrays())
    saved = optimizer.state_dict()
    assert set(live) == set(saved) - {"steps"} == {"m.0", "v.0"}
    assert live["m.0"] is optimizer.m[0] and saved["m.0"] is not optimizer.m[0]
    numpy.testing.assert_array_equal(saved["v.0"], live["v.0"])
