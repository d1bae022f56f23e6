"""Shared fixtures: ``backend`` runs a test once per backend this machine has."""
import pytest

import fastseq

BACKENDS = fastseq.available_backends()


@pytest.fixture(params=BACKENDS)
def backend(request):
    return request.param


def pytest_report_header(config):
    return [f"fastseq {fastseq.__version__} from {fastseq.__file__}",
            f"fastseq backends available: {BACKENDS}"]
