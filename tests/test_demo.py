"""The README's first command: the demo trains a real model and its loss goes down."""

import numpy

from tinyvae import data, demo


def test_demo_loss_goes_down_and_stays_above_the_true_density():
    """After 15 epochs the negative ELBO is at most a third of the first epoch's, and (being the negative
    of a lower bound on log p(x)) it stays above the data's true negative log-likelihood."""
    history = demo.main(["--epochs", "15", "--seed", "1"])
    assert history[-1] < history[0] / 3
    assert history[-1] > demo.true_negative_log_likelihood(
        data.load_dataset("ring", "train", n=demo.POINTS).x
    )


def test_the_true_density_is_the_one_the_ring_is_drawn_from():
    """The yardstick is right: on a large sample of the ring, the mixture density the demo uses scores
    (within Monte-Carlo error) the entropy it implies, and a density with the wrong spread scores worse."""
    points = data.ring(200_000, numpy.random.default_rng(0))[0]
    right = demo.true_negative_log_likelihood(points)
    assert right < demo.true_negative_log_likelihood(points, std=0.12)
    assert right < demo.true_negative_log_likelihood(points, std=0.08)
