"""A learner's topological order (a post-order walk with an explicit stack) and linear layer (einsum)."""
import numpy as np


def topological_order(root):
    order, seen = [], set()
    stack = [root]
    expanded = set()
    while stack:
        t = stack[-1]
        if id(t) in seen:
            stack.pop()
            continue
        parents = [] if t._ctx is None else [p for p in t._ctx.inputs if p.requires_grad and id(p) not in seen]
        if id(t) in expanded or not parents:
            stack.pop()
            seen.add(id(t))
            order.append(t)
        else:
            expanded.add(id(t))
            stack.extend(parents)
    return order


def linear_forward(x, w, b):
    y = np.einsum("ni,ki->nk", x, w)
    return y if b is None else y + b[None, :]


def linear_backward(grad, x, w):
    return np.einsum("nk,ki->ni", grad, w), np.einsum("nk,ni->ki", grad, x), grad.sum(axis=0)
