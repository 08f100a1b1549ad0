"""Shared fixtures; the tests folder is importable (``released_example``) under pytest's importlib mode."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture
def scripted_server():
    from paperzoo_cantor.scripted import ScriptedServer

    with ScriptedServer(hang=3.0) as server:
        yield server
