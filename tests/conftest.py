"""Shared fixtures: every device test runs once per device; CUDA cases skip with the reason."""
import pytest

from tinyxception import backend


def _device_params():
    reason = backend.cuda_problem() or ""
    return [
        pytest.param("cpu", id="cpu"),
        pytest.param("cuda", id="cuda", marks=pytest.mark.skipif(not backend.cuda_available(),
                                                                 reason=f"no CUDA device: {reason}")),
    ]


@pytest.fixture(params=_device_params())
def device(request):
    """"cpu", and "cuda" where a GPU is available."""
    return request.param
