"""The README's first command: the demo trains a real model and its loss goes down."""

import numpy

from tinyvae import demo


def test_demo_loss_goes_down_and_stays_above_the_true_density():
    """After 15 epochs the negative ELBO is at most a third of the first epoch's, and (being the negative
    of a lower bound on log p(x)) it stays above the data's true negative log-likelihood."""
    history = demo.main(["--epochs", "15", "--seed", "1"])
    assert history[-1] < history[0] / 3
    rng = numpy.random.default_rng(1)
    assert history[-1] > demo.true_negative_log_likelihood(demo.ring_of_gaussians(4096, rng))
