"""tinyxception: Xception (Chollet, CVPR 2017) from scratch on NumPy, and on the GPU through CuPy."""
from . import backend, data, debug, distributed, exercises, functional, kernels, nn, optim, train
from .autograd import Function, Tensor, no_grad, tensor
from .backend import available_devices
from .debug import debug_mode, is_debug, set_debug
from .io import load, save
from .keras import load_keras_weights
from .models import Xception
from .onnx_export import export_onnx
from .pretrained import class_names, decode_predictions, preprocess_input
from .summary import count_buffers, count_conv_layers, count_parameters, summary

__version__ = "0.1.0"
