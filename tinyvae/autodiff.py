"""The reverse-mode engine: ``Function``, its ``Context``, the backward walk, ``no_grad``, ``sum_to_shape``.

Every differentiable op is a subclass of :class:`Function` with two static methods side by side::

    class Exp(Function):
        @staticmethod
        def forward(ctx, x):
            y = xp.exp(x)
            ctx.save(y)
            return y

        @staticmethod
        def backward(ctx, grad):
            (y,) = ctx.saved
            return grad * y  # d exp(x)/dx = exp(x)

``forward`` sees plain arrays and returns one array; ``backward`` receives dL/d(output) and returns one
gradient per input of ``forward`` (``None`` where an input needs none). ``Exp.apply(tensor)`` runs the forward
and, when gradients are wanted, records a node in the graph.

The walk in :func:`backward` visits that graph in reverse topological order, found with an explicit stack
(no recursion, so a chain 10,000 ops deep is fine). Gradients of intermediate nodes live in a dict that
the walk empties as it goes; gradients of leaves *accumulate* into ``Tensor.grad`` (``+``, never ``=``), so
``x * x`` gets ``2x`` and two backward passes add up until ``zero_grad``. Each node frees what its forward
saved once its backward has run, so backpropagating twice through one graph is an error unless the first
call passed ``retain_graph=True`` (then the second call adds its gradients again, as documented).

This module imports nothing from the rest of tinyvae: the ops import it, and ``tinyvae/tensor.py`` imports it
and the ops. The one thing it needs from above, the ``Tensor`` class, is handed to it by tensor.py (see
:func:`use_tensor_class`).
"""

from __future__ import annotations

import contextlib
import threading

_grad_mode = threading.local()


def is_grad_enabled() -> bool:
    """True unless inside a :func:`no_grad` block (per thread)."""
    return getattr(_grad_mode, "enabled", True)


@contextlib.contextmanager
def no_grad():
    """Run a block without recording a graph: results have ``requires_grad=False`` and save nothing."""
    previous = is_grad_enabled()
    _grad_mode.enabled = False
    try:
        yield
    finally:
        _grad_mode.enabled = previous


# ---------------------------------------------------------------- the Tensor class, handed over
# Function.apply returns its output as a Tensor, and the ops check and convert their arguments with the three
# helpers below. The class is defined in tinyvae/tensor.py, which imports this module (Tensor.backward runs
# the walk at the end of this file) and the ops (``x + y`` calls ``ops.add``); so neither this module nor the
# ops can import tensor.py back without closing an import circle. tensor.py hands its class over instead, on
# the line after the class: ``autodiff.use_tensor_class(Tensor)``.
_Tensor = None


def use_tensor_class(cls):
    """Make ``cls`` the class of every op's output (called once, by tinyvae/tensor.py)."""
    global _Tensor
    _Tensor = cls


def is_tensor(value) -> bool:
    return isinstance(value, _Tensor)


def as_tensor(value):
    """``value`` if it is a Tensor, else a constant Tensor made from it (an array, a list, a number)."""
    return value if isinstance(value, _Tensor) else _Tensor(value)


def as_operand(value):
    """Prepare the other operand of a binary op: tensors pass, Python numbers stay *weak* scalars (they take
    the tensor's dtype, as in NumPy 2), arrays and lists become constant tensors."""
    if isinstance(value, _Tensor):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return _Tensor(value)


# ---------------------------------------------------------------- shapes


def sum_to_shape(grad, shape):
    """Undo NumPy broadcasting: sum ``grad`` down to ``shape``.

    If ``y = f(a)`` broadcast ``a`` of shape ``shape`` to ``grad.shape``, every copy of an element of ``a``
    contributed to ``y``, so dL/da is the sum of dL/dy over the copies: sum the leading axes that
    broadcasting added, then the axes where ``a`` had size 1.
    """
    shape = tuple(shape)
    if grad.shape == shape:
        return grad
    added = grad.ndim - len(shape)
    if added > 0:
        grad = grad.sum(axis=tuple(range(added)))
    stretched = tuple(i for i, n in enumerate(shape) if n == 1 and grad.shape[i] != 1)
    if stretched:
        grad = grad.sum(axis=stretched, keepdims=True)
    return grad.reshape(shape)


