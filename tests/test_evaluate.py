"""tinyvae.evaluate against cases whose answers are known: the linear-Gaussian oracle's exact log p(x),
encoders whose used dimensions we choose, and constructed attribute vectors."""

import math

import numpy
import pytest

import tinyvae as tv
from tinyvae import evaluate, models
from tinyvae.models import VAE, VAEConfig
from tinyvae.models.iwae import IWAE, IWAEConfig
from tinyvae.models.linear import LinearGaussianConfig, LinearGaussianVAE


def linear_model(seed=0, x_dim=5, z_dim=2, exact_encoder=False):
    """A float64 oracle with W of orthogonal rows (so p(z|x) is diagonal), σ² = e^0.3, and an encoder set
    to the true posterior, or (exact_encoder=False) pushed off it by a little noise."""
    model = LinearGaussianVAE(
        LinearGaussianConfig(x_dim=x_dim, z_dim=z_dim, dtype="float64", seed=seed, gaussian_logvar=0.3)
    )
    rng = numpy.random.default_rng(seed)
    q, _ = numpy.linalg.qr(rng.normal(size=(x_dim, z_dim)))
    model.W.data[...] = (q * rng.uniform(0.5, 2.0, z_dim)).T
    model.b.data[...] = rng.normal(size=x_dim)
    sigma2 = math.exp(0.3)
    post_cov = numpy.linalg.inv(numpy.eye(z_dim) + model.W.data @ model.W.data.T / sigma2)
    model.A.data[...] = model.W.data.T / sigma2 @ post_cov
    model.c.data[...] = -model.b.data @ model.A.data
    model.s.data[...] = numpy.log(numpy.diag(post_cov))
    if not exact_encoder:
        model.A.data[...] += 0.1 * rng.normal(size=model.A.shape)
        model.s.data[...] += 0.5
    return model


def data(n, x_dim=5, seed=3):
    return numpy.random.default_rng(seed).normal(size=(n, x_dim)) * 2


def test_log_likelihood_is_exact_when_q_is_the_true_posterior():
    """With q(z|x) = p(z|x) every importance weight equals p(x), so the estimate is log p(x) to 1e-10
    whatever k."""
    model = linear_model(exact_encoder=True)
    x = data(6)
    estimate = evaluate.log_likelihood(model, x, k=20, rng=numpy.random.default_rng(0))
    numpy.testing.assert_allclose(estimate, model.log_marginal(x), rtol=1e-10)


def test_log_likelihood_matches_the_oracle_within_a_confidence_bound():
    """With an imperfect encoder and k = 5000, over 10 repetitions × 4 examples the mean of (estimate −
    exact log p(x)) is within 0.01 nats of 0 and at most 4 standard errors above 0 (a lower bound in
    expectation). Measured: mean error −0.00006, standard error 0.0015."""
    model = linear_model()
    x = data(4)
    exact = model.log_marginal(x)
    rng = numpy.random.default_rng(1)
    errors = numpy.array(
        [evaluate.log_likelihood(model, x, k=5000, rng=rng, chunk_size=1000) - exact for _ in range(10)]
    ).mean(axis=1)  # (10,): batch-mean error per repetition
    mean, standard_error = errors.mean(), errors.std(ddof=1) / math.sqrt(len(errors))
    print(f"log_likelihood error {mean:.5f} ± {standard_error:.5f}")
    assert abs(mean) < 0.01, (mean, standard_error)
    assert mean < 4 * standard_error, (mean, standard_error)


@pytest.mark.parametrize("chunk_size", [1, 7, 64])
def test_chunked_equals_unchunked_on_the_same_noise(chunk_size):
    """Combining chunk logsumexps with logaddexp gives the one-pass answer on the same generator, for a
    VAE (k = 64, examples in batches of 3), to relative 1e-12."""
    model = VAE(VAEConfig(x_dim=5, z_dim=2, hidden=(4,), dtype="float64"))
    x = (numpy.random.default_rng(0).uniform(size=(7, 5)) < 0.5).astype(float)
    one_pass = evaluate.log_likelihood(model, x, k=64, batch_size=3, chunk_size=64, rng=5)
    chunked = evaluate.log_likelihood(model, x, k=64, batch_size=3, chunk_size=chunk_size, rng=5)
    numpy.testing.assert_allclose(chunked, one_pass, rtol=1e-12)


