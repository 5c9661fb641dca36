"""Hostile calls to the public API (issue "Reliability II"): each ends in a TypeError or ValueError that names
the op or field, what it received and what was expected, never a silent NaN or a message from inside NumPy;
and the edge values that used to be NaN (∞ − ∞) have a defined result and gradient, checked here against the
closed form in float64.

Every message test matches the library's own wording (a regular expression); every value test would fail
on the NaN that the op gave before.
"""

import math
import warnings

import numpy
import pytest
from backends import require_backend
from tinyvae.kernels import codebook as codebook_kernels
from tinyvae.kernels.unrouted import logsumexp as logsumexp_kernels

import tinyvae.functional as F
from tinyvae import models
from tinyvae.gradcheck import GradcheckError, gradcheck
from tinyvae.models.base import ModelConfig
from tinyvae.tensor import Tensor

inf, nan = math.inf, math.nan
RNG_SEED = 0


def leaf(values):
    """A float64 leaf that requires grad."""
    return Tensor(numpy.array(values, dtype=numpy.float64), requires_grad=True)


def const(values, dtype=numpy.float64):
    return Tensor(numpy.array(values, dtype=dtype))


@pytest.fixture
def no_numpy_warnings():
    """Turn NumPy's floating-point warnings into errors: a defined edge value is computed on purpose, not
    by an ∞ − ∞ that happens to be patched afterwards with a warning on the way."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        yield


# ---------------------------------------------------------------------------------------------------------
# Tensor construction


def test_tensor_of_strings_names_the_element():
    with pytest.raises(
        TypeError, match=r"Tensor: data holds 'a' \(a str\) at data\[0\]; a tensor holds real"
    ):
        Tensor(["a"])


def test_tensor_with_none_in_a_list_is_refused_not_made_nan():
    """NumPy would turn None into NaN without a word (numpy.asarray([None], dtype=float) is [nan])."""
    with pytest.raises(TypeError, match=r"Tensor: data holds None at data\[1\]\[0\]"):
        Tensor([[1.0, 2.0], [None, 3.0]])


def test_ragged_list_names_where_it_breaks():
    with pytest.raises(
        ValueError,
        match=r"Tensor: data is a ragged nested list: data\[1\] has shape \(1,\) but data\[0\] has shape "
        r"\(2,\); a tensor is a rectangular array",
    ):
        Tensor([[1, 2], [3]])


def test_ragged_deeper_down_names_the_level():
    """Each inner list is consistent, but the two blocks differ: the message names the blocks' shapes."""
    with pytest.raises(ValueError, match=r"data\[1\] has shape \(2, 2\) but data\[0\] has shape \(2, 1\)"):
        Tensor([[[1], [2]], [[1, 2], [3, 4]]])


def test_list_mixing_numbers_and_lists_is_ragged():
    with pytest.raises(ValueError, match=r"data\[1\] has shape \(\) but data\[0\] has shape \(2,\)"):
        Tensor([[1, 2], 3])


def test_tensor_of_an_arbitrary_object():
    with pytest.raises(
        TypeError,
        match=r"Tensor: data is <object object at 0x[0-9a-f]+> \(an object\); expected a number, a nested "
        r"list of numbers or a float array",
    ):
        Tensor(object())


@pytest.mark.parametrize(
    "data, shown", [(None, "None"), ("abc", r"'abc' \(a str\)"), ({1: 2}, r"\{1: 2\} \(a dict\)")]
)
def test_tensor_of_none_a_string_or_a_dict(data, shown):
    with pytest.raises(TypeError, match=rf"Tensor: data is {shown}; expected a number"):
        Tensor(data)


@pytest.mark.parametrize("dtype", [None, numpy.float32])
def test_array_of_text_is_refused_even_with_a_dtype(dtype):
    """dtype= cannot make numbers of text (NumPy would parse "1.5" but fail on "a", in its own words)."""
    with pytest.raises(TypeError, match=r"Tensor: data has dtype <U3 \(text\), but tensors hold float32 or"):
        Tensor(numpy.array(["1.5", "a"]), dtype=dtype)


