"""Chapter 5: one step of SGD with momentum (notebook 07, pytest --exercises -m ch5_training)."""
from tinyxception.exercise_mode import todo


def sgd_momentum_step(p, g, velocity, lr, momentum, nesterov):
    """Update the parameter array p IN PLACE (``p -= ...``) from its gradient g, and return the new velocity.

    PyTorch's momentum: v = momentum * v + g, starting from v = 0 (`velocity` is None at the first step); then
    p -= lr * v, or with nesterov=True p -= lr * (g + momentum * v). Leave g unchanged; you may update the old
    velocity array in place and return it.
    """
    raise todo("sgd_momentum_step")
