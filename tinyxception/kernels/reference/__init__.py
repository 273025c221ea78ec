"""The reference tier: every kernel written the way a good learner writes it, plain NCHW in and NCHW out.

Read these files to learn each kernel: loops run over the k x k kernel taps only (each tap is one strided
slice of the padded input, for all images, channels and pixels at once), with no storage tricks and no cache
tiling, and each function's docstring derives what it computes. The files are laid out exactly like the
learner's folder ``tinyxception/exercises/`` (same module names, same function names and signatures), so they
are also its model solutions, and ``TINYXCEPTION_KERNELS=reference`` runs the whole library on them.
The fast tier (``tinyxception/kernels/fast/``) is checked against these. ``network.py``, the solution of the
exercises that assemble layers instead of computing on arrays, holds no kernels: it returns the library's own
blocks (``MiddleBlock`` and ``DownBlock`` in ``tinyxception/models/xception.py``).
"""