def test_object_array_with_none_is_refused_even_with_a_dtype():
    """An object array (as pandas makes) converts with dtype= when it holds numbers; a None in it would have
    become NaN."""
    numbers_only = Tensor(numpy.array([[1.0, 2]], dtype=object), dtype=numpy.float64)
    numpy.testing.assert_array_equal(numbers_only.data, [[1.0, 2.0]])
    with pytest.raises(
        TypeError, match=r"Tensor: data holds None at data\[0, 1\]; a tensor holds real numbers"
    ):
        Tensor(numpy.array([[1.0, None]], dtype=object), dtype=numpy.float32)
    with pytest.raises(
        TypeError, match=r"data has dtype object \(Python objects\).*pass dtype=numpy.float32"
    ):
        Tensor(numpy.array([1.0, 2], dtype=object))


def test_list_of_tensors_points_to_stack():
    with pytest.raises(TypeError, match=r"holds a Tensor at data\[0\] \(combine tensors with F.stack"):
        Tensor([Tensor(1.0), Tensor(2.0)])


def test_list_of_complex_numbers_is_refused():
    with pytest.raises(TypeError, match=r"Tensor: data holds 1j \(a complex\) at data\[1\]"):
        Tensor([1.0, 1j])


def test_good_lists_still_convert():
    """The check refuses nothing it should take: nested numbers, bools, NumPy scalars, huge ints, empty."""
    numpy.testing.assert_array_equal(Tensor([[1, 2], [3, 4]]).data, [[1, 2], [3, 4]])
    assert Tensor([[1, 2], [3, 4]]).dtype == numpy.float32
    numpy.testing.assert_array_equal(
        Tensor([True, 2, numpy.float32(2.5), numpy.int8(3)]).data, [1, 2, 2.5, 3]
    )
    assert Tensor([2**70], dtype=numpy.float64).data[0] == float(2**70)  # an object array inside NumPy
    assert Tensor([]).shape == (0,) and Tensor([[]]).shape == (1, 0)
    assert Tensor((1.0, 2.0), dtype=numpy.float64).dtype == numpy.float64


# ---------------------------------------------------------------------------------------------------------
# gaussian_kl / reparameterize shapes


def test_gaussian_kl_names_mu_and_logvar_shapes():
    with pytest.raises(
        ValueError,
        match=r"gaussian_kl: shapes mu \(2, 3\) and logvar \(2, 4\) do not broadcast: axis -1 has sizes 3 "
        r"vs 4",
    ):
        F.gaussian_kl(const(numpy.zeros((2, 3))), const(numpy.zeros((2, 4))))


def test_gaussian_kl_names_the_prior_shapes():
    with pytest.raises(
        ValueError,
        match=r"gaussian_kl: shapes mu \(2, 3\) and logvar \(2, 3\) and mu_p \(5, 3\) and logvar_p "
        r"\(5, 3\) do not broadcast: axis -2 has sizes 2 vs 2 vs 5 vs 5",
    ):
        z2, z5 = numpy.zeros((2, 3)), numpy.zeros((5, 3))
        F.gaussian_kl(const(z2), const(z2), const(z5), const(z5))


def test_reparameterize_names_mu_logvar_and_eps_shapes():
    with pytest.raises(
        ValueError,
        match=r"reparameterize: shapes mu \(2, 3\) and logvar \(2, 3\) and eps \(2, 4\) do not broadcast: "
        r"axis -1 has sizes 3 vs 3 vs 4, and broadcasting needs them equal or 1",
    ):
        F.reparameterize(const(numpy.zeros((2, 3))), const(numpy.zeros((2, 3))), numpy.zeros((2, 4)))


def test_broadcasting_that_is_legal_still_works():
    """K samples of eps (K, B, Z) against (B, Z), and a logvar shared over the batch (Z,)."""
    mu, logvar, eps = numpy.ones((2, 3)), numpy.zeros(3), numpy.ones((4, 2, 3))
    z = F.reparameterize(const(mu), const(logvar), const(eps))
    numpy.testing.assert_array_equal(z.data, numpy.full((4, 2, 3), 2.0))
    numpy.testing.assert_allclose(F.gaussian_kl(const(mu), const(logvar)).data, [1.5, 1.5])


# ---------------------------------------------------------------------------------------------------------
# Reductions over an axis of size 0


@pytest.mark.parametrize(
    "call, op, why",
    [
        (lambda x: F.logsumexp(x, axis=1), "logsumexp", "a log-sum-exp over no terms would be log 0 = −inf"),
        (lambda x: F.logsumexp(x), "logsumexp", "a log-sum-exp over no terms"),
        (lambda x: F.log_softmax(x, axis=-1), "log_softmax", "there is nothing to normalise"),
        (lambda x: F.max(x, axis=1), "max", "the maximum of no numbers is undefined"),
        (lambda x: x.mean(axis=1), "mean", "the mean of no numbers is 0/0"),
        (lambda x: x.mean(), "mean", "the mean of no numbers is 0/0"),
    ],
)
def test_reduction_over_an_empty_axis_names_the_op_and_axis(call, op, why):
    with pytest.raises(
        ValueError,
        match=rf"{op}: cannot reduce over axis 1, which has size 0 \(input shape \(2, 0\)\): {why}",
    ):
        call(const(numpy.zeros((2, 0))))


