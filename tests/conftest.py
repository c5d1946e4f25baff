"""Shared test helpers: real model directories built from recorded fixtures."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"
sys.path.insert(0, str(FIXTURES))

from build_model_dir import build_model_dir  # noqa: E402


@pytest.fixture
def model_dir(tmp_path):
    """Factory: a model dir built from a real model's recorded files (see fixtures/models)."""

    made: list[Path] = []

    def make(name: str = "Qwen2.5-VL-7B-Instruct", **kw) -> Path:
        dest = tmp_path / f"{name}-{len(made)}"
        made.append(dest)
        return build_model_dir(name, dest, **kw)

    return make