def test_log_likelihood_equals_the_iwae_bound_at_the_same_k():
    """For an IWAE with K = 10, log_likelihood at k = 10 (in chunks of 3) is its training bound on the same
    noise (both are Burda et al. eq. 8), and it records no graph."""
    model = IWAE(IWAEConfig(x_dim=5, z_dim=2, hidden=(4,), dtype="float64", k=10))
    x = (numpy.random.default_rng(0).uniform(size=(4, 5)) < 0.5).astype(float)
    model.eval()
    bound = model.loss(x, numpy.random.default_rng(2)).elbo
    estimate = evaluate.log_likelihood(model, x, k=10, chunk_size=3, rng=numpy.random.default_rng(2))
    numpy.testing.assert_allclose(estimate, bound, rtol=1e-12)


def test_log_likelihood_refuses_models_without_a_density_and_bad_sizes():
    """A model that declares no likelihood bound (the autoencoder) is named in the error; k, batch_size and
    chunk_size must be positive."""
    autoencoder = models.build("ae", x_dim=5, hidden=(4,), z_dim=2)
    with pytest.raises(TypeError, match="model 'ae' \\(AE\\) has no likelihood bound"):
        evaluate.log_likelihood(autoencoder, numpy.zeros((2, 5)))
    with pytest.raises(ValueError, match="chunk_size must be a positive integer, got 0"):
        evaluate.log_likelihood(linear_model(), data(2), chunk_size=0)


def test_active_units_count_the_dimensions_the_encoder_uses():
    """An encoder whose mean ignores x in latent dims 1 and 3 (zero columns of A) and scales a unit-variance
    feature by 0.02 in dim 4 (variance ≈ 4e-4, below 0.01) has exactly 2 active units, dims 0 and 2; each
    variance is the feature's variance times the squared weight, exactly."""
    model = LinearGaussianVAE(LinearGaussianConfig(x_dim=6, z_dim=5, dtype="float64"))
    A = numpy.zeros((6, 5))
    A[0, 0], A[1, 2], A[2, 4] = 1.0, 0.5, 0.02
    model.A.data[...] = A
    x = numpy.random.default_rng(0).normal(size=(500, 6))
    count, variances = evaluate.active_units(model, x)
    assert count == 2
    numpy.testing.assert_array_equal(variances > 1e-2, [True, False, True, False, False])
    numpy.testing.assert_allclose(
        variances, x[:, [0, 0, 1, 0, 2]].var(axis=0) * [1, 0, 0.25, 0, 4e-4], rtol=1e-10
    )


def test_kl_per_dimension_sums_to_the_kl_term_and_finds_collapsed_dims():
    """The per-dimension KLs sum to the batch-mean analytic KL of the ELBO; a dimension whose q(z_j|x) is
    the prior (A column 0, c_j = 0, s_j = 0) has KL exactly 0."""
    model = linear_model(x_dim=5, z_dim=2)
    model.A.data[:, 1], model.c.data[1], model.s.data[1] = 0.0, 0.0, 0.0
    x = data(20)
    per_dim = evaluate.kl_per_dimension(model, x)
    with tv.no_grad():
        mu, logvar = model.encode(x)
        total = tv.functional.gaussian_kl(mu, logvar).numpy().mean()
    assert per_dim.shape == (2,)
    assert per_dim.sum() == pytest.approx(total, rel=1e-12)
    assert per_dim[1] == 0.0 and per_dim[0] > 0.1