def test_reducing_a_nonempty_axis_of_an_empty_array_still_works():
    y = F.logsumexp(const(numpy.zeros((0, 3))), axis=1)
    assert y.shape == (0,)


# ---------------------------------------------------------------------------------------------------------
# model.loss arguments

TINY = {"hvae": {"z_dims": (2, 2)}, "linear": {"hidden": ()}, "diffusion": {"z_dim": None, "steps": 10}}
X = numpy.full((2, 4), 0.5)


def tiny(name):
    config = {"x_dim": 4, "z_dim": 2, "hidden": (3,), "dtype": "float64", **TINY.get(name, {})}
    if name == "hvae":
        del config["z_dim"]
    return models.build(name, **config)


def loss(model, x, rng):
    labels = numpy.array([0, 1]) if model.conditional else None
    return model.loss(x, rng, y=labels)


@pytest.mark.parametrize("name", sorted(models.MODELS))
def test_loss_with_x_none_names_the_model(name):
    with pytest.raises(TypeError, match=rf"{name}.loss: x is None; expected an array of shape \(batch, 4\)"):
        loss(tiny(name), None, numpy.random.default_rng(RNG_SEED))


@pytest.mark.parametrize("name", sorted(models.MODELS))
def test_loss_of_an_empty_batch_names_the_model(name):
    with pytest.raises(
        ValueError,
        match=rf"{name}.loss: x has 0 examples \(shape \(0, 4\)\); the loss averages over the batch",
    ):
        loss(tiny(name), numpy.zeros((0, 4)), numpy.random.default_rng(RNG_SEED))


SAMPLING = sorted(name for name in models.MODELS if name not in ("ae", "vqvae"))


@pytest.mark.parametrize("name", SAMPLING)
def test_loss_with_rng_none_names_the_model(name):
    """model.loss(x, None): the models that sample need a Generator, and say so."""
    with pytest.raises(
        TypeError,
        match=rf"{name}.loss: rng must be a numpy.random.Generator, since the loss draws its noise from it; "
        r"got None. Pass numpy.random.default_rng\(seed\)",
    ):
        loss(tiny(name), X, None)


@pytest.mark.parametrize("name", SAMPLING)
def test_loss_with_an_int_for_rng_names_what_it_got(name):
    with pytest.raises(
        TypeError, match=rf"{name}.loss: rng must be a numpy.random.Generator.*got 0 \(an int\)"
    ):
        loss(tiny(name), X, 0)


@pytest.mark.parametrize("name", ["ae", "vqvae"])
def test_loss_that_samples_nothing_takes_rng_none(name):
    """The AE samples nothing and the VQ-VAE uses rng only for codebook seeding (None: fresh entropy), so
    None is fine; something that is no rng at all is still refused."""
    model = tiny(name)
    assert numpy.isfinite(loss(model, X, None).loss.item())
    with pytest.raises(
        TypeError, match=rf"{name}.loss: rng must be a numpy.random.Generator, an int seed or "
    ):
        loss(model, X, "seed")


def test_conditional_models_need_labels():
    conditional = [name for name, cls in models.MODELS.items() if cls.conditional]
    assert conditional == ["cvae"]  # a new conditional model gets this check too
    for name in conditional:
        with pytest.raises(
            ValueError, match=rf"{name}: this model is conditional; pass labels y of shape \(2,\)"
        ):
            tiny(name).loss(X, numpy.random.default_rng(RNG_SEED), y=None)


