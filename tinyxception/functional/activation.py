"""Element-wise activations: ReLU (used throughout Xception) and ELU (the paper's Fig. 10 ablation).

Both backwards read what forward already has (the output, and the input that the graph keeps
alive anyway), so no extra array is saved and nothing is recomputed.
"""
import math

from .. import backend
from ..autograd import Function, Tensor
from ..checks import check_number, float_tensor
from ..kernels import active as kernels


class _ReLU(Function):
    """y = max(x, 0) (kernels ``relu_forward``/``relu_backward``)."""

    def forward(self, x):
        self.out = kernels.relu_forward(x)
        return self.out

    def backward(self, grad):
        return kernels.relu_backward(grad, self.out)


class _ELU(Function):
    """y = x for x > 0, alpha * (exp(x) - 1) otherwise."""

    def forward(self, x, alpha):
        xp = backend.array_module(x)
        negative = xp.expm1(xp.minimum(x, 0))  # exp of min(x, 0) never overflows
        negative *= alpha
        self.x, self.out, self.alpha = x, xp.where(x > 0, x, negative), alpha
        return self.out

    def backward(self, grad):  # for x <= 0: dy/dx = alpha * exp(x) = y + alpha, no exp needed
        xp = backend.array_module(grad)
        return xp.where(self.x > 0, grad, grad * (self.out + self.alpha))


def relu(x) -> Tensor:
    """The rectified linear unit max(x, 0), element-wise."""
    return _ReLU.apply(float_tensor(x, "x", "relu"))


def elu(x, alpha: float = 1.0) -> Tensor:
    """The exponential linear unit: x where x > 0, alpha * (exp(x) - 1) elsewhere."""
    return _ELU.apply(float_tensor(x, "x", "elu"), alpha=check_number(alpha, "elu: alpha", -math.inf, math.inf, "()"))