def check_broadcastable(op, *shapes, names=None):
    """Refuse shapes that NumPy cannot broadcast together: a ValueError naming ``op``, every shape and the
    first axis where they clash (NumPy's own message names neither the op nor the tensors). ``names`` (one
    per shape) labels the shapes in the message: ``shapes mu (2, 3) and eps (2, 4)``.

    Broadcasting aligns shapes on the right; along each axis the sizes must be equal or 1. Every binary op
    whose shapes differ calls this, so two shapes that fit cost one plain loop (about 0.3 µs); only a clash,
    or more than two shapes, pays for the general test below and its message.
    """
    if len(shapes) == 2:
        for size_a, size_b in zip(reversed(shapes[0]), reversed(shapes[1]), strict=False):
            if size_a != size_b and size_a != 1 and size_b != 1:
                break
        else:
            return
    for axis in range(1, max(len(s) for s in shapes) + 1):
        sizes = {s[-axis] for s in shapes if len(s) >= axis} - {1}
        if len(sizes) > 1:
            labels = [f"{name} " for name in names] if names else [""] * len(shapes)
            shown = " and ".join(f"{label}{tuple(s)}" for label, s in zip(labels, shapes, strict=True))
            clash = " vs ".join(str(s[-axis]) if len(s) >= axis else "-" for s in shapes)
            raise ValueError(
                f"{op}: shapes {shown} do not broadcast: axis {-axis} has sizes {clash}"
                ", and broadcasting needs them equal or 1"
            )


def check_same_array_module(op, *arrays):
    """Refuse arrays from different array modules in one op (a CuPy array on the GPU beside a NumPy array
    in main memory): NumPy would try to convert the GPU array, CuPy would refuse with a TypeError, and
    neither message says which op or how to fix it. Returns the module name ("numpy" or "cupy")."""
    # An array's package, read off its type (nothing imported): "numpy", "cupy", or the test suite's
    # simulated device ("strict_device", see tinyvae.backend.simulated_device).
    modules = [type(a).__module__.partition(".")[0] for a in arrays]
    if len(set(modules)) > 1:
        shown = ", ".join(f"{type(a).__module__}.{type(a).__name__}" for a in arrays)
        raise TypeError(
            f"{op}: the inputs mix NumPy and CuPy arrays ({shown}); every tensor of one computation must "
            "live on one device. Build tensors after choosing the backend (tinyvae.backend.use), or move "
            "one with Tensor(t.numpy()) (to main memory)"
        )
    return modules[0] if modules else "numpy"


class Context:
    """What one application of a Function keeps for its backward.

    ``ctx.save(*arrays)`` for arrays (freed after the backward runs); plain attributes for shapes and
    settings (``ctx.axis = 1``). ``ctx.needs_input_grad[i]`` tells a backward whether input ``i`` wants a
    gradient, so it can skip work.
    """

    __slots__ = ("function", "inputs", "needs_input_grad", "saved", "released", "__dict__")

    def __init__(self, function, inputs):
        self.function = function
        self.inputs = inputs
        self.needs_input_grad = tuple(getattr(t, "requires_grad", False) for t in inputs)
        self.saved = ()
        self.released = False

    def save(self, *arrays):
        self.saved = arrays

    @property
    def name(self) -> str:
        return self.function.__name__


class Function:
    """Base class of every differentiable op: subclasses define ``forward`` and ``backward``."""

    @staticmethod
    def forward(ctx, *args, **kwargs):
        raise NotImplementedError

    @staticmethod
    def backward(ctx, grad):
        raise NotImplementedError

    @classmethod
    def apply(cls, *inputs, **kwargs):
        """Run the forward on the inputs' arrays; record a graph node if any input requires a gradient.

        Tensor inputs are unwrapped to their arrays; other arguments (axes, indices, settings) are passed
        through unchanged. Keyword arguments are settings, never differentiable.
        """
        arrays = [t.data if isinstance(t, _Tensor) else t for t in inputs]
        record = is_grad_enabled() and any(isinstance(t, _Tensor) and t.requires_grad for t in inputs)
        ctx = Context(cls, inputs) if record else _NO_RECORD
        return _Tensor._from_op(cls.forward(ctx, *arrays, **kwargs), ctx if record else None)


class _DiscardingContext:
    """Stands in for a Context when no graph is recorded: saving is a no-op, so no memory is held."""

    __slots__ = ()
    needs_input_grad = ()

    def save(self, *arrays):
        pass

    def __setattr__(self, name, value):
        pass


_NO_RECORD = _DiscardingContext()