# ---------------------------------------------------------------------------------------------------------
# Model configs


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"beta": "1"}, r"VAEConfig: beta must be a number, got '1' \(a str\)"),
        ({"beta": inf}, r"VAEConfig: beta must be finite, got inf"),
        ({"beta": True}, r"VAEConfig: beta must be a number, got True \(a bool\)"),
        (
            {"hidden": 8},
            r"VAEConfig: hidden must be a tuple of layer sizes such as \(400,\) or \(512, 256\), got 8 "
            r"\(an int\); write hidden=\(8,\) for one layer of 8 units",
        ),
        ({"hidden": "8"}, r"VAEConfig: hidden must be a tuple of layer sizes .* got '8' \(a str\)$"),
        ({"hidden": (8.5,)}, r"VAEConfig: hidden sizes must be integers, got \(8.5,\): 8.5 is a float"),
        ({"hidden": (8.0,)}, r"hidden sizes must be integers, got \(8.0,\): 8.0 is a float"),
        ({"hidden": (True,)}, r"VAEConfig: hidden sizes must be integers, got \(True,\): True is a bool"),
        ({"hidden": (16, -3)}, r"VAEConfig: hidden sizes must be positive, got \(16, -3\)"),
        ({"x_dim": -1}, r"VAEConfig: x_dim must be a positive integer, got -1"),
        ({"z_dim": -2}, r"VAEConfig: z_dim must be a positive integer, got -2"),
        ({"z_dim": 2.0}, r"VAEConfig: z_dim must be a positive integer, got 2.0"),
        ({"seed": -1}, r"VAEConfig: seed must be an integer >= 0, got -1"),
        ({"warmup_steps": True}, r"VAEConfig: warmup_steps must be an integer >= 0, got True"),
        ({"free_bits": "0"}, r"VAEConfig: free_bits must be a number, got '0' \(a str\)"),
        ({"analytic_kl": "False"}, r"VAEConfig: analytic_kl must be True or False, got 'False' \(a str\)"),
        ({"activation": ["relu"]}, r"VAEConfig: activation must be one of \[.*\], got \['relu'\]"),
        ({"likelihood": None}, r"VAEConfig: likelihood must be one of \('bernoulli', 'gaussian'\), got None"),
        ({"gaussian_logvar": nan}, r"VAEConfig: gaussian_logvar must be finite, got nan"),
        ({"gaussian_logvar": "0"}, r"VAEConfig: gaussian_logvar must be a number or None, got '0' \(a str\)"),
        ({"dtype": numpy.float32}, r"VAEConfig: dtype must be one of \('float32', 'float64'\), got <class"),
    ],
)
def test_vae_config_names_the_field_and_value(overrides, message):
    with pytest.raises(ValueError, match=message):
        models.VAEConfig(**{"x_dim": 4, **overrides})


@pytest.mark.parametrize(
    "config_class, overrides, message",
    [
        (models.VQVAEConfig, {"commitment": "0.25"}, r"VQVAEConfig: commitment must be a number, got '0.25'"),
        (models.VQVAEConfig, {"commitment": inf}, r"VQVAEConfig: commitment must be finite, got inf"),
        (models.VQVAEConfig, {"ema_decay": "0.99"}, r"VQVAEConfig: ema_decay must be a number, got '0.99'"),
        (models.VQVAEConfig, {"ema": "yes"}, r"VQVAEConfig: ema must be True or False, got 'yes' \(a str\)"),
        (models.VQVAEConfig, {"ema_epsilon": inf}, r"VQVAEConfig: ema_epsilon must be finite, got inf"),
        (
            models.FlowVAEConfig,
            {"flow": ["planar"]},
            r"FlowVAEConfig: flow must be one of \['planar', 'radial'\]",
        ),
        (
            models.IWAEConfig,
            {"k": 2.0},
            r"IWAEConfig: k \(importance samples per example\) must be an integer",
        ),
        (
            models.HVAEConfig,
            {"analytic_kl": 1},
            r"HVAEConfig: analytic_kl must be True or False, got 1 \(an int\)",
        ),
    ],
)
def test_model_specific_config_fields_are_checked(config_class, overrides, message):
    with pytest.raises(ValueError, match=message):
        config_class(**{"x_dim": 4, **overrides})


@pytest.mark.parametrize("name", sorted(models.MODELS))
def test_every_config_refuses_an_int_for_hidden(name):
    """The shared validator runs for every model's config, including the linear one (whose hidden is ())."""
    config_class = models.MODELS[name].config_class
    with pytest.raises(ValueError, match=rf"{config_class.__name__}: hidden must be a tuple of layer sizes"):
        config_class(x_dim=4, hidden=8)


def test_from_dict_checks_values_like_the_constructor():
    with pytest.raises(
        ValueError, match=r"VAEConfig: hidden must be a tuple of layer sizes .* got 8 \(an int\)"
    ):
        models.VAEConfig.from_dict({"x_dim": 4, "hidden": 8})
    with pytest.raises(ValueError, match=r"VAEConfig: beta must be a number, got '1' \(a str\)"):
        models.VAEConfig.from_dict({"x_dim": 4, "beta": "1"})


