"""One training step of the MLP VAE 784-400-20: tinyvae against a hand-written NumPy step (issue 2).

The network (the same in every implementation)::

    x (B, 784) → Linear(784, 400) → ReLU → h1 (B, 400)
    h1 → Linear(400, 20) = mu,   h1 → Linear(400, 20) = logvar        (two heads)
    z = mu + exp(logvar / 2) * eps,   eps ~ N(0, I) from a seeded numpy Generator
    z → Linear(20, 400) → ReLU → Linear(400, 784) = logits
    loss = mean_b [ −Σ_pixels log Bern(x | sigmoid(logits)) + KL(N(mu, e^logvar) ‖ N(0, I)) ]

A step is: draw eps, forward, backward, Adam update (float32). Implementations:

* ``tinyvae``: ``tv.nn.Linear`` / ``tv.nn.MLP``, ``tinyvae.functional``, ``tv.optim.Adam``.
* ``numpy``: the same forward with the backward derived and written by hand (no autodiff), gradient buffers
  reused, and a plain NumPy Adam with tv.optim.Adam's arithmetic.
* ``torch`` (optional peer, only if ``import torch`` works; never installed for this).
* ``jax`` (optional peer, ``--peers`` only): the whole step (loss, gradients, Adam) as one ``jax.jit``
  function, XLA on the CPU limited to the thread count.
* ``gemm-floor`` (``--peers`` only): the step's 14 matrix products alone (5 forward, 9 backward) into
  preallocated outputs: what any implementation on this BLAS must spend at least.
* ``gemm+adam`` (``--peers`` only): the GEMM floor plus tinyvae's Adam over the ten parameters, the least
  a step with this BLAS and this optimiser spends: the budget the bars leave for everything else.

Before any timing the script checks, for every batch size, that tinyvae and the hand-written step give the
same loss and the same ten gradients from the same weights and eps, and that both Adams move identical
parameters identically. If they disagree it exits without reporting a number.

Timing: each thread count runs in its own subprocess with ``OMP_NUM_THREADS`` / ``OPENBLAS_NUM_THREADS``
set before NumPy is imported. The implementations alternate in rounds (a few steps of one, then of the other,
the order flipping every round) so that noise from other processes hits both; each step is timed on its own
and the median is reported.

    python benchmarks/bench_step.py [--steps N] [--batch-sizes 16,128,512] [--threads 1,2] [--markdown]
                                    [--write-results]

``--peers`` times tinyvae, PyTorch eager (fused Adam), JAX jit and the GEMM floor **each in its own
process** (a framework's thread pools and OpenMP runtime cannot slow another down), bound to as many CPUs
as the thread count (XLA's CPU pool ignores the thread variables; the binding holds every runtime to the
same cores), one process per
(implementation, thread count, round), ``--rounds`` rounds alternating the implementations' order; each
process reports the median of its steps, and the table the median over rounds:

    python benchmarks/bench_step.py --peers [--rounds 3] [--steps 200] [--threads 1,2]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time

import numpy as np
from _machine import cpu_model, fresh_process_environment  # benchmarks/ is on sys.path when a script runs

IN, HIDDEN, LATENT = 784, 400, 20
SEED = 0
PIXEL_ON = 0.3  # binary "images": each pixel is 1 with this probability
RESULTS_SECTION = "## Training step: tinyvae vs hand-written NumPy (issue 2)"
BAR = {128: 1.2, 16: 1.6}  # issue 2: tinyvae ≤ 1.2× hand-written at batch 128, ≤ 1.6× at batch 16
LR = 1e-3


def make_batch(batch):
    rng = np.random.default_rng(SEED + batch)
    return (rng.random((batch, IN)) < PIXEL_ON).astype(np.float32)  # (B, 784)


# ---------------------------------------------------------------- tinyvae


class TinyvaeStep:
    """The step written as a tinyvae user would write it."""

    name = "tinyvae"

    def __init__(self, batch):
        import tinyvae as tv
        import tinyvae.functional as F

        self.F = F
        rng = np.random.default_rng(SEED)
        self.encoder = tv.nn.Linear(IN, HIDDEN, rng=rng)
        self.to_mu = tv.nn.Linear(HIDDEN, LATENT, rng=rng)
        self.to_logvar = tv.nn.Linear(HIDDEN, LATENT, rng=rng)
        self.decoder = tv.nn.MLP([LATENT, HIDDEN, IN], activation="relu", rng=rng)
        self.params = (
            self.encoder.parameters()
            + self.to_mu.parameters()
            + self.to_logvar.parameters()
            + self.decoder.parameters()
        )  # W1, b1, Wmu, bmu, Wlv, blv, W3, b3, W4, b4
        self.opt = tv.optim.Adam(self.params, lr=LR)
        self.noise = np.random.default_rng(SEED + 1)
        self.batch = batch

    def loss(self, x, eps):
        F = self.F
        h = F.relu(self.encoder(x))  # (B, 400)
        mu, logvar = self.to_mu(h), self.to_logvar(h)  # (B, 20) each
        z = F.reparameterize(mu, logvar, eps)  # (B, 20)
        logits = self.decoder(z)  # (B, 784)
        rec = F.bernoulli_log_prob(logits, x).sum(axis=-1)  # (B,)
        return (F.gaussian_kl(mu, logvar) - rec).mean()

    def step(self, x):
        eps = self.noise.standard_normal((self.batch, LATENT), dtype=np.float32)
        self.opt.zero_grad()
        loss = self.loss(x, eps)
        loss.backward()
        self.opt.step()
        return loss

    def arrays(self):
        return [p.data for p in self.params]

    def grads(self):
        return [p.grad for p in self.params]


class TinyvaeNumpyBackendStep(TinyvaeStep):
    """The same tinyvae step under ``tv.backend.use("numpy")`` (Adam in NumPy ufuncs), for the issue's
    numba-vs-NumPy-backend ratio measured in the same run. The two backend switches per step cost a few µs."""

    name = "tinyvae-numpy"

    def step(self, x):
        import tinyvae as tv

        previous = tv.backend.current()
        tv.backend.use("numpy")
        try:
            return super().step(x)
        finally:
            tv.backend.use(previous)


# ---------------------------------------------------------------- hand-written NumPy


class NumpyAdam:
    """tv.optim.Adam's update, in place with one scratch array per parameter:
    m ← β1 m + (1−β1) g,  v ← β2 v + (1−β2) g²,  p ← p − lr_t m / (sqrt(v) + ε_t),
    lr_t = lr sqrt(1−β2^t) / (1−β1^t),  ε_t = ε sqrt(1−β2^t)."""

    def __init__(self, params, lr=LR, beta1=0.9, beta2=0.999, eps=1e-8):
        self.params, self.lr, self.beta1, self.beta2, self.eps = params, lr, beta1, beta2, eps
        self.m = [np.zeros_like(p) for p in params]
        self.v = [np.zeros_like(p) for p in params]
        self.work = [np.empty_like(p) for p in params]
        self.t = 0

    def step(self, grads):
        self.t += 1
        correction = (1 - self.beta2**self.t) ** 0.5
        lr_t = self.lr * correction / (1 - self.beta1**self.t)
        eps_t = self.eps * correction
        b1, b2 = self.beta1, self.beta2
        for p, g, m, v, work in zip(self.params, grads, self.m, self.v, self.work, strict=True):
            m *= b1
            np.multiply(g, 1 - b1, out=work)
            m += work
            v *= b2
            np.multiply(g, g, out=work)
            work *= 1 - b2
            v += work
            np.sqrt(v, out=work)
            work += eps_t
            np.divide(m, work, out=work)
            work *= lr_t
            p -= work


class NumpyStep:
    """The same network with its backward derived by hand. With s = sigmoid(logits) and B the batch:

    dL/dlogits = (s − x) / B                 (d softplus(l)/dl = s, −Σ log Bern = Σ softplus(l) − x l)
    dL/dh3 = dL/dlogits W4ᵀ, masked by h3 > 0;   dL/dz = dL/da3 W3ᵀ
    dL/dmu = dL/dz + mu / B;   dL/dlogvar = dL/dz · eps σ / 2 + (σ² − 1) / (2B)
    dL/dh1 = dL/dmu Wmuᵀ + dL/dlogvar Wlvᵀ, masked by h1 > 0;   dL/dW = inputᵀ dL/d(output), dL/db = Σ_b.
    """

    name = "numpy"

    def __init__(self, batch, arrays):
        self.params = [a.copy() for a in arrays]  # W1, b1, Wmu, bmu, Wlv, blv, W3, b3, W4, b4
        self.grads = [np.empty_like(a) for a in arrays]  # written in place every step
        self.opt = NumpyAdam(self.params)
        self.noise = np.random.default_rng(SEED + 1)
        self.batch = batch

    def loss_and_grads(self, x, eps):
        W1, b1, Wm, bm, Wv, bv, W3, b3, W4, b4 = self.params
        gW1, gb1, gWm, gbm, gWv, gbv, gW3, gb3, gW4, gb4 = self.grads
        B = x.shape[0]
        inv_b = np.float32(1.0 / B)
        # ----- forward
        h1 = x @ W1  # (B, 400)
        h1 += b1
        np.maximum(h1, 0, out=h1)
        mu = h1 @ Wm  # (B, 20)
        mu += bm
        logvar = h1 @ Wv  # (B, 20)
        logvar += bv
        std = np.multiply(logvar, 0.5)
        np.exp(std, out=std)  # σ = exp(logvar / 2)
        z = std * eps  # (B, 20)
        z += mu
        h3 = z @ W3  # (B, 400)
        h3 += b3
        np.maximum(h3, 0, out=h3)
        logits = h3 @ W4  # (B, 784)
        logits += b4
        # −Σ log Bern(x | σ(l)) = Σ softplus(l) − x·l,  softplus(l) = max(l, 0) + log1p(e^−|l|)
        work = np.abs(logits)
        np.negative(work, out=work)
        np.exp(work, out=work)
        np.log1p(work, out=work)
        nll = work.sum(dtype=np.float32)
        np.maximum(logits, 0, out=work)
        nll += work.sum(dtype=np.float32) - np.vdot(x, logits)
        var = std * std  # σ²
        kl = 0.5 * (np.vdot(mu, mu) + var.sum() - logvar.sum() - B * LATENT)
        loss = (nll + kl) * inv_b
        # ----- backward
        g = np.multiply(logits, 0.5, out=work)  # s = (1 + tanh(l/2)) / 2, in the work buffer
        np.tanh(g, out=g)
        g += 1
        g *= 0.5
        g -= x
        g *= inv_b  # dL/dlogits (B, 784)
        np.matmul(h3.T, g, out=gW4)
        g.sum(axis=0, out=gb4)
        gh3 = g @ W4.T  # (B, 400)
        np.multiply(gh3, h3 > 0, out=gh3)
        np.matmul(z.T, gh3, out=gW3)
        gh3.sum(axis=0, out=gb3)
        gz = gh3 @ W3.T  # (B, 20)
        gmu = mu * inv_b
        gmu += gz
        glv = gz * std
        glv *= eps
        var -= 1
        var *= inv_b
        glv += var
        glv *= 0.5
        np.matmul(h1.T, gmu, out=gWm)
        gmu.sum(axis=0, out=gbm)
        np.matmul(h1.T, glv, out=gWv)
        glv.sum(axis=0, out=gbv)
        gh1 = gmu @ Wm.T  # (B, 400)
        gh1 += glv @ Wv.T
        np.multiply(gh1, h1 > 0, out=gh1)
        np.matmul(x.T, gh1, out=gW1)
        gh1.sum(axis=0, out=gb1)
        return loss

    def step(self, x):
        eps = self.noise.standard_normal((self.batch, LATENT), dtype=np.float32)
        loss = self.loss_and_grads(x, eps)
        self.opt.step(self.grads)
        return loss

    def arrays(self):
        return self.params


# ---------------------------------------------------------------- optional PyTorch peer


class TorchStep:
    """PyTorch eager with the same network, weights and loss (only if torch is importable)."""

    def __init__(self, batch, arrays, threads, fused=False):
        import torch

        torch.set_num_threads(threads)
        self.name = "torch-fused" if fused else "torch"  # Adam: one fused kernel, or the default (foreach)
        self.torch = torch
        self.params = [torch.tensor(a.copy(), requires_grad=True) for a in arrays]
        self.opt = torch.optim.Adam(self.params, lr=LR, fused=fused)
        self.noise = np.random.default_rng(SEED + 1)
        self.batch = batch

    def step(self, x):
        torch = self.torch
        W1, b1, Wm, bm, Wv, bv, W3, b3, W4, b4 = self.params
        eps = torch.from_numpy(self.noise.standard_normal((self.batch, LATENT), dtype=np.float32))
        x = torch.from_numpy(x)
        self.opt.zero_grad(set_to_none=True)
        h1 = torch.relu(x @ W1 + b1)
        mu, logvar = h1 @ Wm + bm, h1 @ Wv + bv
        z = mu + torch.exp(0.5 * logvar) * eps
        logits = torch.relu(z @ W3 + b3) @ W4 + b4
        nll = torch.nn.functional.binary_cross_entropy_with_logits(logits, x, reduction="sum")
        kl = 0.5 * (mu * mu + logvar.exp() - logvar - 1).sum()
        loss = (nll + kl) / self.batch
        loss.backward()
        self.opt.step()
        return loss


class JaxStep:
    """JAX with the same network, weights, loss and Adam arithmetic, the whole step one jitted function."""

    name = "jax"

    def __init__(self, batch, arrays):
        import jax
        import jax.numpy as jnp

        self.jax = jax
        self.params = tuple(jnp.asarray(a) for a in arrays)
        self.m = tuple(jnp.zeros_like(p) for p in self.params)
        self.v = tuple(jnp.zeros_like(p) for p in self.params)
        self.t = jnp.zeros((), jnp.float32)
        self.noise = np.random.default_rng(SEED + 1)
        self.batch = batch
        beta1, beta2, adam_eps = 0.9, 0.999, 1e-8

        def loss_fn(params, x, eps):
            W1, b1, Wm, bm, Wv, bv, W3, b3, W4, b4 = params
            h1 = jax.nn.relu(x @ W1 + b1)
            mu, logvar = h1 @ Wm + bm, h1 @ Wv + bv
            z = mu + jnp.exp(0.5 * logvar) * eps
            logits = jax.nn.relu(z @ W3 + b3) @ W4 + b4
            nll = jnp.sum(jnp.maximum(logits, 0) - logits * x + jnp.log1p(jnp.exp(-jnp.abs(logits))))
            kl = 0.5 * jnp.sum(mu * mu + jnp.exp(logvar) - logvar - 1)
            return (nll + kl) / x.shape[0]

        def step(params, m, v, t, x, eps):
            loss, grads = jax.value_and_grad(loss_fn)(params, x, eps)
            t = t + 1
            m = tuple(beta1 * mi + (1 - beta1) * g for mi, g in zip(m, grads, strict=True))
            v = tuple(beta2 * vi + (1 - beta2) * g * g for vi, g in zip(v, grads, strict=True))
            scale = LR * jnp.sqrt(1 - beta2**t) / (1 - beta1**t)
            params = tuple(
                p - scale * mi / (jnp.sqrt(vi) + adam_eps) for p, mi, vi in zip(params, m, v, strict=True)
            )
            return params, m, v, t, loss

        self._step = jax.jit(step, donate_argnums=(0, 1, 2))

    def step(self, x):
        eps = self.noise.standard_normal((self.batch, LATENT), dtype=np.float32)
        self.params, self.m, self.v, self.t, loss = self._step(self.params, self.m, self.v, self.t, x, eps)
        return loss.block_until_ready()


class GemmFloorStep:
    """The step's matrix products alone, into preallocated outputs: 5 forward (x·W1, h1·Wμ, h1·Wv, z·W3,
    h3·W4), and backward the 5 weight gradients and the 4 input gradients a VAE step needs (x needs none)."""

    name = "gemm-floor"

    def __init__(self, batch, arrays):
        W1, _, Wm, _, Wv, _, W3, _, W4, _ = (a.copy() for a in arrays)
        rng = np.random.default_rng(SEED)
        act = {n: rng.standard_normal((batch, n)).astype(np.float32) for n in (IN, HIDDEN, LATENT)}
        self.products = [  # (a, b, out): out = a @ b
            (act[IN], W1), (act[HIDDEN], Wm), (act[HIDDEN], Wv), (act[LATENT], W3), (act[HIDDEN], W4),
            (act[IN].T, act[HIDDEN]), (act[HIDDEN].T, act[LATENT]), (act[HIDDEN].T, act[LATENT]),
            (act[LATENT].T, act[HIDDEN]), (act[HIDDEN].T, act[IN]),
            (act[LATENT], Wm.T), (act[LATENT], Wv.T), (act[HIDDEN], W3.T), (act[IN], W4.T),
        ]  # fmt: skip
        self.outputs = [np.empty((a.shape[0], b.shape[1]), np.float32) for a, b in self.products]

    def step(self, x):
        for (a, b), out in zip(self.products, self.outputs, strict=True):
            np.matmul(a, b, out=out)
        return np.float32(0.0)


class GemmAdamFloorStep(GemmFloorStep):
    """The GEMM floor plus tinyvae's Adam update of the ten parameters (fixed gradients): the least a step
    with this BLAS and this optimiser spends, whatever its autodiff does. Adam reads p, g, m, v and writes
    p, m, v for 652,824 parameters (18 MB of memory traffic), so it is a fixed cost at every batch size."""

    name = "gemm+adam"

    def __init__(self, batch, arrays):
        import tinyvae as tv

        super().__init__(batch, arrays)
        rng = np.random.default_rng(SEED + 2)
        self.params = [tv.Tensor(a.copy(), requires_grad=True) for a in arrays]
        for p in self.params:
            p.grad = (1e-3 * rng.standard_normal(p.shape)).astype(np.float32)
        self.opt = tv.optim.Adam(self.params, lr=LR)

    def step(self, x):
        super().step(x)
        self.opt.step()
        return np.float32(0.0)


# ---------------------------------------------------------------- checks


def _close(a, b, rtol, what):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    atol = rtol * max(float(np.abs(b).max()), 1e-30)  # relative to the array's scale
    bad = np.abs(a - b) > atol + rtol * np.abs(b)
    if bad.any():
        i = np.unravel_index(np.argmax(np.abs(a - b)), a.shape) if a.ndim else ()
        raise SystemExit(
            f"REFUSING TO REPORT: {what} disagree at {i}: tinyvae {a[i]!r} vs hand-written {b[i]!r} "
            f"({int(bad.sum())} of {a.size} elements outside rtol={rtol})"
        )


def check_agreement(batch):
    """Same weights, same eps, same x: same loss and gradients; then Adam on the same gradients."""
    x = make_batch(batch)
    eps = np.random.default_rng(SEED + 2).standard_normal((batch, LATENT), dtype=np.float32)
    tv_step = TinyvaeStep(batch)
    np_step = NumpyStep(batch, tv_step.arrays())
    tv_step.opt.zero_grad()
    tv_loss = tv_step.loss(x, eps)
    tv_loss.backward()
    np_loss = np_step.loss_and_grads(x, eps)
    _close(tv_loss.item(), np_loss, 1e-5, f"losses (batch {batch})")
    names = ["W1", "b1", "Wmu", "bmu", "Wlv", "blv", "W3", "b3", "W4", "b4"]
    for name, tg, ng in zip(names, tv_step.grads(), np_step.grads, strict=True):
        assert tg.dtype == np.float32 and ng.dtype == np.float32
        _close(tg, ng, 1e-4, f"gradients of {name} (batch {batch})")
    # Adam: feed both optimisers the very same gradients, twice, and compare the parameters.
    for _ in range(2):
        grads = [g.copy() for g in tv_step.grads()]
        np_step.opt.step(grads)
        tv_step.opt.step()
    for name, tp, npp in zip(names, tv_step.arrays(), np_step.params, strict=True):
        _close(tp, npp, 1e-6, f"parameters after two Adam steps, {name} (batch {batch})")
    return abs(tv_loss.item() - float(np_loss)) / abs(float(np_loss))


# ---------------------------------------------------------------- timing (worker side)


def time_batch(batch, steps, threads, round_size=10, warmup=20):
    x = make_batch(batch)
    tv_step = TinyvaeStep(batch)
    impls = [tv_step, TinyvaeNumpyBackendStep(batch), NumpyStep(batch, tv_step.arrays())]
    try:
        impls += [TorchStep(batch, tv_step.arrays(), threads, fused) for fused in (False, True)]
    except ImportError:
        pass
    for impl in impls:
        for _ in range(warmup):
            impl.step(x)
    times = {impl.name: [] for impl in impls}
    rounds = -(-steps // round_size)
    for r in range(rounds):
        order = impls if r % 2 == 0 else impls[::-1]  # who goes first flips every round
        for impl in order:
            record = times[impl.name]
            for _ in range(round_size):
                t0 = time.perf_counter()
                impl.step(x)
                record.append(time.perf_counter() - t0)
    for impl in impls:  # a diverged run (inf/NaN) would time the wrong thing
        loss = impl.step(x)
        loss = float(loss.item() if hasattr(loss, "item") else loss)
        if not np.isfinite(loss):
            raise SystemExit(f"REFUSING TO REPORT: {impl.name} diverged (loss {loss}) at batch {batch}")
    return {name: 1e3 * float(np.median(t)) for name, t in times.items()}, rounds * round_size


def blas_info():
    try:
        config = np.show_config(mode="dicts")
        blas = config["Build Dependencies"]["blas"]
        return f"{blas.get('name')} {blas.get('version')} ({blas.get('openblas configuration', '')})".strip()
    except Exception as error:  # noqa: BLE001  (a description only; never fail the benchmark on it)
        return f"unknown ({error})"


def worker(args):
    threads = int(args.threads)
    import tinyvae

    kernels = tinyvae.backend.openblas_kernels()
    out = {"threads": threads, "numpy": np.__version__, "blas": blas_info(), "kernels": kernels, "rows": []}
    try:
        import torch

        out["torch"] = torch.__version__
    except ImportError:
        out["torch"] = None
    for batch in args.batch_sizes:
        rel = check_agreement(batch)
        steps = args.steps if batch < 512 or args.steps_512 is None else args.steps_512
        medians, n = time_batch(batch, steps, threads)
        out["rows"].append({"batch": batch, "steps": n, "loss_rel_diff": rel, "ms": medians})
    print(json.dumps(out))


# ---------------------------------------------------------------- driver


def run_thread_count(args, threads):
    env = fresh_process_environment(dict(os.environ))
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
        env[var] = str(threads)
    cmd = [
        sys.executable,
        os.path.abspath(__file__),
        "--worker",
        "--threads",
        str(threads),
        "--steps",
        str(args.steps),
        "--batch-sizes",
        ",".join(map(str, args.batch_sizes)),
    ]
    if args.steps_512 is not None:
        cmd += ["--steps-512", str(args.steps_512)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr)
        sys.stdout.write(proc.stdout)
        raise SystemExit(proc.returncode or 1)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def table(results, markdown):
    has_torch = any("torch" in row["ms"] for res in results for row in res["rows"])
    header = ["threads", "batch", "steps", "tinyvae ms/step", "NumPy ms/step", "tinyvae / NumPy", "bar"]
    header += ["tinyvae, numpy backend ms/step", "numba / numpy backend"]
    if has_torch:
        header += ["torch ms/step", "torch fused-Adam ms/step", "tinyvae / best torch"]
    lines = []
    for res in results:
        for row in res["rows"]:
            ms, batch = row["ms"], row["batch"]
            ratio = ms["tinyvae"] / ms["numpy"]
            bar = BAR.get(batch)
            verdict = "—" if bar is None else f"≤ {bar}× {'met' if ratio <= bar else 'MISSED'}"
            cells = [
                str(res["threads"]),
                str(batch),
                str(row["steps"]),
                f"{ms['tinyvae']:.3f}",
                f"{ms['numpy']:.3f}",
                f"{ratio:.2f}×",
                verdict,
                f"{ms['tinyvae-numpy']:.3f}",
                f"{ms['tinyvae'] / ms['tinyvae-numpy']:.2f}×",
            ]
            if has_torch:
                t, f = ms.get("torch"), ms.get("torch-fused")
                best = min(v for v in (t, f) if v is not None)
                cells += [f"{t:.3f}", f"{f:.3f}", f"{ms['tinyvae'] / best:.2f}×"]
            lines.append(cells)
    if markdown:
        out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
        out += ["| " + " | ".join(cells) + " |" for cells in lines]
        return "\n".join(out)
    widths = [max(len(h), *(len(c[i]) for c in lines)) for i, h in enumerate(header)]
    fmt = "  ".join(f"{{:>{w}}}" for w in widths)
    return "\n".join([fmt.format(*header)] + [fmt.format(*c) for c in lines])


def markdown_report(results, command):
    first = results[0]
    torch_note = (
        f"PyTorch {first['torch']} eager (same network; torch.optim.Adam default and fused=True) as a peer."
        if first["torch"]
        else "PyTorch peer skipped: `import torch` fails in this environment (it is not a dependency)."
    )
    return "\n".join(
        [
            RESULTS_SECTION,
            "",
            "One training step (draw eps, forward, backward, Adam) of the MLP VAE 784-400-20 in float32: "
            "Linear(784, 400) → ReLU → two heads Linear(400, 20) for mu and logvar → reparameterize → "
            "Linear(20, 400) → ReLU → Linear(400, 784) logits; loss = batch mean of "
            "[−Σ bernoulli_log_prob + gaussian_kl]; binary x (Bernoulli(0.3) pixels, fixed seed). "
            '"NumPy" is the same step with the backward written by hand (no autodiff, gradient buffers '
            "reused) and a plain NumPy Adam with tv.optim.Adam's arithmetic; before timing, the script "
            "asserts both give the same loss and gradients (float32 tolerance) and refuses to report "
            "otherwise. Median ms per step after 20 warm-up steps; the implementations alternate in rounds "
            "of 10 steps (order flipping each round). Each thread count runs in its own process with "
            'OMP_NUM_THREADS / OPENBLAS_NUM_THREADS set before NumPy is imported. "tinyvae" runs the '
            'default backend (numba); "tinyvae, numpy backend" is the same step under '
            "`tv.backend.use('numpy')`, timed in the same rounds.",
            "",
            f"- Machine: {cpu_model()}, {os.cpu_count()} cores (shared and noisy: other processes may run "
            "at the same time)",
            f"- Python {platform.python_version()}, NumPy {first['numpy']}, BLAS: {first['blas']}; "
            f"OpenBLAS kernels in use: {first['kernels']} (tinyvae/blas_tuning.py)",
            f"- Command: `{command}`",
            f"- Date: {datetime.datetime.now().astimezone().strftime('%Y-%m-%d %H:%M %Z')}",
            f"- {torch_note}",
            "",
            table(results, markdown=True),
            "",
            "Bar (issue 2): tinyvae ≤ 1.2× the hand-written step at batch 128 and ≤ 1.6× at batch 16.",
        ]
    )


def write_results(section):
    """Replace (or append) this benchmark's section of benchmarks/RESULTS.md, leaving the rest alone."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "RESULTS.md")
    text = open(path, encoding="utf-8").read() if os.path.exists(path) else "# Benchmark results\n"
    start = text.find(RESULTS_SECTION)
    if start < 0:
        text = text.rstrip("\n") + "\n\n" + section.rstrip("\n") + "\n"
    else:
        end = text.find("\n## ", start + len(RESULTS_SECTION))
        rest = "" if end < 0 else text[end:]
        text = text[:start] + section.rstrip("\n") + "\n" + rest
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    return path


