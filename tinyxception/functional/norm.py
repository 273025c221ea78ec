"""Batch normalisation (Ioffe & Szegedy, 2015), per channel of an (N, C, H, W) or (N, C) batch.

Training normalises every channel with the statistics of the batch itself, over its M = N*H*W values:

    mean = sum(x) / M,   var = sum((x - mean)^2) / M   (biased),   xhat = (x - mean) / sqrt(var + eps)
    y = gamma * xhat + beta

and moves the running statistics towards the batch statistics, in place, with PyTorch's convention:

    running_mean = (1 - momentum) * running_mean + momentum * mean
    running_var  = (1 - momentum) * running_var  + momentum * var * M / (M - 1)   (unbiased variance)

Keras writes the same update as ``running = decay * running + (1 - decay) * batch``, so Keras'
momentum 0.99 is ``momentum=0.01`` here. Evaluation uses the running statistics, which are
constants, so the whole op folds into one per-channel affine map:

    y = x * scale + shift,   scale = gamma / sqrt(running_var + eps),   shift = beta - running_mean * scale
"""
import math

from .. import backend
from ..autograd import Function, Tensor
from ..checks import check_number, expect_shape, float_tensor, image_batch, same_device, same_dtype
from ..kernels import active as kernels


class BatchNormTrainingFunction(Function):
    """y = gamma * xhat + beta with the batch's own mean and variance (kernels ``batch_norm_forward``/``backward``)."""

    def forward(self, x, gamma, beta, running_mean, running_var, momentum, eps):
        out, mean, inv_std = kernels.batch_norm_forward(x, gamma, beta, running_mean, running_var, momentum, eps)
        # x stays alive in the graph anyway; keeping xhat too would cost one more activation per layer
        self.x, self.mean, self.inv_std, self.gamma = x, mean, inv_std, gamma
        return out

    def backward(self, grad):
        return kernels.batch_norm_backward(grad, self.x, self.mean, self.inv_std, self.gamma)


class BatchNormInferenceFunction(Function):
    """y = gamma * (x - running_mean) / sqrt(running_var + eps) + beta: the running statistics are constants."""

    def forward(self, x, gamma, beta, running_mean, running_var, eps):
        # copies of the statistics (training updates them in place); 1 / sqrt(var + eps) only when backward runs
        self.x, self.gamma, self.mean, self.var_eps = x, gamma, running_mean.copy(), running_var + eps
        return kernels.batch_norm_inference_forward(x, gamma, beta, running_mean, running_var, eps)

    def backward(self, grad):
        inv_std = 1 / backend.array_module(grad).sqrt(self.var_eps)
        return kernels.batch_norm_inference_backward(grad, self.x, self.mean, inv_std, self.gamma)


def batch_norm(x, gamma, beta, running_mean, running_var, training: bool,
               momentum: float = 0.1, eps: float = 1e-3) -> Tensor:
    """Batch normalisation of x (N, C, H, W) or (N, C) with per-channel gamma and beta of shape (C,).

    ``training=True`` normalises with the batch's mean and biased variance and updates
    ``running_mean`` and ``running_var`` (arrays, or Tensors whose ``.data`` is used) IN PLACE:
    ``running = (1 - momentum) * running + momentum * batch_stat``, where the variance that enters
    the running average is the unbiased one (times M / (M - 1), M = N*H*W), as in PyTorch.
    ``training=False`` uses the running statistics, folded into ``y = x * scale + shift``. Training refuses
    float16 (TypeError): its sums overflow and would write NaN into the running statistics.
    Gradients flow to x, gamma and beta in both modes; the running statistics get none.
    """
    op = "batch_norm"
    x = image_batch(x, op, ranks=(4, 2))
    params = {"gamma": gamma, "beta": beta, "running_mean": running_mean, "running_var": running_var}
    for name, p in params.items():
        if training and name.startswith("running") and not (isinstance(p, Tensor) or backend.is_array(p)):
            raise TypeError(f"{op}: training updates {name} in place, so it must be an array or a Tensor, "
                            f"got a {type(p).__name__}")
        params[name] = float_tensor(p, name, op)
        expect_shape(params[name], (x.shape[1],), name, op, channels_of=x)
    same_dtype(op, x=x, **params)
    same_device(op, x=x, **params)
    momentum = check_number(momentum, f"{op}: momentum", 0, 1)
    eps = check_number(eps, f"{op}: eps", 0, math.inf, "()")
    return normalize(x, params["gamma"], params["beta"], params["running_mean"].data, params["running_var"].data,
                     training, momentum, eps)


def normalize(x, gamma, beta, running_mean, running_var, training: bool, momentum: float, eps: float) -> Tensor:
    """batch_norm of checked operands (running statistics as arrays): what BatchNorm2d calls."""
    if not training:
        return BatchNormInferenceFunction.apply(x, gamma, beta, running_mean=running_mean, running_var=running_var,
                                                eps=eps)
    if x.dtype.itemsize < 4:  # float16 sums of M values (and of their squares) overflow at 65504
        raise TypeError(f"batch_norm: training in {x.dtype} would overflow the per-channel sums of the batch "
                        "statistics; train in float32 (model.astype('float32')), evaluation in float16 works")
    if x.size < 2 * x.shape[1]:
        raise ValueError(f"batch_norm: training needs more than one value per channel, got x of shape {x.shape}")
    return BatchNormTrainingFunction.apply(x, gamma, beta, running_mean=running_mean, running_var=running_var,
                                           momentum=momentum, eps=eps)