def test_from_dict_names_missing_fields_and_a_non_dict():
    with pytest.raises(ValueError, match=r"VAEConfig.from_dict: missing required fields \['x_dim'\]"):
        models.VAEConfig.from_dict({"hidden": [3]})
    with pytest.raises(ValueError, match=r"VAEConfig.from_dict: values must be a dict of fields, got a list"):
        models.VAEConfig.from_dict([("x_dim", 4)])


def test_from_dict_still_round_trips_json_values():
    """Lists (as JSON stores tuples) and NumPy integers are taken and normalised to tuples of ints."""
    config = models.VAEConfig.from_dict({"x_dim": 4, "hidden": [numpy.int64(5), 3], "beta": 2})
    assert config.hidden == (5, 3) and type(config.hidden[0]) is int
    assert models.VAEConfig.from_dict(config.to_dict()) == config
    assert isinstance(config, ModelConfig)


# ---------------------------------------------------------------------------------------------------------
# Bernoulli targets


@pytest.mark.parametrize("dtype", [numpy.float32, numpy.float64])
def test_bernoulli_targets_outside_0_1_are_refused(dtype):
    with pytest.raises(
        ValueError,
        match=r"bernoulli_log_prob: the targets x must lie in \[0, 1\] \(binary pixels, or probabilities as "
        r"soft targets\), got values from -1.0 to 2.0; scale the data into \[0, 1\] \(e.g. pixels / 255\)",
    ):
        F.bernoulli_log_prob(const([0.0, 0.0, 0.0], dtype), const([0.5, 2.0, -1.0], dtype))


def test_bernoulli_raw_pixels_are_refused():
    pixels = numpy.array([[0, 128, 255]], dtype=numpy.float32)
    with pytest.raises(ValueError, match=r"got values from 0.0 to 255.0; scale the data"):
        F.bernoulli_log_prob(const(numpy.zeros((1, 3)), numpy.float32), Tensor(pixels))


def test_bernoulli_nan_target_is_refused():
    with pytest.raises(ValueError, match=r"bernoulli_log_prob: the targets x contain NaN"):
        F.bernoulli_log_prob(const([0.0, 0.0]), const([0.5, nan]))


def test_bernoulli_scalar_target_is_checked():
    with pytest.raises(ValueError, match=r"got values from 3.0 to 3.0"):
        F.bernoulli_log_prob(const([0.0]), 3.0)


@pytest.mark.parametrize("dtype", [numpy.float32, numpy.float64])
def test_bernoulli_target_check_is_exact_at_the_ends(dtype):
    """0, −0.0 and 1 pass (−0.0 fails the quick bit test and is then accepted exactly); the next float above
    1 is refused: the quick test is not looser or stricter than x ∈ [0, 1]."""
    logits = const([0.5, 0.5, 0.5], dtype)
    y = F.bernoulli_log_prob(logits, const([0.0, -0.0, 1.0], dtype))
    numpy.testing.assert_allclose(
        y.data, [-math.log1p(math.exp(0.5))] * 2 + [0.5 - math.log1p(math.exp(0.5))]
    )
    above_one = numpy.nextafter(dtype(1), dtype(2))
    with pytest.raises(ValueError, match=r"must lie in \[0, 1\]"):
        F.bernoulli_log_prob(logits, const([0.0, above_one, 1.0], dtype))


def test_bernoulli_target_that_requires_grad_is_a_variable_not_data():
    """The check is on data; a target with requires_grad is differentiable in x for every real x (the
    formula is linear in x), and gradcheck perturbs x = 0 and x = 1 just outside [0, 1]."""
    assert gradcheck(F.bernoulli_log_prob, [leaf([0.3, -1.2]), leaf([0.0, 1.0])])


# ---------------------------------------------------------------------------------------------------------
# vector_quantize


def test_vector_quantize_refuses_a_numpy_codebook():
    with pytest.raises(
        TypeError,
        match=r"vector_quantize: codebook must be a Tensor of shape \(num_codes, code_dim\), got a "
        r"numpy.ndarray of shape \(4, 3\); wrap an array with tv.Tensor\(codebook\)",
    ):
        F.vector_quantize(const(numpy.zeros((2, 3))), numpy.zeros((4, 3)))


