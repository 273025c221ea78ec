"""Chapter 1: the order in which backward() visits the graph (notebook 01, pytest --exercises -m ch1_autograd)."""
from tinyxception.exercise_mode import todo


def topological_order(root):
    """Every tensor that requires grad and is reachable from `root`, each listed ONCE, each after all its inputs.

    A tensor ``t`` made by an op has ``t._ctx`` (the Function call) with ``t._ctx.inputs`` (the input tensors);
    a leaf has ``t._ctx is None``. Only follow inputs with ``requires_grad`` True. `root` comes last.
    Hints: a tensor used twice (``b = a + a``) must still appear once; use ``id(t)`` for a visited set; and
    use an explicit stack instead of recursion, or a 1000-layer chain hits Python's recursion limit.
    """
    raise todo("topological_order")
