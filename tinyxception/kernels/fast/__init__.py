"""The fast tier: the reference kernels made fast. Each file opens with "the reference is ...; optimisations: ...",
and returns the reference's values, shapes and dtypes (tests/test_fast_kernels.py checks fast == reference)."""