def ints_of(text):
    return [int(v) for v in str(text).split(",") if v]


PEERS = ("tinyvae", "torch-fused", "jax", "gemm-floor", "gemm+adam")


def peer_worker(args):
    """Time one implementation (``--impl``) at every batch size in this process; print its medians."""
    threads = int(args.threads)
    out = {"impl": args.impl, "threads": threads, "ms": {}}
    for batch in args.batch_sizes:
        x = make_batch(batch)
        arrays = TinyvaeStep(batch).arrays()
        try:
            if args.impl == "tinyvae":
                impl = TinyvaeStep(batch)
            elif args.impl == "torch-fused":
                impl = TorchStep(batch, arrays, threads, fused=True)
            elif args.impl == "jax":
                impl = JaxStep(batch, arrays)
            elif args.impl == "gemm-floor":
                impl = GemmFloorStep(batch, arrays)
            else:
                impl = GemmAdamFloorStep(batch, arrays)
        except ImportError as error:
            out["missing"] = str(error)
            break
        for _ in range(20):
            impl.step(x)
        times = []
        for _ in range(args.steps):
            start = time.perf_counter()
            impl.step(x)
            times.append(time.perf_counter() - start)
        out["ms"][str(batch)] = 1e3 * float(np.median(times))
    print(json.dumps(out))