def test_vector_quantize_refuses_a_numpy_z_e():
    with pytest.raises(
        TypeError,
        match=r"vector_quantize: z_e must be a Tensor of shape \(\.\.\., code_dim\), got a numpy.ndarray of "
        r"shape \(2, 3\)",
    ):
        F.vector_quantize(numpy.zeros((2, 3)), const(numpy.zeros((4, 3))))


def codebook_with(bad_code, value):
    codes = numpy.random.default_rng(1).standard_normal((4, 3))
    codes[bad_code, 1] = value
    return codes


@pytest.mark.parametrize("bad_code, value", [(2, nan), (0, nan), (3, inf), (1, -inf)])
def test_vector_quantize_refuses_a_non_finite_codebook_on_every_backend(backend, bad_code, value):
    """The backends disagree on a NaN code (NumPy picks it, numba skips it unless it is code 0), so every
    backend refuses it, naming the code."""
    z_e = const(numpy.random.default_rng(2).standard_normal((5, 3)))
    with pytest.raises(
        ValueError,
        match=rf"vector_quantize: the codebook holds NaN or inf \(first in code {bad_code} of 4: .*\); the "
        r"nearest-code search would treat it differently on each backend, so it is refused",
    ):
        F.vector_quantize(z_e, const(codebook_with(bad_code, value)))


@pytest.mark.parametrize("name", ["numpy", "numba"])
def test_nearest_code_entry_refuses_a_nan_codebook(name):
    require_backend(name)
    z = numpy.zeros((5, 3))
    with pytest.raises(
        ValueError, match=r"nearest_code: the codebook holds NaN or inf \(first in code 2 of 4"
    ):
        codebook_kernels.nearest_code(z, codebook_with(2, nan), backend=name)


def test_vector_quantize_with_a_finite_codebook_still_works(backend):
    codes = numpy.array([[0.0, 0.0], [10.0, 10.0]])
    z_q, indices = F.vector_quantize(const([[1.0, -1.0], [9.0, 8.0]]), const(codes))
    numpy.testing.assert_array_equal(indices, [0, 1])
    numpy.testing.assert_array_equal(z_q.data, codes)


# ---------------------------------------------------------------------------------------------------------
# Defined edge values (were NaN)


def test_logsumexp_with_an_inf_entry_has_the_one_hot_gradient(no_numpy_warnings):
    """logsumexp([inf, 0]) = inf and its gradient is the limiting softmax: 1 at the inf entry, 0 elsewhere
    (exp(x − y) would be ∞ − ∞ there)."""
    x = leaf([inf, 0.0])
    y = F.logsumexp(x)
    assert y.item() == inf
    y.backward()
    numpy.testing.assert_array_equal(x.grad, [1.0, 0.0])


def test_logsumexp_infinite_groups_beside_finite_ones(no_numpy_warnings):
    """Rows: two +inf (share 1/2 each), +inf beside −inf and a large finite value, all −inf (gradient 0), and
    a finite row, whose value and softmax gradient must be untouched by the others."""
    data = numpy.array([[inf, 0.0, inf], [inf, -inf, 1e3], [-inf, -inf, -inf], [1.0, 2.0, 3.0]])
    x = leaf(data)
    g = numpy.array([2.0, 3.0, 5.0, 7.0])
    y = F.logsumexp(x, axis=1)
    y.backward(g)  # (not (y * g).sum(): inf + −inf there would be the test's own NaN)
    finite = numpy.log(numpy.exp(data[3]).sum())
    numpy.testing.assert_array_equal(y.data[:3], [inf, inf, -inf])
    numpy.testing.assert_allclose(y.data[3], finite, rtol=1e-15)
    expected = numpy.array([[1.0, 0, 1.0], [3.0, 0, 0], [0, 0, 0], 7.0 * numpy.exp(data[3] - finite)])
    numpy.testing.assert_allclose(x.grad, expected, rtol=1e-14, atol=0)


def test_logsumexp_nan_stays_nan():
    x = leaf([nan, 1.0])
    y = F.logsumexp(x)
    y.backward()
    assert math.isnan(y.item()) and numpy.isnan(x.grad).all()


@pytest.mark.parametrize("name", ["numpy", "numba"])
def test_logsumexp_kernels_match_the_engine_on_infinite_rows(name):
    """The row kernels (NumPy reference, numba) give the engine's value and softmax on ±inf and NaN rows."""
    require_backend(name)
    data = numpy.array(
        [[inf, 0.0, inf], [inf, -inf, 1e3], [-inf, -inf, -inf], [1.0, 2.0, 3.0], [nan, inf, 0.0], [nan, 1, 2]]
    )
    x = leaf(data)
    y = F.logsumexp(x, axis=1)
    y.backward(numpy.ones(len(data)))
    out, softmax = logsumexp_kernels.IMPLEMENTATIONS[name](data)
    numpy.testing.assert_allclose(out, y.data, rtol=1e-14)
    numpy.testing.assert_allclose(softmax, x.grad, rtol=1e-14)
    assert numpy.isnan(out[4:]).all() and numpy.isnan(softmax[4:]).all()


