"""Shared pytest configuration: hypothesis profiles and common fixtures."""

import os

import torch
from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci",
    max_examples=25,
    deadline=None,
    derandomize=True,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("dev", max_examples=10, deadline=None)
settings.register_profile("thorough", max_examples=500, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

# Tests run many small tensor operations: one intra-op thread avoids OpenMP spin-waiting, which
# makes two threads many times slower on a busy 2-core machine (GFNCP_TEST_THREADS overrides).
torch.set_num_threads(int(os.environ.get("GFNCP_TEST_THREADS", "1")))