def pin(threads):
    """A preexec_fn that binds the worker to the first ``threads`` CPUs before it starts: every thread it
    makes inherits the binding, so no runtime (XLA's pool, OpenMP, OpenBLAS) can use more cores than the
    others, whatever its own thread settings do."""
    cpus = set(sorted(os.sched_getaffinity(0))[:threads])
    return lambda: os.sched_setaffinity(0, cpus)


def run_peers(args):
    """Every (implementation, thread count) in its own process, ``--rounds`` rounds, order alternating."""
    rows = {}
    for threads in ints_of(args.threads):
        env = fresh_process_environment(dict(os.environ))
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
            env[var] = str(threads)
        env["XLA_FLAGS"] = (  # XLA's CPU thread pool, held to the same count
            f"--xla_cpu_multi_thread_eigen={'true' if threads > 1 else 'false'} "
            f"intra_op_parallelism_threads={threads}"
        )
        for round_ in range(args.rounds):
            for impl in PEERS if round_ % 2 == 0 else PEERS[::-1]:
                cmd = [sys.executable, os.path.abspath(__file__), "--peer-worker", "--impl", impl]
                cmd += ["--threads", str(threads), "--steps", str(args.steps)]
                cmd += ["--batch-sizes", ",".join(map(str, args.batch_sizes))]
                proc = subprocess.run(cmd, env=env, capture_output=True, text=True, preexec_fn=pin(threads))
                if proc.returncode != 0:
                    sys.stderr.write(proc.stderr)
                    raise SystemExit(proc.returncode)
                result = json.loads(proc.stdout.strip().splitlines()[-1])
                for batch, ms in result["ms"].items():
                    rows.setdefault((threads, int(batch)), {}).setdefault(impl, []).append(ms)
    header = ["threads", "batch", *(f"{p} ms" for p in PEERS), "tinyvae / jax", "tinyvae / floor"]
    header.append("(gemm+adam) / jax")
    print(f"{cpu_model()}; medians over {args.rounds} rounds of separate processes, {args.steps} steps each")
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" for _ in header) + "|")
    for (threads, batch), by_impl in sorted(rows.items()):
        medians = {p: float(np.median(v)) for p, v in by_impl.items()}
        cells = [str(threads), str(batch)] + [f"{medians[p]:.2f}" if p in medians else "–" for p in PEERS]
        for peer in ("jax", "gemm-floor"):
            cells.append(f"{medians['tinyvae'] / medians[peer]:.2f}×" if peer in medians else "–")
        cells.append(
            f"{medians['gemm+adam'] / medians['jax']:.2f}×" if {"gemm+adam", "jax"} <= medians.keys() else "–"
        )
        print("| " + " | ".join(cells) + " |")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=300, help="timed steps per implementation (default 300)")
    parser.add_argument(
        "--steps-512", type=int, default=None, help="timed steps at batch 512 (default --steps)"
    )
    parser.add_argument("--batch-sizes", type=ints_of, default=[16, 128, 512])
    parser.add_argument("--threads", default="1,2", help="thread counts, each run in its own process")
    parser.add_argument("--markdown", action="store_true", help="print a markdown report")
    parser.add_argument("--write-results", action="store_true", help="write the report into RESULTS.md")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--peers", action="store_true", help="tinyvae, torch, jax, GEMM floor: own processes")
    parser.add_argument("--rounds", type=int, default=3, help="--peers: rounds of processes (default 3)")
    parser.add_argument("--peer-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--impl", choices=PEERS, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.worker:
        worker(args)
        return
    if args.peer_worker:
        peer_worker(args)
        return
    if args.peers:
        run_peers(args)
        return
    command = "python benchmarks/bench_step.py " + " ".join(sys.argv[1:] if argv is None else argv)
    results = [run_thread_count(args, t) for t in ints_of(args.threads)]
    if results[0]["torch"] is None:
        print("note: `import torch` failed, so the PyTorch peer is skipped (torch is not a dependency)")
    if args.markdown or args.write_results:
        report = markdown_report(results, command.strip())
        print(report)
        if args.write_results:
            print(f"\nwrote {write_results(report)}")
    else:
        print(table(results, markdown=False))


if __name__ == "__main__":
    main()
