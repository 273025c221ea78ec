"""Reference kernels of chapter 1: the order in which backward() visits the graph, and the linear layer."""


def topological_order(root):
    """The tensors that require grad and are reachable from `root` through ``t._ctx.inputs``, each listed once,
    every one after all of its inputs (so `root` comes last).

    Depth-first with an explicit stack instead of recursion (a 1000-layer chain would hit Python's recursion
    limit): a node is pushed once to visit its inputs and once more to be listed after them; the `visited` set
    (by ``id``, since tensors are not hashable by value) lists a tensor used twice (``b = a + a``) only once.
    """
    order, visited, stack = [], set(), [(root, False)]
    while stack:
        node, inputs_done = stack.pop()
        if inputs_done:
            order.append(node)
        elif id(node) not in visited:
            visited.add(id(node))
            stack.append((node, True))
            if node._ctx is not None:
                stack.extend((t, False) for t in node._ctx.inputs if t.requires_grad and id(t) not in visited)
    return order


def linear_forward(x, w, b):
    """y = x @ w.T + b: x (N, in), w (out, in) as in PyTorch, b (out,) or None."""
    y = x @ w.T
    if b is not None:
        y += b
    return y


def linear_backward(grad, x, w):
    """(dL/dx, dL/dw, dL/db) of linear_forward, given grad = dL/dy of shape (N, out).

    y[n, k] = sum over i of x[n, i] w[k, i] + b[k], so dL/dx = grad @ w, dL/dw = grad.T @ x and dL/db sums grad
    over the batch.
    """
    return grad @ w, grad.T @ x, grad.sum(axis=0)