def test_log_softmax_of_all_minus_inf_is_minus_inf_with_zero_gradient(no_numpy_warnings):
    """An all −inf group has no mass to normalise: y = −inf everywhere and gradient 0 (the output does not
    change under any finite change of the inputs). The finite row beside it is exactly as alone."""
    data = numpy.array([[-inf, -inf, -inf], [0.5, -1.0, 2.0]])
    x = leaf(data)
    y = F.log_softmax(x, axis=-1)
    g = numpy.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    (y * Tensor(g)).sum().backward()
    alone = leaf(data[1:])
    y_alone = F.log_softmax(alone, axis=-1)
    (y_alone * Tensor(g[1:])).sum().backward()
    numpy.testing.assert_array_equal(y.data[0], [-inf, -inf, -inf])
    numpy.testing.assert_array_equal(x.grad[0], [0.0, 0.0, 0.0])
    numpy.testing.assert_array_equal(y.data[1], y_alone.data[0])
    numpy.testing.assert_array_equal(x.grad[1], alone.grad[0])
    softmax = numpy.exp(data[1]) / numpy.exp(data[1]).sum()
    numpy.testing.assert_allclose(x.grad[1], g[1] - softmax * g[1].sum(), rtol=1e-14)  # closed form


def test_log_softmax_with_inf_entries_gives_them_the_mass(no_numpy_warnings):
    """c entries equal to +inf share the probability: y = −log c there and −inf elsewhere; the gradient is the
    softmax formula g − softmax Σg with that limiting softmax (1/2, 0, 1/2)."""
    x = leaf([[inf, 0.0, inf]])
    y = F.log_softmax(x, axis=-1)
    g = numpy.array([[1.0, 2.0, 4.0]])
    (y * Tensor(g)).sum().backward()
    numpy.testing.assert_allclose(y.data, [[-math.log(2), -inf, -math.log(2)]], rtol=1e-15)
    numpy.testing.assert_allclose(x.grad, g - numpy.array([[0.5, 0.0, 0.5]]) * 7.0, rtol=1e-15)


def test_bernoulli_infinite_logits_are_certain(backend, no_numpy_warnings):
    """σ(±inf) is exactly 1 or 0: log p = 0 when the target matches, −inf otherwise (soft targets too); the
    logit gradient x − σ(l) is finite (x − 1 or x). Finite logits in the same call keep their exact values."""
    logits = leaf([inf, -inf, inf, -inf, inf, -inf, 1.5])
    x = const([1.0, 0.0, 0.0, 1.0, 0.25, 0.25, 1.0])
    y = F.bernoulli_log_prob(logits, x)
    y.sum().backward()
    numpy.testing.assert_array_equal(y.data[:6], [0.0, 0.0, -inf, -inf, -inf, -inf])
    numpy.testing.assert_allclose(y.data[6], -math.log1p(math.exp(-1.5)), rtol=1e-15)
    sigma = numpy.array([1.0, 0.0, 1.0, 0.0, 1.0, 0.0, 1 / (1 + math.exp(-1.5))])
    numpy.testing.assert_allclose(logits.grad, x.data - sigma, rtol=1e-15)
    assert numpy.isfinite(logits.grad).all()


@pytest.mark.parametrize("dtype", [numpy.float32, numpy.float64])
def test_bernoulli_infinite_logits_in_float32_too(dtype):
    y = F.bernoulli_log_prob(const([[inf, -inf, inf]], dtype), const([[1.0, 0.0, 0.0]], dtype))
    assert y.dtype == dtype
    numpy.testing.assert_array_equal(y.data, [[0.0, 0.0, -inf]])


