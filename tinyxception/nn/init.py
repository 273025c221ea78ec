"""Weight initialisation as Keras does it, so a fresh model starts where Keras' Xception starts.

Keras draws every convolution and dense kernel from Glorot's uniform distribution
U(-limit, limit) with limit = sqrt(6 / (fan_in + fan_out)), and computes the fans from
its own kernel layout (..., in, out): the receptive field is the product of the leading
dimensions, fan_in = receptive * in, fan_out = receptive * out. So

    Conv2D kernel (kh, kw, in/groups, out):  fan_in = kh kw in/groups,  fan_out = kh kw out
    depthwise kernel (kh, kw, C, 1):         fan_in = kh kw C,          fan_out = kh kw
    Dense kernel (in, out):                  fan_in = in,               fan_out = out

Biases start at 0; BatchNorm at gamma = 1, beta = 0, running mean 0, running variance 1.
Weights are drawn on the host with a NumPy Generator (seedable) and moved later by ``Module.to``.
"""
import math

from .. import backend

np = backend.cpu_module()


def default_rng(seed=None):
    """A NumPy Generator: `seed` may be None (fresh entropy), an int, or a Generator (used as is)."""
    return np.random.default_rng(seed)


def glorot_uniform(shape, keras_shape, rng, dtype="float32"):
    """An array of `shape` drawn from U(-limit, limit), limit = sqrt(6 / (fan_in + fan_out)).

    `keras_shape` is the same kernel in Keras' layout (..., in, out), which fixes the fans (the module's table;
    the receptive field of a Dense kernel (in, out) is 1); the values are i.i.d., so drawing them directly in
    our layout gives the same distribution.
    """
    receptive = math.prod(keras_shape[:-2])
    fan_in, fan_out = keras_shape[-2] * receptive, keras_shape[-1] * receptive
    limit = math.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, size=shape).astype(dtype)


def zeros(shape, dtype="float32"):
    """Zeros (biases, BatchNorm beta and running mean)."""
    return np.zeros(shape, dtype=dtype)


def ones(shape, dtype="float32"):
    """Ones (BatchNorm gamma and running variance)."""
    return np.ones(shape, dtype=dtype)
