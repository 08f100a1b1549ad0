from __future__ import annotations

from pathlib import Path

import pytest
from paperzoo_t2vid.configuration import DEFAULT_FONT


@pytest.fixture(scope="session")
def font_path() -> str:
    """DejaVu Sans from Debian's fonts-dejavu-core (CI installs it; the renderer tests need a real font)."""
    if not Path(DEFAULT_FONT).is_file():
        pytest.fail(f"{DEFAULT_FONT} is missing: apt-get install fonts-dejavu-core")
    return DEFAULT_FONT


@pytest.fixture(scope="session")
def font(font_path: str):  # type: ignore[no-untyped-def]
    from paperzoo_t2vid.synthesize import load_font

    return load_font(font_path, 20)


class MonoFont:
    """A stand-in font with hand-computable geometry: every character is 10 px wide, lines are 20 px tall."""

    def getbbox(self, text: str) -> tuple[int, int, int, int]:
        return (0, 0, 10 * len(text), 20 if text else 0)


@pytest.fixture
def mono() -> MonoFont:
    return MonoFont()
