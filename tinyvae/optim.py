"""Optimisers: SGD with momentum, Adam (and AdamW's decoupled weight decay), and gradient-norm clipping.

Each ``step()`` updates the parameters' arrays in place from their ``.grad``; ``zero_grad()`` clears the
gradients (which otherwise accumulate across backward passes). Parameters whose ``.grad`` is None are
skipped, so a parameter that did not take part in a loss is left alone.
"""

from __future__ import annotations

import math

import numpy

from tinyvae import kernels


class Optimizer:
    def __init__(self, params, lr):
        self.params = list(params)
        if not self.params:
            raise ValueError(f"{type(self).__name__}: got an empty parameter list")
        if not lr > 0:
            raise ValueError(f"{type(self).__name__}: lr must be positive, got {lr!r}")
        self.lr = float(lr)
        self.steps = 0

    def zero_grad(self):
        for p in self.params:
            p.grad = None

    def step(self):
        raise NotImplementedError

    # ----- saving and resuming -----
    def state_arrays(self):
        """(name, array) for every buffer of the optimiser's state as it is held (no copy, on the device
        where it lives): the arrays ``state_dict`` saves, under the same names."""
        for slot, buffers in self._buffers().items():
            for i, buffer in enumerate(buffers):
                if buffer is not None:
                    yield f"{slot}.{i}", buffer

    def state_dict(self):
        """{name: array} of the optimiser's state, ready for ``numpy.savez`` (no pickled objects)."""
        state = {"steps": numpy.asarray(self.steps)}
        for name, buffer in self.state_arrays():
            state[name] = buffer.get() if hasattr(buffer, "get") else buffer.copy()
        return state

    def load_state_dict(self, state):
        self.steps = int(state["steps"])
        for slot, buffers in self._buffers().items():
            for i, p in enumerate(self.params):
                key = f"{slot}.{i}"
                if key not in state:
                    buffers[i] = None
                    continue
                if numpy.shape(state[key]) != p.shape:
                    raise ValueError(
                        f"{type(self).__name__}.load_state_dict: '{key}' has shape {numpy.shape(state[key])} "
                        f"but parameter {i} has shape {p.shape}"
                    )
                buffers[i] = p.xp.array(state[key], dtype=p.dtype)

    def _buffers(self):
        return {}


class SGD(Optimizer):
    """p ← p − lr · v with v ← momentum · v + (g + weight_decay · p) (heavy-ball momentum; v = g when
    momentum is 0)."""

    def __init__(self, params, lr, momentum=0.0, weight_decay=0.0):
        super().__init__(params, lr)
        if not 0 <= momentum < 1:
            raise ValueError(f"SGD: momentum must be in [0, 1), got {momentum!r}")
        if weight_decay < 0:
            raise ValueError(f"SGD: weight_decay must be >= 0, got {weight_decay!r}")
        self.momentum, self.weight_decay = float(momentum), float(weight_decay)
        self.velocity = [None] * len(self.params)

    def _buffers(self):
        return {"velocity": self.velocity}

    def step(self):
        self.steps += 1
        for i, p in enumerate(self.params):
            if p.grad is None:
                continue
            g = p.grad + self.weight_decay * p.data if self.weight_decay else p.grad
            if self.momentum:
                if self.velocity[i] is None:
                    self.velocity[i] = p.xp.array(g, dtype=p.dtype)
                else:
                    self.velocity[i] *= self.momentum
                    self.velocity[i] += g
                g = self.velocity[i]
            p.data -= self.lr * g


class Adam(Optimizer):
    """Adam (Kingma & Ba 2015, Algorithm 1), optionally with weight decay.

        m ← β1 m + (1 − β1) g,   v ← β2 v + (1 − β2) g²,
        p ← p − lr_t · m / (sqrt(v) + ε_t),
        lr_t = lr · sqrt(1 − β2^t) / (1 − β1^t),   ε_t = ε · sqrt(1 − β2^t)

    The update is Algorithm 1's bias-corrected update rearranged (the paper's Sec. 2, last paragraph):
    it equals p − lr · m̂ / (sqrt(v̂) + ε) with m̂, v̂ the bias-corrected moments, without computing them.
    ``weight_decay`` adds ``weight_decay · p`` to g (L2 regularisation, as in the paper); with
    ``decoupled_weight_decay=True`` it instead shrinks p by ``lr · weight_decay · p`` each step (AdamW,
    Loshchilov & Hutter 2019), which does not get rescaled by the adaptive denominator.
    """

    def __init__(
        self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, decoupled_weight_decay=False
    ):
        super().__init__(params, lr)
        beta1, beta2 = betas
        if not (0 <= beta1 < 1 and 0 <= beta2 < 1):
            raise ValueError(f"Adam: betas must be in [0, 1), got {betas!r}")
        if not eps > 0:
            raise ValueError(f"Adam: eps must be positive, got {eps!r}")
        if weight_decay < 0:
            raise ValueError(f"Adam: weight_decay must be >= 0, got {weight_decay!r}")
        self.beta1, self.beta2, self.eps = float(beta1), float(beta2), float(eps)
        self.weight_decay, self.decoupled_weight_decay = float(weight_decay), bool(decoupled_weight_decay)
        self.m = [None] * len(self.params)
        self.v = [None] * len(self.params)
        self._scratch = [None] * len(self.params)  # the NumPy version's work array, reused every step

    def _buffers(self):
        return {"m": self.m, "v": self.v}

    def step(self):
        self.steps += 1
        t = self.steps
        correction = math.sqrt(1 - self.beta2**t)
        lr_t = self.lr * correction / (1 - self.beta1**t)
        eps_t = self.eps * correction
        updates = []
        for i, p in enumerate(self.params):
            if p.grad is None:
                continue
            xp = p.xp
            g = p.grad
            if self.weight_decay and not self.decoupled_weight_decay:
                g = g + self.weight_decay * p.data
            if self.m[i] is None:
                self.m[i] = xp.zeros_like(p.data)
                self.v[i] = xp.zeros_like(p.data)
            if self.weight_decay and self.decoupled_weight_decay:
                p.data *= 1 - self.lr * self.weight_decay
            if self._scratch[i] is None:
                self._scratch[i] = xp.empty_like(p.data)
            updates.append((p.data, g, self.m[i], self.v[i], self._scratch[i]))
        # One fused pass per parameter under the numba or cupy backend; NumPy ufuncs with a scratch array
        # otherwise.
        kernels.adam_update_all(updates, lr_t, eps_t, self.beta1, self.beta2)


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter 2019); ``weight_decay`` defaults to 0.01."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01):
        super().__init__(params, lr, betas, eps, weight_decay, decoupled_weight_decay=True)


def clip_grad_norm(params, max_norm):
    """Scale all gradients together so their global L2 norm is at most ``max_norm``.

    Returns the norm before clipping (useful to log). Parameters without a gradient are ignored.
    """
    if not max_norm > 0:
        raise ValueError(f"clip_grad_norm: max_norm must be positive, got {max_norm!r}")
    grads = [p.grad for p in params if p.grad is not None]
    total = math.sqrt(sum(float((g.astype(numpy.float64) ** 2).sum()) for g in grads))
    if total > max_norm:
        scale = max_norm / (total + 1e-12)
        for p in params:
            if p.grad is not None:
                p.grad = p.grad * scale
    return total
