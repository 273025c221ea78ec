"""Reference kernel of chapter 5: one step of stochastic gradient descent with momentum."""


def sgd_momentum_step(p, g, velocity, lr, momentum, nesterov):
    """Update the parameter array p IN PLACE from its gradient g, and return the new velocity.

    PyTorch's momentum (no dampening): v = momentum * v + g, starting from v = 0 (velocity None at the first
    step, so v = g); then p -= lr * v, or with Nesterov momentum p -= lr * (g + momentum * v), a step from the
    point the momentum is about to reach.
    """
    if velocity is None:  # v = momentum * 0 + g: a copy of g, no zero-filled buffer
        velocity = g.copy()
    else:
        velocity *= momentum
        velocity += g
    p -= lr * (g + momentum * velocity if nesterov else velocity)
    return velocity
