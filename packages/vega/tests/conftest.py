from __future__ import annotations

from pathlib import Path

import pytest
from paperzoo_vega.construct import BuildConfig, build_dataset
from paperzoo_vega.data import VegaDataset, read_vega_jsonl
from paperzoo_vega.synthetic import generate_documents


@pytest.fixture(scope="session")
def tiny_release(tmp_path_factory: pytest.TempPathFactory) -> tuple[VegaDataset, VegaDataset]:
    """IITC and 3-picture ITA test files built from 4 synthetic documents (the smoke preset's recipe)."""
    root = tmp_path_factory.mktemp("vega")
    docs, imgs = generate_documents(root / "corpus", n_documents=4, seed=7, split="test")
    cfg = BuildConfig(budget=120, image_tokens=4, max_images=3, ita_pictures=(3,))
    build_dataset(docs, imgs, root / "out", cfg, split="test", progress=False)
    iitc = read_vega_jsonl(root / "out" / "IITC_0k_test.json", image_root=imgs)
    ita = read_vega_jsonl(root / "out" / "ITA_3picture_test.json", image_root=imgs)
    return iitc, ita


@pytest.fixture(scope="session")
def release_dir(tiny_release: tuple[VegaDataset, VegaDataset]) -> Path:
    return tiny_release[0].path.parent
