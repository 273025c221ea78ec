"""tinyxception: Xception (Chollet, CVPR 2017) from scratch on NumPy, and on the GPU through CuPy."""
from . import backend, functional
from .autograd import Function, Tensor, no_grad, tensor
from .backend import available_devices

__version__ = "0.1.0"
