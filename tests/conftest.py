"""Screens and fits shared by several test modules (made once per session)."""

from __future__ import annotations

import pytest
from helpers import small

import delpyro
from delpyro import FitResult, fit, split


@pytest.fixture(scope="session")
def pose_screen() -> delpyro.DELData:
    """480 compounds with 4 docked poses of 16 features, one of which carries the signal; DEL-Dock's own
    setting (additive selection, abundance varying little), where its preset, which reads no load, fits."""
    return delpyro.simulate_del(
        seed=11, n_per_cycle=(10, 8, 6), n_poses=4, n_pose_features=16, combine="additive", load_noise=0.15
    )


@pytest.fixture(scope="session")
def pose_parts(pose_screen):
    return split(pose_screen, "random", (0.7, 0.15, 0.15), seed=0)


@pytest.fixture(scope="session")
def pose_fit(pose_parts) -> FitResult:
    train, val, _ = pose_parts
    return fit(train, val, small(epochs=12), seed=1, progress="none")
