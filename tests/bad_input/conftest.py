"""The bench every bad-input case starts from, made once per test process."""

from __future__ import annotations

import pytest

from bad_input.matrix import Bench


@pytest.fixture(scope="session")
def bench(tmp_path_factory) -> Bench:
    return Bench(tmp_path_factory.mktemp("bench"))
