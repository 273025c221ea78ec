"""Your own kernels. Each function here is a stub that raises "not implemented yet"; write its body.

These files are yours: import numpy (or anything else) as you like. ``pytest --exercises`` (or
``TINYXCEPTION_EXERCISES=1``) makes the library call these functions instead of its own, so the chapter tests
check your code: ``pytest --exercises -m ch2_conv``. ``python -m tinyxception exercises`` lists each one as
pass / fail / not started. Return plain (N, C, H, W) arrays of the right values, shape and dtype; how you
compute or store them is up to you. After passing, compare with the solution of the same name in
``tinyxception/kernels/reference/`` (the same file names as here; see docs/learning-with-tests.md).
"""
