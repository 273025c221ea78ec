"""Differentiable operations on Tensors (NCHW activations, OIHW weights)."""