def test_mutual_information_is_zero_when_codes_ignore_x_and_below_log_n():
    """An encoder with A = 0 gives every x the same q(z|x): Î = 0 exactly. With sharp codes (tiny
    variance, distinct means) Î saturates at its ceiling log N."""
    model = linear_model()
    x = data(50)
    model.A.data[...] = 0.0
    assert evaluate.mutual_information(model, x, numpy.random.default_rng(0)) == pytest.approx(0.0, abs=1e-12)
    model.A.data[...] = numpy.random.default_rng(1).normal(size=model.A.shape) * 3
    model.s.data[...] = -20.0
    sharp = evaluate.mutual_information(model, x, numpy.random.default_rng(0), n_samples=3)
    assert math.log(50) - 1e-6 < sharp <= math.log(50) + 1e-12


def test_mutual_information_matches_the_gaussian_closed_form():
    """For x ~ N(0, I) and q(z|x) = N(x A + c, V), I_q(x; z) = ½ log|Aᵀ A + V| − ½ log|V| (Gaussian
    channel). On N = 2,000 examples with 4 code samples each, Î is within 0.05 nats of it (measured:
    Î = 0.197 against 0.190; the log N ceiling, 7.6, is far above)."""
    model = linear_model(x_dim=5, z_dim=2)
    rng = numpy.random.default_rng(0)
    x = rng.normal(size=(2000, 5))
    A, V = model.A.data, numpy.diag(numpy.exp(model.s.data))
    exact = 0.5 * (numpy.linalg.slogdet(A.T @ A + V)[1] - numpy.linalg.slogdet(V)[1])
    estimate = evaluate.mutual_information(model, x, rng, n_samples=4)
    print(f"mutual information {estimate:.4f} vs exact {exact:.4f}")
    assert abs(estimate - exact) < 0.05, (estimate, exact)


def test_surgery_identity_holds_for_the_estimators():
    """ELBO surgery (Hoffman & Johnson 2016): mean KL = I_q + KL(q(z) ‖ p(z)) ≥ I_q, so the estimated
    mutual information never exceeds the average KL term (checked on 200 examples, within 0.05 nats)."""
    model = linear_model()
    x = data(200)
    mi = evaluate.mutual_information(model, x, numpy.random.default_rng(0), n_samples=4)
    assert mi <= evaluate.kl_per_dimension(model, x).sum() + 0.05


def test_attribute_vector_is_exact_on_a_constructed_case():
    """With a linear encoder mean x A + c, the attribute vector is (mean x_with − mean x_without) A exactly;
    here x_with = x_without + a fixed shift, so it is shift·A."""
    model = linear_model()
    base = data(4)
    shift = numpy.array([1.0, -2.0, 0.5, 0.0, 3.0])
    x = numpy.concatenate([base, base + shift])
    mask = numpy.array([False] * 4 + [True] * 4)
    vector = evaluate.attribute_vector(model, x, mask)
    numpy.testing.assert_allclose(vector, shift @ model.A.data, rtol=1e-12)
    assert model.decode(model.latent_mean(x[:4]) + vector).shape == (4, 5)


@pytest.mark.parametrize(
    "mask, message",
    [
        (numpy.zeros(4, dtype=bool), "marks 0 of 4 examples"),
        (numpy.ones(4, dtype=bool), "marks 4 of 4 examples"),
        (numpy.array([1, 0, 1, 0]), r"boolean array of shape \(4,\).*dtype int"),
        (numpy.array([True, False]), r"shape \(4,\).*got shape \(2,\)"),
    ],
)
def test_attribute_vector_refuses_empty_groups_and_bad_masks(mask, message):
    """Both groups must be non-empty and the mask boolean, one flag per example; the error says which."""
    with pytest.raises(ValueError, match=message):
        evaluate.attribute_vector(linear_model(), data(4), mask)


