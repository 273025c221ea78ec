"""Your own kernels. Each function here is a stub that raises "not implemented yet"; write its body.

These files are yours: import numpy (or anything else) as you like. Check one exercise, in a notebook cell or a
terminal, with ``tx.exercises.check("depthwise_conv2d_forward")`` (or ``python -m tinyxception exercises check
depthwise_conv2d_forward``): it reads your file afresh and prints pass, "not implemented yet", or the first
failing case. ``python -m tinyxception exercises`` lists them all; ``pytest --exercises -m ex_NAME`` runs one
exercise's tests and ``pytest --exercises -m ch2_conv`` a chapter's, on the library running your kernels.
After passing, ``tx.exercises.solution(NAME)`` shows the reference tier's solution beside yours, and
``tx.exercises.reset(NAME)`` puts the stub back (your file is kept as a backup). Return plain (N, C, H, W)
arrays of the right values, shape and dtype; how you compute or store them is up to you.
"""
from tinyxception.exercise_report import check, report, reset, solution

__all__ = ["check", "report", "reset", "solution"]
