"""im2col and col2im: the two data movements that turn a convolution into one matrix product.

A convolution with kernel (kh, kw), stride s and zero padding p reads, for output pixel (n, i, j), the window
of the padded input at rows s·i .. s·i + kh − 1 and columns s·j .. s·j + kw − 1 of every channel. ``im2col``
copies each window into one column:

    cols[(c, ki, kj), (n, i, j)] = x_pad[n, c, s·i + ki, s·j + kj]      cols: (C·kh·kw, N·H'·W')

(rows ordered c, ki, kj as in a weight W (O, C, kh, kw) reshaped to (O, C·kh·kw); columns ordered n, i, j),
so that conv2d is the single GEMM ``W.reshape(O, -1) @ cols`` (see ``tinyvae/ops/conv.py``). H' and W' are
``(H + 2p − kh) // s + 1``; a padded position reads 0.

``col2im`` is its adjoint, a scatter-ADD: every entry of cols goes back to the input pixel it was copied
from, and where windows overlap (kh > s) their contributions add up:

    out[n, c, h, w] = Σ cols[(c, ki, kj), (n, i, j)]   over s·i + ki − p = h and s·j + kj − p = w

(entries that came from the padding are dropped). ⟨im2col(x), C⟩ = ⟨x, col2im(C)⟩ for every x and C, which is
why conv2d's input gradient and conv_transpose2d's forward are both col2im of a GEMM.

Three versions side by side, each adding contributions in the order (ki, kj) for one output pixel, so all
three give the same floats:

1. NumPy reference (also runs on CuPy arrays through ``xp``): one strided slice per kernel offset (ki, kj),
   kh·kw copies (im2col) or in-place adds (col2im) of an (N, C, H', W') block.
2. numba: explicit float32/float64 loops with no branch in an inner loop. im2col runs over the rows of cols
   (c, ki, kj) in a ``prange``, each a strided block copy of the valid (i, j) range of its kernel offset;
   col2im over the channels, which no two iterations share (so the adds need no atomics), adding each
   image's taps into a small padded plane and copying its interior out.
3. CuPy: RawKernels, one thread per output element in a grid-stride loop. col2im is written as a *gather*:
   the thread for pixel (n, c, h, w) finds the (ki, i) with s·i + ki = h + p (and likewise for w) and sums
   their entries, so there are no atomicAdds and the sum is deterministic.
   Run on an NVIDIA H200 (benchmarks/RESULTS.md, "Convolutions: im2col + GEMM vs direct numba"): equal to
   the reference bit for bit in float32 and float64. One exception, from CuPy's flush-to-zero
   (``-ftz=true``, kernels/_cuda_source.py): col2im's float32 sums treat subnormal entries (below
   1.18e-38) as 0 (im2col only copies, so it keeps them).
"""

from __future__ import annotations

import functools

import numpy as np
from tinyvae.kernels._cuda_source import RawModuleSource
from tinyvae.kernels._jit import compile_kernels
from tinyvae.kernels._routing import pick_version

from tinyvae import backend as _backend
from tinyvae.backend import array_module

# The loops' numba.prange: compile_kernels sets this on first use, so importing this file imports no numba.
numba = None

COMPILE_SECONDS: dict[str, float] = {}  # first-use compile/load time of the numba loops

# Threads for the numba loops: both are memory-bound copies beside a GEMM that OpenBLAS may run on every
# core, and an OpenMP thread spinning after its parallel region steals that core (backend.load_numba; in
# benchmarks/RESULTS.md, "Convolutions: im2col + GEMM vs direct numba", a process mixing the two at 2
# threads ran the layers 6-70x slower). One thread, and the GEMM gets the cores.
NUMBA_THREADS = 1


def output_size(size: int, kernel: int, stride: int, padding: int) -> int:
    """Outputs of a convolution along one axis: (size + 2·padding − kernel) // stride + 1 (PyTorch's rule)."""
    return (size + 2 * padding - kernel) // stride + 1


