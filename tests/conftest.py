"""Shared fixtures: ``backend`` runs a test once per backend this machine has.

Also the hypothesis profiles of the property tests (test_properties.py,
test_hostile_inputs.py), chosen by ``HYPOTHESIS_PROFILE`` or ``--hypothesis-profile``:

- ``ci`` (the default, what a plain ``pytest`` runs): 200 examples per test. Both files
  take about 1 minute on the 2-core host (busy), about 5 with a cold Numba cache (its
  first compile, ~3 minutes, is paid by whichever test reaches numba first).
  ``derandomize=True``: the examples come from a seed derived from each test's name, so
  every run (and every machine) tries the same inputs, a failure in CI reproduces with
  plain ``pytest`` anywhere, and no run is flaky. Hence ``database=None``: nothing is
  remembered between runs (there is nothing random to replay), and no ``.hypothesis/``
  directory is written into the tree.
- ``long`` (alias ``bench``, for the benchmark machine): 3000 examples per test, random
  (not derandomized), with hypothesis's example database in ``.hypothesis/`` so that a
  failure found once is replayed first on every later run until it is fixed. It prints
  the reproduction blob of a failure (``@reproduce_failure``) to paste into a test.

``deadline=None`` in both: the first call of a Numba kernel in a new type signature
compiles it (seconds), and timing-based failures on a shared host would be noise.
"""
import os

import pytest
from hypothesis import HealthCheck, settings

import fastseq
from fastseq import backends

BACKENDS = fastseq.available_backends()

settings.register_profile(
    "ci", max_examples=200,
    deadline=None, derandomize=True, database=None, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "long", max_examples=3000, deadline=None, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile("bench", settings.get_profile("long"))
# --hypothesis-profile (hypothesis's pytest plugin) loads its profile after this file.
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


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