def test_posterior_statistics_name_models_without_a_gaussian_posterior():
    """kl_per_dimension and mutual_information need encode(x) → (μ, log σ²); other models are named."""
    model = linear_model()
    model.encode = lambda x, y=None: numpy.zeros((3, 2))  # a point-estimate encoder, as in an AE
    with pytest.raises(TypeError, match="model 'linear' .*no diagonal-Gaussian posterior"):
        evaluate.kl_per_dimension(model, data(3))


def test_codebook_usage_delegates_to_the_vq_model_and_refuses_others():
    """evaluate.codebook_usage reports the VQ-VAE's code usage on x (perplexity between 1 and K, counts that
    sum to B·L) and names the model when it has no codebook."""
    from tinyvae.models import VAE, VQVAE, VAEConfig, VQVAEConfig

    x = (numpy.random.default_rng(0).uniform(size=(20, 6)) < 0.5).astype(numpy.float32)
    model = VQVAE(VQVAEConfig(x_dim=6, z_dim=2, hidden=(4,), codebook_size=8, latent_vectors=2))
    usage = evaluate.codebook_usage(model, x)
    assert usage["counts"].sum() == 40 and 1.0 <= usage["perplexity"] <= 8.0
    assert usage["codes_used"] == (usage["counts"] > 0).sum()
    with pytest.raises(TypeError, match="model 'vae' has no codebook"):
        evaluate.codebook_usage(VAE(VAEConfig(x_dim=6)), x)


@pytest.mark.parametrize("name", ["flow", "mixture", "hvae", "ae", "vqvae"])
def test_gaussian_only_estimates_refuse_other_posteriors(name):
    """Per-dimension KL and I_q(x; z) read q(z|x) as one diagonal Gaussian against N(0, I); a flow's base
    density, a mixture, a hierarchy's bottom layer or a code is not that, so the estimate is refused."""
    from tinyvae import models

    fields = {"x_dim": 6, "z_dim": 2, "hidden": (4,)}
    if name == "hvae":
        fields["z_dims"] = (2, 1)
    x = numpy.zeros((3, 6), dtype=numpy.float32)
    model = models.build(name, **fields)
    with pytest.raises(TypeError, match=rf"model '{name}'.*no diagonal-Gaussian posterior"):
        evaluate.kl_per_dimension(model, x)
    with pytest.raises(TypeError, match=rf"model '{name}'.*no diagonal-Gaussian posterior"):
        evaluate.mutual_information(model, x, numpy.random.default_rng(0))


def test_a_sharp_encoder_saturates_the_mutual_information_estimate_and_the_report_says_so():
    """Codes far apart and nearly deterministic (log σ² = −20): every z_n is recognised as its own x_n, the
    estimate reaches its ceiling log N, and ``report`` flags it; broad codes (log σ² = 0 with means close
    together) stay well below and are not flagged."""
    model = LinearGaussianVAE(LinearGaussianConfig(x_dim=6, z_dim=2, dtype="float64"))
    x = numpy.random.default_rng(0).normal(size=(50, 6)) * 10.0
    model.A.data[...] = numpy.eye(6, 2)
    model.s.data[...] = -20.0
    report = evaluate.report(model, x, k=5, rng=0)
    assert report["mutual_information"] == pytest.approx(math.log(50), rel=1e-3)
    assert report["mutual_information_saturated"] is True
    model.A.data[...] = 0.001 * numpy.eye(6, 2)
    model.s.data[...] = 0.0
    report = evaluate.report(model, x, k=5, rng=0)
    assert report["mutual_information"] < 0.5 and report["mutual_information_saturated"] is False


def test_the_digit_classifier_written_with_tinyvae_is_a_fair_judge():
    """Three epochs on mnist5k's 4,500 grey-level training images: at least 90% on the 500 test images
    (about 94% measured), so a sample it labels c looks like a c."""
    from tinyvae import data

    train_set = data.load_dataset("mnist5k", "train", pixels="continuous")
    test_set = data.load_dataset("mnist5k", "test", pixels="continuous")
    classifier = evaluate.train_classifier(train_set, epochs=3)
    assert (classifier.predict(test_set.x) == test_set.labels).mean() >= 0.90
    with pytest.raises(TypeError, match="model 'vae' is not conditional"):
        evaluate.class_conditional_accuracy(models.build("vae", x_dim=784), classifier)


