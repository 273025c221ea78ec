"""The fast tier: the same kernels as ``kernels/reference/``, returning the same values, shapes and dtypes,
made fast on NumPy (and CuPy). Each file opens with "the reference is ...; optimisations: ...";
``tests/test_fast_kernels.py`` checks every kernel here against its reference."""