def _check_cols(cols, x_shape, kh, kw, stride, padding):
    """col2im's only check: cols must have the shape im2col would give for x_shape (the compiled loops index
    without bounds checks, so a wrong shape would read or write past the arrays)."""
    n, c, h, w = x_shape
    expected = (c * kh * kw, n * output_size(h, kh, stride, padding) * output_size(w, kw, stride, padding))
    if tuple(cols.shape) != expected:
        raise ValueError(
            f"col2im: cols has shape {tuple(cols.shape)} but an image of shape {tuple(x_shape)} with kernel "
            f"({kh}, {kw}), stride {stride} and padding {padding} has cols of shape {expected}"
        )


# ---------------------------------------------------------------------------------------------------------
# 1. NumPy reference (runs on CuPy arrays too).
# ---------------------------------------------------------------------------------------------------------


def _offset_slices(ki, kj, out_h, out_w, stride):
    """The strided slice of the padded image that kernel offset (ki, kj) reads for every output pixel."""
    return (
        slice(None),
        slice(None),
        slice(ki, ki + stride * (out_h - 1) + 1, stride),
        slice(kj, kj + stride * (out_w - 1) + 1, stride),
    )


def im2col_numpy(x, kh, kw, stride, padding):
    """(N, C, H, W) → cols (C·kh·kw, N·H'·W'), one strided copy per kernel offset."""
    xp = array_module(x)
    n, c, h, w = x.shape
    out_h, out_w = output_size(h, kh, stride, padding), output_size(w, kw, stride, padding)
    padded = xp.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding))) if padding else x
    cols = xp.empty((c, kh, kw, n, out_h, out_w), dtype=x.dtype)
    for ki in range(kh):
        for kj in range(kw):
            window = padded[_offset_slices(ki, kj, out_h, out_w, stride)]  # (N, C, H', W')
            cols[:, ki, kj] = window.transpose(1, 0, 2, 3)
    return cols.reshape(c * kh * kw, n * out_h * out_w)


def col2im_numpy(cols, x_shape, kh, kw, stride, padding):
    """cols (C·kh·kw, N·H'·W') → (N, C, H, W), adding each window back; padding rows and columns dropped."""
    xp = array_module(cols)
    _check_cols(cols, x_shape, kh, kw, stride, padding)
    n, c, h, w = x_shape
    out_h, out_w = output_size(h, kh, stride, padding), output_size(w, kw, stride, padding)
    padded = xp.zeros((n, c, h + 2 * padding, w + 2 * padding), dtype=cols.dtype)
    blocks = cols.reshape(c, kh, kw, n, out_h, out_w)
    for ki in range(kh):
        for kj in range(kw):
            padded[_offset_slices(ki, kj, out_h, out_w, stride)] += blocks[:, ki, kj].transpose(1, 0, 2, 3)
    if padding:  # cut the padding off; a contiguous copy, as the other versions return
        return xp.ascontiguousarray(padded[:, :, padding : padding + h, padding : padding + w])
    return padded


# ---------------------------------------------------------------------------------------------------------
# 2. numba.
# ---------------------------------------------------------------------------------------------------------


# The valid range of an output index t along one axis, for kernel offset k: the taps s·t + k − p that land
# in [0, size) are t in [lo, hi) with lo = ⌈(p − k) / s⌉ (0 when k ≥ p) and
# hi = min(count, ⌊(size − 1 + p − k) / s⌋ + 1). Written out in each loop (a numba loop can call only
# compiled functions).