def gaussian_kl_to_standard_normal(mean, cov):
    """KL(N(m, S) ‖ N(0, I)) = ½ (tr S + |m|² − d − log |S|), in closed form."""
    return 0.5 * (numpy.trace(cov) + mean @ mean - len(mean) - numpy.linalg.slogdet(cov)[1])


def test_aggregate_kl_is_zero_when_every_posterior_is_the_prior():
    """A = 0, c = 0, log σ² = 0: every q(z|x_n) is N(0, I), so q(z) is the prior and each term
    log q̂(z) − log p(z) is 0 whatever the draws (to rounding: this case has no Monte-Carlo error at all),
    also when the rows are taken in chunks that do not divide N."""
    model = linear_model()
    model.A.data[...], model.c.data[...], model.s.data[...] = 0.0, 0.0, 0.0
    estimate = evaluate.aggregate_kl(model, data(300), numpy.random.default_rng(0), samples=3, chunk_size=64)
    assert estimate == pytest.approx(0.0, abs=1e-12)


def test_aggregate_kl_of_identical_shifted_posteriors_is_half_the_squared_shift():
    """A = 0, c = m, log σ² = 0: every q(z|x_n) is N(m, I), so q(z) = N(m, I) and KL(q(z) ‖ p(z)) = ½|m|².
    The estimate averages z·m − ½|m|² over N·S draws (variance |m|²/(N S)); it lies within 4 standard
    errors."""
    model = linear_model()
    m = numpy.array([0.8, -0.5])
    model.A.data[...], model.c.data[...], model.s.data[...] = 0.0, m, 0.0
    n, samples = 400, 5
    estimate = evaluate.aggregate_kl(model, data(n), numpy.random.default_rng(1), samples=samples)
    standard_error = numpy.linalg.norm(m) / math.sqrt(n * samples)
    assert abs(estimate - 0.5 * m @ m) < 4 * standard_error, (estimate, 0.5 * m @ m, standard_error)


def test_aggregate_kl_matches_the_gaussian_closed_form_of_a_linear_encoder():
    """x ~ N(0, I) and q(z|x) = N(x A + c, V) make the population q(z) exactly N(c, Aᵀ A + V); with the
    2,000 examples' own mean and covariance in its place (so the examples' sampling spread drops out) the
    closed-form Gaussian KL is 0.0825 nats, and the estimate with 4 draws per example is within 0.01 of it
    (measured 0.0814; the population value is 0.0832)."""
    model = linear_model(x_dim=5, z_dim=2)
    rng = numpy.random.default_rng(0)
    x = rng.normal(size=(2000, 5))
    A, V, c = model.A.data, numpy.diag(numpy.exp(model.s.data)), model.c.data
    exact = gaussian_kl_to_standard_normal(x.mean(axis=0) @ A + c, A.T @ numpy.cov(x.T, bias=True) @ A + V)
    estimate = evaluate.aggregate_kl(model, x, rng, samples=4, chunk_size=300)
    print(f"aggregate KL {estimate:.4f} vs closed form {exact:.4f}")
    assert abs(estimate - exact) < 0.01, (estimate, exact)


def test_aggregate_kl_is_biased_up_for_few_examples():
    """As documented: for a batch of N examples drawn from a population, E K̂_N ≥ KL(q ‖ p) (KL is convex in
    q). With N = 10 the mean over 1,000 batches lies more than 3 standard errors above the population value
    0.0832 (measured 0.110 ± 0.007 over 400 batches)."""
    model = linear_model(x_dim=5, z_dim=2)
    A, V, c = model.A.data, numpy.diag(numpy.exp(model.s.data)), model.c.data
    population = gaussian_kl_to_standard_normal(c, A.T @ A + V)
    rng = numpy.random.default_rng(2)
    estimates = numpy.array(
        [evaluate.aggregate_kl(model, rng.normal(size=(10, 5)), rng) for _ in range(1000)]
    )
    mean, standard_error = estimates.mean(), estimates.std(ddof=1) / math.sqrt(len(estimates))
    print(f"N = 10: {mean:.4f} ± {standard_error:.4f} vs population {population:.4f}")
    assert mean > population + 3 * standard_error, (mean, standard_error, population)