def test_gaussian_kl_with_infinite_logvar_is_inf(no_numpy_warnings):
    """σ² = ∞ is infinitely far from N(0, 1): KL = +inf (not ∞ − ∞ = NaN); dKL/dμ stays μ and dKL/dlogvar is
    the formula's limit ½ (σ² − 1) = +inf. logvar = −inf (σ² = 0) is +inf too."""
    mu, logvar = leaf([[0.5, 0.5, 0.5]]), leaf([[inf, 0.0, 0.0]])
    kl = F.gaussian_kl(mu, logvar)
    kl.sum().backward()
    assert kl.item() == inf
    numpy.testing.assert_array_equal(mu.grad, [[0.5, 0.5, 0.5]])
    numpy.testing.assert_array_equal(logvar.grad, [[inf, 0.0, 0.0]])
    assert F.gaussian_kl(leaf([[0.0]]), leaf([[-inf]])).item() == inf


def test_gaussian_kl_against_a_prior_with_infinite_logvar_is_inf(no_numpy_warnings):
    kl = F.gaussian_kl(leaf([[0.0, 1.0]]), leaf([[inf, 0.0]]), leaf([[0.0, 0.0]]), leaf([[1.0, 1.0]]))
    assert kl.item() == inf


def test_gaussian_kl_cap_changes_no_finite_value():
    """Large finite log-variances are exact: the cap at 1e4 only replaces +inf (exp overflows far below)."""
    logvar = numpy.array([[700.0, -700.0, 0.0]])
    kl = F.gaussian_kl(leaf([[0.0, 0.0, 0.0]]), leaf(logvar))
    expected = 0.5 * (numpy.exp(logvar) - logvar - 1).sum()
    numpy.testing.assert_allclose(kl.item(), expected, rtol=1e-15)


# ---------------------------------------------------------------------------------------------------------
# gradcheck


def double(a, b):
    return a * b * 2


@pytest.mark.parametrize("value, shown", [(nan, "nan"), (inf, "inf"), (-inf, "-inf")])
def test_gradcheck_names_a_non_finite_input(value, shown):
    b = leaf([[1.0, value], [2.0, 3.0]])
    with pytest.raises(
        ValueError,
        match=rf"gradcheck\(double\): input 1 holds {shown} at element \(0, 1\); finite differences need "
        r"finite inputs",
    ):
        gradcheck(double, [leaf([[1.0, 2.0], [3.0, 4.0]]), b])


def test_gradcheck_with_a_tensor_instead_of_a_list():
    with pytest.raises(
        TypeError,
        match=r"gradcheck\(<lambda>\): inputs must be a list or tuple of the arguments of fn, got a Tensor; "
        r"for one input write gradcheck\(fn, \[x\]\)",
    ):
        gradcheck(lambda x: x * 2, leaf([1.0, 2.0]))


def test_gradcheck_with_an_array_instead_of_a_list():
    with pytest.raises(TypeError, match=r"inputs must be a list or tuple .* got a ndarray"):
        gradcheck(lambda x: x * 2, numpy.ones(2))


def test_gradcheck_still_passes_on_finite_inputs_and_fails_on_a_wrong_backward():
    """The new input checks let a correct gradient through, and the checker still catches a wrong one."""
    assert gradcheck(double, [leaf([1.0, -2.0]), leaf([0.5, 3.0])])
    with pytest.raises(GradcheckError, match=r"gradcheck\(wrong\): input 0"):  # value 4a, gradient 0
        gradcheck(lambda a: Tensor(a.data * 3.0) + a * 0.0 + a.detach(), [leaf([1.0, 2.0])], name="wrong")


# ---------------------------------------------------------------------------------------------------------
# Found by a review after the first pass


@pytest.mark.parametrize(
    "call, message",
    [
        (
            lambda: F.bernoulli_log_prob(const(numpy.zeros((3, 4))), const(numpy.zeros((3, 2)))),
            r"bernoulli_log_prob: shapes logits \(3, 4\) and x \(3, 2\) do not broadcast",
        ),
        (
            lambda: F.gaussian_log_prob(const(numpy.zeros((3, 4))), const(numpy.zeros((3, 2))), 0.0),
            r"gaussian_log_prob: shapes x \(3, 4\) and mu \(3, 2\) and logvar \(\) do not broadcast",
        ),
    ],
    ids=["bernoulli", "gaussian"],
)
def test_likelihoods_name_shapes_that_do_not_broadcast(call, message):
    with pytest.raises(ValueError, match=message):
        call()


@pytest.mark.parametrize("axis", ["a", 1.0, True, [0, "b"]])
def test_a_reduction_axis_that_is_not_an_int_is_named(axis):
    with pytest.raises(TypeError, match="logsumexp: axis must be None, an int or a tuple of ints"):
        F.logsumexp(const(numpy.zeros((3, 4))), axis=axis)
