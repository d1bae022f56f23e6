"""Shared fixtures: ``backend`` runs a test once per backend this machine has."""
import pytest

import fastseq
from fastseq import backends

BACKENDS = fastseq.available_backends()


@pytest.fixture(params=BACKENDS)
def backend(request):
    return request.param


@pytest.fixture(params=BACKENDS)
def active_backend(request):
    """Each backend in turn, made the active one for the test's duration."""
    name = request.param
    try:
        backends.backend_module(name)
    except ValueError as exc:
        pytest.skip(f"backend {name!r} is listed but does not load: {exc}")
    with fastseq.use_backend(name):
        yield name


def pytest_report_header(config):
    return [f"fastseq {fastseq.__version__} from {fastseq.__file__}",
            f"fastseq backends available: {BACKENDS}"]