class GraphError(RuntimeError):
    """A misuse of the graph: a second backward through freed nodes, or a gradient of the wrong shape."""


def _topological_order(root_ctx):
    """Nodes reachable from ``root_ctx``, each after every node that consumes its output (root last).

    Iterative depth-first search: a node is emitted once all its parents have been emitted.
    """
    order, visited = [], set()
    stack = [(root_ctx, False)]
    while stack:
        ctx, parents_done = stack.pop()
        if parents_done:
            order.append(ctx)
            continue
        if id(ctx) in visited:
            continue
        visited.add(id(ctx))
        stack.append((ctx, True))
        for parent in ctx.inputs:
            parent_ctx = getattr(parent, "_ctx", None)
            if parent_ctx is not None and id(parent_ctx) not in visited:
                stack.append((parent_ctx, False))
    return order


def backward(root, grad=None, retain_graph=False):
    """Backpropagate from tensor ``root``: accumulate dL/dleaf into every leaf's ``.grad``.

    ``grad`` is dL/d(root); it defaults to 1 for a scalar root and is required otherwise.
    """
    xp = root.xp
    if not root.requires_grad:
        raise GraphError(
            "backward: this tensor does not require grad (no input had requires_grad=True, "
            "or it was computed under no_grad())"
        )
    if grad is None:
        if root.size != 1:
            raise GraphError(
                f"backward: grad can be omitted only for a scalar output, but the output has shape "
                f"{root.shape}; pass grad=an array of that shape (dL/d(output))"
            )
        grad = xp.ones(root.shape, dtype=root.dtype)
    else:
        grad = xp.array(grad, dtype=root.dtype)  # a copy: the seed may end up stored in a leaf's .grad
        if grad.shape != root.shape:
            raise GraphError(f"backward: grad has shape {grad.shape} but the output has shape {root.shape}")

    if root._ctx is None:  # the root is itself a leaf
        _accumulate_into_leaf(root, grad, handed_out=set())
        return

    order = _topological_order(root._ctx)
    pending = {id(root._ctx): grad}  # dL/d(output of node), freed as soon as the node has run
    handed_out = set()  # ids of arrays already stored in some leaf's .grad during this walk
    for ctx in reversed(order):
        grad_out = pending.pop(id(ctx), None)
        if grad_out is None:  # no path from the root carries a gradient through this node
            continue
        if ctx.released:
            raise GraphError(
                f"backward: the graph through op '{ctx.name}' was already backpropagated and its saved "
                "arrays freed; call backward(retain_graph=True) the first time to backpropagate twice"
            )
        input_grads = ctx.function.backward(ctx, grad_out)
        if not isinstance(input_grads, tuple):
            input_grads = (input_grads,)
        if len(input_grads) != len(ctx.inputs):
            raise GraphError(
                f"backward of op '{ctx.name}' returned {len(input_grads)} gradients for "
                f"{len(ctx.inputs)} inputs"
            )
        for position, (parent, parent_grad) in enumerate(zip(ctx.inputs, input_grads, strict=True)):
            if parent_grad is None or not ctx.needs_input_grad[position]:
                continue
            if parent_grad.shape != parent.shape:
                raise GraphError(
                    f"backward of op '{ctx.name}': gradient for input {position} has shape "
                    f"{parent_grad.shape} but that input has shape {parent.shape}"
                )
            if parent_grad.dtype != parent.dtype:  # dtype rule: a gradient has its input's dtype
                parent_grad = parent_grad.astype(parent.dtype)
            if parent._ctx is None:
                _accumulate_into_leaf(parent, parent_grad, handed_out)
            else:
                key = id(parent._ctx)
                earlier = pending.get(key)
                pending[key] = parent_grad if earlier is None else earlier + parent_grad
        if not retain_graph:
            ctx.saved = ()
            ctx.released = True


def _accumulate_into_leaf(leaf, grad, handed_out):
    """``leaf.grad += grad`` without ever aliasing: a leaf owns its ``.grad`` array outright.

    A backward may pass one array to two inputs (``a + b``) or return a view; such arrays are copied
    before a leaf keeps them, so an in-place update of one ``.grad`` cannot change another.
    """
    if leaf.grad is None:
        if id(grad) in handed_out or grad.base is not None:  # shared, or a view (broadcast, reshape)
            grad = grad.copy()
        handed_out.add(id(grad))
        leaf.grad = grad
    else:
        leaf.grad = leaf.grad + grad
