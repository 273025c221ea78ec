"""Float64 central-difference gradient checking, used by every op test.

For a function f of several arrays we compare autograd's gradient of
L = sum(f(inputs) * R), with R a fixed random array (so every output element
matters), against the central difference

    dL/dx_i ~= (L(x + eps e_i) - L(x - eps e_i)) / (2 eps),

whose error is O(eps^2). In float64 with eps = 1e-6 the two agree to ~1e-7.
"""
import numpy as np

import tinyxception as tx


def _loss(fn, arrays, projection, device):
    with tx.no_grad():
        out = fn(*[tx.tensor(a, device=device) for a in arrays])
    return float(np.sum(out.numpy() * projection))


def numerical_gradient(fn, arrays, which, projection, device="cpu", eps=1e-6):
    """Central differences of sum(fn(*arrays) * projection) with respect to arrays[which]."""
    arrays = [np.array(a, dtype=np.float64) for a in arrays]
    x = arrays[which]
    grad = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        original = x[i]
        x[i] = original + eps
        up = _loss(fn, arrays, projection, device)
        x[i] = original - eps
        down = _loss(fn, arrays, projection, device)
        x[i] = original
        grad[i] = (up - down) / (2 * eps)
    return grad


def check_gradients(fn, *arrays, device="cpu", atol=1e-6, rtol=1e-5, seed=0):
    """Assert that autograd's gradient of every input of fn matches central differences (float64)."""
    arrays = [np.asarray(a, dtype=np.float64) for a in arrays]
    tensors = [tx.tensor(a, requires_grad=True, device=device) for a in arrays]
    out = fn(*tensors)
    projection = np.random.default_rng(seed).standard_normal(out.shape)
    out.backward(tx.tensor(projection, device=device).data)
    for which, t in enumerate(tensors):
        expected = numerical_gradient(fn, arrays, which, projection, device)
        assert t.grad is not None, f"input {which} received no gradient"
        np.testing.assert_allclose(tx.backend.asnumpy(t.grad), expected, atol=atol, rtol=rtol,
                                   err_msg=f"gradient of input {which} (shape {t.shape})")
