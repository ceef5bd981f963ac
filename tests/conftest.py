"""Shared pytest configuration for the autograd_c Python test suite.

* Hypothesis profiles: "default" (used unless HYPOTHESIS_PROFILE says
  otherwise) keeps the whole suite fast on a small machine; "thorough" is
  for a longer local hunt (HYPOTHESIS_PROFILE=thorough pytest tests).
  No deadlines: timing is never asserted, and a shared 2-core CI box can
  be slow at random moments.
* Fixtures for the arena's live-node count and for the thread switch
  interval.
"""
import os
import sys

import pytest
from hypothesis import HealthCheck, settings

from support import live_nodes

settings.register_profile(
    "default",
    max_examples=100,  # the main differential test asks for 200 itself
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    print_blob=True,
)
settings.register_profile(
    "thorough",
    max_examples=2000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    print_blob=True,
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))



@pytest.fixture
def live_baseline():
    """The live-node count before the test; a test compares against it."""
    return live_nodes()


@pytest.fixture
def fast_switching():
    """Make the interpreter switch threads very often (more interleavings)
    for the duration of one test."""
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        sys.setswitchinterval(old)
