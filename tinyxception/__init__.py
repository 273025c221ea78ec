"""tinyxception: Xception (Chollet, CVPR 2017) from scratch on NumPy, and on the GPU through CuPy."""
from . import backend, data, debug, exercises, functional, kernels, nn, optim, train
from .autograd import Function, Tensor, no_grad, tensor
from .backend import available_devices
from .debug import debug_mode, is_debug, set_debug
from .io import load, load_keras_weights, save
from .models import Xception
from .summary import count_buffers, count_conv_layers, count_parameters, summary

__version__ = "0.1.0"
