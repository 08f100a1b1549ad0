"""The mini table's baselines: BRISQUE (its own formula: 36 NSS features + an RBF SVR), a small CNN
regressor and a single-scale ViT (timm). None of them downloads anything.

BRISQUE (Mittal, Moorthy and Bovik, TIP 2012): mean-subtracted contrast-normalised (MSCN) coefficients with a
7x7 Gaussian window (sigma 7/6, C = 1), a generalised Gaussian fit (shape, variance) of the MSCN values and an
asymmetric generalised Gaussian fit (shape, mean, left and right variances) of the products of horizontal,
vertical and both diagonal neighbours: 18 features per scale, at full and half scale (36). pyiqa's
``brisque`` needs downloaded SVM parameters, so the regressor is fitted here on each training split
(scikit-learn's ``SVR``, features scaled to [-1, 1] as the release's ``allrange`` file does).
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
from scipy.special import gamma as gamma_fn
from timm.models.vision_transformer import VisionTransformer
from torch import nn

_ALPHAS = np.arange(0.2, 10.0, 0.001)
_GGD_RATIO = gamma_fn(2.0 / _ALPHAS) ** 2 / (gamma_fn(1.0 / _ALPHAS) * gamma_fn(3.0 / _ALPHAS))


def mscn(gray: np.ndarray) -> np.ndarray:
    """MSCN coefficients of a float grey image on the 0-255 scale."""
    mu = cv2.GaussianBlur(gray, (7, 7), 7.0 / 6.0, borderType=cv2.BORDER_REPLICATE)
    sigma = np.sqrt(
        np.abs(cv2.GaussianBlur(gray * gray, (7, 7), 7.0 / 6.0, borderType=cv2.BORDER_REPLICATE) - mu * mu)
    )
    return (gray - mu) / (sigma + 1.0)


def fit_ggd(x: np.ndarray) -> tuple[float, float]:
    """Moment-matching fit of a zero-mean generalised Gaussian: (shape alpha, variance)."""
    sigma_sq = float(np.mean(x * x))
    e = float(np.mean(np.abs(x)))
    rho = sigma_sq / (e * e + 1e-12)
    return float(_ALPHAS[np.argmin(np.abs(rho - 1.0 / _GGD_RATIO))]), sigma_sq


def fit_aggd(x: np.ndarray) -> tuple[float, float, float, float]:
    """Asymmetric GGD fit: (shape, mean, left variance, right variance)."""
    left, right = x[x < 0], x[x >= 0]
    left_std = np.sqrt(np.mean(left * left)) if left.size else 1e-6
    right_std = np.sqrt(np.mean(right * right)) if right.size else 1e-6
    gamma_hat = left_std / (right_std + 1e-12)
    r_hat = float(np.mean(np.abs(x))) ** 2 / (float(np.mean(x * x)) + 1e-12)
    rhat_norm = r_hat * (gamma_hat**3 + 1) * (gamma_hat + 1) / ((gamma_hat**2 + 1) ** 2)
    ratio = gamma_fn(2.0 / _ALPHAS) ** 2 / (gamma_fn(1.0 / _ALPHAS) * gamma_fn(3.0 / _ALPHAS))
    alpha = float(_ALPHAS[np.argmin((ratio - rhat_norm) ** 2)])
    const = np.sqrt(gamma_fn(1.0 / alpha) / gamma_fn(3.0 / alpha))
    mean = (right_std - left_std) * (gamma_fn(2.0 / alpha) / gamma_fn(1.0 / alpha)) * const
    return alpha, float(mean), float(left_std**2), float(right_std**2)


def brisque_features(image: np.ndarray) -> np.ndarray:
    """36 BRISQUE features of a (H, W, 3) uint8 RGB image (computed on its luminance)."""
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float64)
    features = []
    for _ in range(2):
        m = mscn(gray)
        alpha, var = fit_ggd(m)
        features += [alpha, var]
        for shifted in (
            m[:, 1:] * m[:, :-1],
            m[1:, :] * m[:-1, :],
            m[1:, 1:] * m[:-1, :-1],
            m[1:, :-1] * m[:-1, 1:],
        ):
            shape, mean, lvar, rvar = fit_aggd(shifted.ravel())
            features += [shape, mean, lvar, rvar]
        gray = cv2.resize(gray, (gray.shape[1] // 2, gray.shape[0] // 2), interpolation=cv2.INTER_CUBIC)
    return np.array(features)


class BrisqueRegressor:
    """BRISQUE features -> min-max scaling to [-1, 1] (fitted on the training images) -> RBF SVR."""

    def __init__(self, c: float = 10.0, gamma: float = 0.05):
        from sklearn.svm import SVR

        self.svr = SVR(kernel="rbf", C=c, gamma=gamma)

    def _scale(self, features: np.ndarray) -> np.ndarray:
        return 2.0 * (features - self.low) / np.maximum(self.high - self.low, 1e-12) - 1.0

    def fit(self, features: np.ndarray, mos: np.ndarray) -> BrisqueRegressor:
        self.low, self.high = features.min(axis=0), features.max(axis=0)
        self.svr.fit(self._scale(features), mos)
        return self

    def predict(self, features: np.ndarray) -> np.ndarray:
        return self.svr.predict(self._scale(features))


class SmallCNN(nn.Module):
    """A small CNN regressor: a stride-2 stem, conv-BN-ReLU stages with 2x2 max pooling, global average
    pooling, linear."""

    def __init__(self, channels: list[int]):
        super().__init__()
        layers, c_in = [nn.Conv2d(3, channels[0], 3, stride=2, padding=1), nn.ReLU(inplace=True)], channels[0]
        for c in channels:
            layers += [
                nn.Conv2d(c_in, c, 3, padding=1),
                nn.BatchNorm2d(c),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2),
            ]
            c_in = c
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(c_in, 1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(images).mean(dim=(2, 3))).squeeze(-1)


class SingleScaleViT(nn.Module):
    """timm's ViT with one patch size and a 1-output regression head on the CLS token."""

    def __init__(self, img_size: int, patch: int, dim: int, depth: int, heads: int):
        super().__init__()
        self.vit = VisionTransformer(
            img_size=img_size,
            patch_size=patch,
            embed_dim=dim,
            depth=depth,
            num_heads=heads,
            mlp_ratio=2.0,
            num_classes=1,
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.vit(images).squeeze(-1)


def single_scale_vit(img_size: int, patch: int, dim: int, depth: int, heads: int) -> nn.Module:
    return SingleScaleViT(img_size, patch, dim, depth, heads)
