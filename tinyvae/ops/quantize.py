"""Vector quantisation with the straight-through gradient (van den Oord et al. 2017, "Neural Discrete
Representation Learning", Sec. 3.1–3.2)."""

from __future__ import annotations

from tinyvae.autodiff import Function, is_tensor
from tinyvae.kernels import nearest_code


class StraightThroughQuantize(Function):
    """Forward: z_q = e_{k*} with k* = argmin_k ‖z_e − e_k‖² (given as ``indices``).

    Backward: a *surrogate*, not the derivative. The true derivative of z_q with respect to z_e is zero
    almost everywhere (z_q is piecewise constant), which would stop all learning in the encoder. The
    straight-through estimator defines dL/dz_e := dL/dz_q, copying the decoder's gradient to the
    encoder's output unchanged (van den Oord et al. 2017, eq. 3 and the text around it), and sends
    nothing to the codebook along this path: the codebook learns from its own loss term instead.
    """

    @staticmethod
    def forward(ctx, z_e, codebook, indices):
        return codebook[indices]  # (..., D)

    @staticmethod
    def backward(ctx, g):
        """By definition: dL/dz_e = g (identity); nothing for the codebook; indices are integers."""
        return g, None, None


def vector_quantize(z_e, codebook):
    """Quantise each vector of ``z_e`` (..., D) to its nearest row of ``codebook`` (K, D).

    Returns ``(z_q, indices)``: ``z_q`` (..., D) equals ``codebook[indices]`` in the forward pass and
    passes its gradient straight through to ``z_e``; ``indices`` (...,) is an integer array, ties going to
    the lowest index. The VQ-VAE losses that train the codebook and the encoder are written with the
    indices and ``detach()`` (sg[·] in the paper, eq. 3)::

        z_q, indices = F.vector_quantize(z_e, codebook)
        codebook_loss = ((z_e.detach() - codebook[indices]) ** 2).sum(axis=-1).mean()  # moves codes
        commitment_loss = ((z_e - codebook[indices].detach()) ** 2).sum(axis=-1).mean()  # moves z_e
        loss = reconstruction_loss(decoder(z_q)) + codebook_loss + beta * commitment_loss

    A codebook holding NaN or ±inf is refused with a ValueError on every backend (the backends' searches
    would disagree on it; see ``tinyvae/kernels/codebook.py``).
    """
    for name, value, expected in (
        ("z_e", z_e, "(..., code_dim)"),
        ("codebook", codebook, "(num_codes, code_dim)"),
    ):
        if not is_tensor(value):
            raise TypeError(
                f"vector_quantize: {name} must be a Tensor of shape {expected}, got {_describe(value)}; wrap "
                f"an array with tv.Tensor({name})"
            )
    if codebook.ndim != 2:
        raise ValueError(
            "vector_quantize: codebook must be a 2-D tensor (num_codes, code_dim), got shape "
            f"{codebook.shape}"
        )
    if z_e.ndim == 0 or z_e.shape[-1] != codebook.shape[1]:
        raise ValueError(
            f"vector_quantize: z_e has shape {z_e.shape} but the codes have dimension "
            f"{codebook.shape[1]} (codebook.shape == {codebook.shape}); the last axis of z_e must match"
        )
    flat = z_e.data.reshape(-1, z_e.shape[-1])  # (N, D)
    indices, _ = nearest_code(flat, codebook.data, op="vector_quantize")  # refuses a NaN/inf codebook
    indices = indices.reshape(z_e.shape[:-1])
    z_q = StraightThroughQuantize.apply(z_e, codebook, indices)
    return z_q, indices


def _describe(value):
    """``a numpy.ndarray of shape (4, 3)`` or ``a list``: what a wrong argument is, for the message."""
    kind = type(value)
    name = (
        kind.__name__ if kind.__module__ == "builtins" else f"{kind.__module__.split('.')[0]}.{kind.__name__}"
    )
    shape = getattr(value, "shape", None)
    return f"a {name}" + (f" of shape {tuple(shape)}" if shape is not None else "")
