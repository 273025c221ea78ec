"""Layers as objects that own their weights: Module, Parameter, Sequential and the layers Xception needs."""
from . import init
from .conv import Conv2d, DepthwiseConv2d, PointwiseConv2d, SeparableConv2d
from .layers import (ELU, BatchNorm2d, Dropout, GlobalAvgPool2d, GlobalMaxPool2d, Linear, MaxPool2d, ReLU,
                     make_activation)
from .module import Module, Parameter, Sequential, forward_hook
