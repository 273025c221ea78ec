"""Your own kernels. Each function here is a stub that raises "not implemented yet"; write its body.

``pytest --exercises`` (or ``TINYXCEPTION_EXERCISES=1``) makes the library call these functions instead of
its own, so the chapter tests check your code: ``pytest --exercises -m ch2_conv``. ``python -m tinyxception
exercises`` lists each one as pass / fail / not started. Arrays are NumPy arrays (CuPy on a GPU: get the array
module with ``tinyxception.backend.array_module(x)`` if you want your code to run on both). The reference
solutions are the functions of the same name in the library (see docs/learning-with-tests.md).
"""