def _im2col_loop(x, cols, kh, kw, stride, padding, out_h, out_w):
    """cols[(c, ki, kj), (n, i, j)] = x[n, c, s·i + ki − p, s·j + kj − p], 0 outside the image: one row of
    cols per iteration, zeroed and then filled by one strided block copy of its valid (i, j) range.

    Written with slices rather than a loop per element: measured 1.2-2.1x faster than an element loop
    with the same index arithmetic, and 1.3-1.5x faster than NumPy's copies, at the shapes of
    benchmarks/RESULTS.md ("Convolutions: im2col + GEMM vs direct numba")."""
    n_batch, channels, height, width = x.shape
    for row in numba.prange(channels * kh * kw):
        c = row // (kh * kw)
        ki = (row // kw) % kh
        kj = row % kw
        i_lo = 0 if ki >= padding else (padding - ki + stride - 1) // stride
        i_hi = max(i_lo, min(out_h, (height - 1 + padding - ki) // stride + 1))
        j_lo = 0 if kj >= padding else (padding - kj + stride - 1) // stride
        j_hi = max(j_lo, min(out_w, (width - 1 + padding - kj) // stride + 1))
        target = cols[row].reshape((n_batch, out_h, out_w))
        target[:] = 0
        if i_hi > i_lo and j_hi > j_lo:
            h0, w0 = stride * i_lo + ki - padding, stride * j_lo + kj - padding  # first valid tap
            h1, w1 = h0 + stride * (i_hi - i_lo - 1) + 1, w0 + stride * (j_hi - j_lo - 1) + 1
            target[:, i_lo:i_hi, j_lo:j_hi] = x[:, c, h0:h1:stride, w0:w1:stride]


def _col2im_loop(cols, out, kh, kw, stride, padding, out_h, out_w):
    """out[n, c, h, w] = Σ cols[(c, ki, kj), (n, i, j)] over the taps landing on (h, w). One channel per
    iteration (no two iterations write the same element, so no atomics); within it, image by image, every
    tap is added into a zeroed *padded* plane buf (rows s·(H' − 1) + kh, columns s·(W' − 1) + kw), where tap
    (ki, kj) of output (i, j) lands at (s·i + ki, s·j + kj) with no range to check, and the plane's interior
    is then copied out (rows and columns that no window reached stay 0). Each pixel still receives its taps
    in (ki, kj) order, so the floats are those of the reference.

    The padded plane (1 KB at 16 × 16) stays in L1 and the inner loop has no bounds arithmetic: at the
    (128, 32, 14, 14) image of issue 14's network, one thread, 2.5 ms against 3.3 ms for a per-plane loop
    over each tap's valid (i, j) range written straight into out (benchmarks/RESULTS.md, "Convolutional VAE
    step against PyTorch")."""
    n_batch, channels, height, width = out.shape
    per_image = out_h * out_w
    padded_h = stride * (out_h - 1) + kh  # <= height + 2·padding: the rows some window reaches
    padded_w = stride * (out_w - 1) + kw
    rows_reached = min(height, padded_h - padding)
    columns_reached = min(width, padded_w - padding)
    zero = out.dtype.type(0)
    for c in numba.prange(channels):
        buf = np.empty((padded_h, padded_w), dtype=out.dtype)
        for n in range(n_batch):
            buf[:, :] = zero
            for ki in range(kh):
                for kj in range(kw):
                    source = cols[(c * kh + ki) * kw + kj, n * per_image : (n + 1) * per_image]
                    for i in range(out_h):
                        buf_row = buf[stride * i + ki]
                        first = i * out_w
                        for j in range(out_w):
                            buf_row[stride * j + kj] += source[first + j]
            for h in range(height):
                for w in range(width):
                    out[n, c, h, w] = (
                        buf[h + padding, w + padding] if h < rows_reached and w < columns_reached else zero
                    )


_INTS = "int64, int64, int64, int64, int64, int64"
_TYPES = ("float32", "float64")


@functools.cache
def _numba_kernels():
    """Compile (or load from numba's on-disk cache) both loops; on first use, never at import."""
    loops = [
        (_im2col_loop, [f"void({t}[:, :, :, ::1], {t}[:, ::1], {_INTS})" for t in _TYPES]),
        (_col2im_loop, [f"void({t}[:, ::1], {t}[:, :, :, ::1], {_INTS})" for t in _TYPES]),
    ]
    options = {"parallel": True, "boundscheck": False}
    return compile_kernels("im2col", loops, seconds=COMPILE_SECONDS, **options)


def _numba_takes(a):
    """The compiled loops take C-contiguous, writable float32/float64 arrays; others go to NumPy."""
    return a.dtype in (np.float32, np.float64) and a.flags.c_contiguous and a.flags.writeable


def im2col_numba(x, kh, kw, stride, padding, *, threads=None):
    """The numba im2col; ``threads`` (default :data:`NUMBA_THREADS`) sets the prange's thread count."""
    if not _numba_takes(x):
        return im2col_numpy(x, kh, kw, stride, padding)
    n, c, h, w = x.shape
    out_h, out_w = output_size(h, kh, stride, padding), output_size(w, kw, stride, padding)
    cols = np.empty((c * kh * kw, n * out_h * out_w), dtype=x.dtype)
    loop = _numba_kernels()[0]
    with _backend.numba_threads(threads or NUMBA_THREADS):
        loop(x, cols, kh, kw, stride, padding, out_h, out_w)
    return cols


def col2im_numba(cols, x_shape, kh, kw, stride, padding, *, threads=None):
    """The numba col2im (a gather-free scatter-add, one image plane per iteration)."""
    _check_cols(cols, x_shape, kh, kw, stride, padding)
    if not _numba_takes(cols):
        return col2im_numpy(cols, x_shape, kh, kw, stride, padding)
    n, c, h, w = x_shape
    out_h, out_w = output_size(h, kh, stride, padding), output_size(w, kw, stride, padding)
    out = np.empty(tuple(x_shape), dtype=cols.dtype)
    loop = _numba_kernels()[1]
    with _backend.numba_threads(threads or NUMBA_THREADS):
        loop(cols, out, kh, kw, stride, padding, out_h, out_w)
    return out


# ---------------------------------------------------------------------------------------------------------
# 3. CuPy: RawKernels, one thread per output element, grid-stride loops.
# ---------------------------------------------------------------------------------------------------------

_CUPY_SOURCE = r"""
template <typename T>
__device__ void im2col(const T* __restrict__ x, T* __restrict__ cols,
                       const int n_batch, const int channels, const int height, const int width,
                       const int kh, const int kw, const int stride, const int padding,
                       const int out_h, const int out_w)
{
    // one thread per entry of cols (C*kh*kw, N*H'*W'), row-major
    const long long per_row = (long long)n_batch * out_h * out_w;
    const long long total = (long long)channels * kh * kw * per_row;
    for (long long e = blockIdx.x * (long long)blockDim.x + threadIdx.x; e < total;
         e += (long long)gridDim.x * blockDim.x) {
        const long long row = e / per_row;
        const long long col = e - row * per_row;
        const int kj = (int)(row % kw);
        const int ki = (int)((row / kw) % kh);
        const int c = (int)(row / ((long long)kh * kw));
        const int j = (int)(col % out_w);
        const int i = (int)((col / out_w) % out_h);
        const int n = (int)(col / ((long long)out_h * out_w));
        const int h = stride * i + ki - padding;
        const int w = stride * j + kj - padding;
        T value = (T)0;
        if (h >= 0 && h < height && w >= 0 && w < width)
            value = x[(((long long)n * channels + c) * height + h) * width + w];
        cols[e] = value;
    }
}

template <typename T>
__device__ void col2im(const T* __restrict__ cols, T* __restrict__ out,
                       const int n_batch, const int channels, const int height, const int width,
                       const int kh, const int kw, const int stride, const int padding,
                       const int out_h, const int out_w)
{
    // one thread per image pixel (N, C, H, W): gather the entries of cols copied from it, in (ki, kj) order
    const long long per_row = (long long)n_batch * out_h * out_w;
    const long long total = (long long)n_batch * channels * height * width;
    for (long long e = blockIdx.x * (long long)blockDim.x + threadIdx.x; e < total;
         e += (long long)gridDim.x * blockDim.x) {
        const int w = (int)(e % width);
        const int h = (int)((e / width) % height);
        const int c = (int)((e / ((long long)width * height)) % channels);
        const int n = (int)(e / ((long long)width * height * channels));
        T sum = (T)0;
        for (int ki = 0; ki < kh; ++ki) {
            const int hp = h + padding - ki;  // = stride * i for the output row i that reads (h, ki)
            if (hp < 0 || hp % stride != 0 || hp / stride >= out_h) continue;
            const int i = hp / stride;
            for (int kj = 0; kj < kw; ++kj) {
                const int wp = w + padding - kj;
                if (wp < 0 || wp % stride != 0 || wp / stride >= out_w) continue;
                const int j = wp / stride;
                const long long row = ((long long)c * kh + ki) * kw + kj;
                sum += cols[row * per_row + ((long long)n * out_h + i) * out_w + j];
            }
        }
        out[e] = sum;
    }
}

#define ENTRY(name, T, suffix)                                                                          \
extern "C" __global__ void name##_##suffix(const T* a, T* b, int n_batch, int channels, int height,   \
                                           int width, int kh, int kw, int stride, int padding,         \
                                           int out_h, int out_w)                                       \
{ name<T>(a, b, n_batch, channels, height, width, kh, kw, stride, padding, out_h, out_w); }

ENTRY(im2col, float, f32)
ENTRY(im2col, double, f64)
ENTRY(col2im, float, f32)
ENTRY(col2im, double, f64)
"""
_CUPY_THREADS_PER_BLOCK = 256
_CUPY_MAX_BLOCKS = 65535  # the grid-stride loops cover the rest


CUPY_MODULE = RawModuleSource(
    code=_CUPY_SOURCE,
    options=("--std=c++11",),
    entry_points=tuple(f"{name}_{suffix}" for name in ("im2col", "col2im") for suffix in ("f32", "f64")),
)


@functools.cache
def _cupy_kernels():
    """Compile the RawModule on first use (CuPy caches the binary on disk); never at import."""
    module = CUPY_MODULE.build()
    return {
        (name, np.dtype(dtype)): module.get_function(f"{name}_{suffix}")
        for name in ("im2col", "col2im")
        for dtype, suffix in ((np.float32, "f32"), (np.float64, "f64"))
    }


def _cupy_launch(name, source, target, image_shape, kh, kw, stride, padding):
    n, c, h, w = image_shape
    out_h, out_w = output_size(h, kh, stride, padding), output_size(w, kw, stride, padding)
    blocks = max(1, min(-(-target.size // _CUPY_THREADS_PER_BLOCK), _CUPY_MAX_BLOCKS))
    scalars = (n, c, h, w, kh, kw, stride, padding, out_h, out_w)
    kernel = _cupy_kernels()[(name, np.dtype(source.dtype))]
    kernel((blocks,), (_CUPY_THREADS_PER_BLOCK,), (source, target, *(np.int32(v) for v in scalars)))
    return target


def im2col_cupy(x, kh, kw, stride, padding):
    import cupy

    if x.dtype not in (np.float32, np.float64):
        return im2col_numpy(x, kh, kw, stride, padding)
    x = cupy.ascontiguousarray(x)
    n, c, h, w = x.shape
    out_h, out_w = output_size(h, kh, stride, padding), output_size(w, kw, stride, padding)
    cols = cupy.empty((c * kh * kw, n * out_h * out_w), dtype=x.dtype)
    return _cupy_launch("im2col", x, cols, x.shape, kh, kw, stride, padding)


def col2im_cupy(cols, x_shape, kh, kw, stride, padding):
    import cupy

    _check_cols(cols, x_shape, kh, kw, stride, padding)
    if cols.dtype not in (np.float32, np.float64):
        return col2im_numpy(cols, x_shape, kh, kw, stride, padding)
    cols = cupy.ascontiguousarray(cols)
    out = cupy.empty(tuple(x_shape), dtype=cols.dtype)
    return _cupy_launch("col2im", cols, out, tuple(x_shape), kh, kw, stride, padding)


# ---------------------------------------------------------------------------------------------------------
# Routing: the entry points the convolution ops call.
# ---------------------------------------------------------------------------------------------------------

IM2COL = {"numpy": im2col_numpy, "numba": im2col_numba, "cupy": im2col_cupy}
COL2IM = {"numpy": col2im_numpy, "numba": col2im_numba, "cupy": col2im_cupy}


def im2col(x, kh, kw, stride, padding, *, backend=None):
    """x (N, C, H, W) → cols (C·kh·kw, N·H'·W'); the version follows the arrays and ``tinyvae.backend``
    unless ``backend`` names one. The caller has checked the sizes (H + 2p ≥ kh, stride ≥ 1, padding ≥ 0)."""
    return pick_version(IM2COL, "im2col", (x,), backend)(x, kh, kw, stride, padding)


def col2im(cols, x_shape, kh, kw, stride, padding, *, backend=None):
    """cols (C·kh·kw, N·H'·W') → (N, C, H, W) of ``x_shape``, overlapping windows added (im2col's adjoint)."""
    return pick_version(COL2IM, "col2im", (cols,), backend)(cols, tuple(x_shape), kh, kw, stride, padding)
