"""Chapter 1: the order in which backward() visits the graph, and the linear layer (notebook 01,
pytest --exercises -m ch1_autograd)."""
from tinyxception.exercise_mode import todo


def topological_order(root):
    """Every tensor that requires grad and is reachable from `root`, each listed ONCE, each after all its inputs.

    A tensor ``t`` made by an op has ``t._ctx`` (the Function call) with ``t._ctx.inputs`` (the input tensors);
    a leaf has ``t._ctx is None``. Only follow inputs with ``requires_grad`` True. `root` comes last.
    Hints: a tensor used twice (``b = a + a``) must still appear once; use ``id(t)`` for a visited set; and
    use an explicit stack instead of recursion, or a 1000-layer chain hits Python's recursion limit.
    """
    raise todo("topological_order")


def linear_forward(x, w, b):
    """y = x @ w.T + b: x (N, in), w (out, in) as in PyTorch, b (out,) or None (no bias). Returns (N, out)."""
    raise todo("linear_forward")


def linear_backward(grad, x, w):
    """(dL/dx, dL/dw, dL/db) given grad = dL/dy (N, out); shapes (N, in), (out, in), (out,).

    Hint: write y[n, k] = sum over i of x[n, i] w[k, i] + b[k] and differentiate; the bias is added to every
    row of the batch, so its gradient sums over the batch.
    """
    raise todo("linear_backward")
