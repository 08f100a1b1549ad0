from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from paperzoo_videomme.data import write_synthetic_release


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 4-video synthetic set in the release layout (parquet + JSON annotations, video/, subtitle/)."""
    return write_synthetic_release(tmp_path_factory.mktemp("release"), n_videos=4, seed=3)


@pytest.fixture
def release_copy(synthetic_root: Path, tmp_path: Path) -> Path:
    """A private copy of the synthetic release that a test may damage."""
    return Path(shutil.copytree(synthetic_root, tmp_path / "release"))