def small_vae():
    """A float64 VAE (5 → 8 → 3) with its encoder weights scaled by 1.5, so the codes move with x."""
    model = VAE(VAEConfig(x_dim=5, z_dim=3, hidden=(8,), dtype="float64", seed=4))
    for parameter in model.encoder.parameters():
        parameter.data[...] *= 1.5
    return model


def test_elbo_surgery_identity_holds_within_monte_carlo_error():
    """Hoffman & Johnson (2016): mean KL term = I_q(x; z) + KL(q(z) ‖ p(z)). On a small VAE over 100
    examples, Î and K̂ drawn on independent noise add up to the analytic mean KL within 4 standard errors
    over 30 repetitions; on the same noise they add up to the sampled KL term mean[log q(z|x) − log p(z)]
    to rounding."""
    model = small_vae()
    x = (numpy.random.default_rng(0).uniform(size=(100, 5)) < 0.5).astype(float)
    kl = evaluate.kl_per_dimension(model, x).sum()
    assert kl > 0.3  # a code that carries something, so the identity is not 0 = 0 + 0
    gaps = numpy.array(
        [
            evaluate.mutual_information(model, x, numpy.random.default_rng(r))
            + evaluate.aggregate_kl(model, x, numpy.random.default_rng(1000 + r))
            - kl
            for r in range(30)
        ]
    )
    mean, standard_error = gaps.mean(), gaps.std(ddof=1) / math.sqrt(len(gaps))
    print(f"I + KL(q(z) ‖ p) − mean KL = {mean:.4f} ± {standard_error:.4f} (mean KL {kl:.3f})")
    assert abs(mean) < 4 * standard_error, (mean, standard_error)

    with tv.no_grad():
        mu, logvar = (t.numpy() for t in model.encode(x))
    z = mu + numpy.exp(0.5 * logvar) * numpy.random.default_rng(7).standard_normal(mu.shape)
    log_q = (-0.5 * (evaluate.LOG_2PI + logvar + (z - mu) ** 2 / numpy.exp(logvar))).sum(axis=1)
    log_p = (-0.5 * (evaluate.LOG_2PI + z**2)).sum(axis=1)
    sampled_kl = (log_q - log_p).mean()
    same_noise = evaluate.mutual_information(model, x, 7) + evaluate.aggregate_kl(model, x, 7)
    assert same_noise == pytest.approx(sampled_kl, rel=1e-10)


def test_aggregate_kl_refuses_other_posteriors_and_bad_sizes_and_joins_the_report():
    """Same applicability as I_q (a diagonal Gaussian against N(0, I)); samples and chunk_size must be
    positive; ``report`` gives it next to mutual_information, and the two add up to the KL term there too
    (within 0.05 nats on 200 examples)."""
    flow = models.build("flow", x_dim=6, z_dim=2, hidden=(4,))
    with pytest.raises(TypeError, match=r"aggregate_kl: model 'flow'.*no diagonal-Gaussian posterior"):
        evaluate.aggregate_kl(flow, numpy.zeros((3, 6), dtype=numpy.float32), 0)
    with pytest.raises(ValueError, match="samples must be a positive integer, got 0"):
        evaluate.aggregate_kl(linear_model(), data(3), 0, samples=0)
    report = evaluate.report(linear_model(), data(200), k=5, rng=0)
    total = sum(report["kl_per_dimension"])
    assert report["aggregate_kl"] >= -0.05
    assert abs(report["mutual_information"] + report["aggregate_kl"] - total) < 0.05, report
