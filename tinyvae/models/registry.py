"""The registry of models: what ``tinyvae train --model NAME``, ``models.build`` and the checkpoint loader
look names up in.

A model is registered by decorating its class::

    @register
    class MyVAE(VAE):
        name = "my-vae"
        ...

and from then on it trains, plots, evaluates and reloads like the built-in ones, also when it is defined
in a user's own script (register it before the run is started or the checkpoint is loaded).
"""

from __future__ import annotations

MODELS = {}  # name → class, in the order of registration


def register(cls):
    """Add the model class ``cls`` to :data:`MODELS` under ``cls.name``; returns ``cls`` (a decorator).

    Refused: a class that is not a :class:`tinyvae.models.base.Model`, one without its own ``name``, and a
    name already taken by another class (registering the same class again is allowed: re-running a script
    in one session must not fail)."""
    from tinyvae.models.base import Model

    if not (isinstance(cls, type) and issubclass(cls, Model)):
        raise TypeError(f"register: expected a subclass of tinyvae.models.Model, got {cls!r}")
    name = cls.__dict__.get("name")
    if not isinstance(name, str) or not name:
        raise ValueError(f"register: {cls.__name__} must set its own class attribute `name` (a string)")
    taken = MODELS.get(name)
    if taken is not None and taken.__qualname__ != cls.__qualname__:
        raise ValueError(f"register: the name {name!r} is taken by {taken.__module__}.{taken.__qualname__}")
    MODELS[name] = cls
    return cls
