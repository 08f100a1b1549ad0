"""Rendering primitives shared by the synthetic shape scenes, question/answer images and videos.

Coordinates: pixel ``(row i, column j)`` covers the square ``[j, j+1) x [i, i+1)`` of the continuous
image plane, so its centre is ``(j + 0.5, i + 0.5)``; ``x`` grows to the right and ``y`` downwards.
Shapes are anti-aliased by supersampling (``ss x ss`` samples per pixel); a pixel belongs to a shape's
binary mask when at least half of its samples are inside.

Everything is drawn on a float canvas in ``[0, 255]`` and rounded once at the end; all randomness comes
from the ``numpy.random.Generator`` passed in.
"""

from __future__ import annotations

import colorsys
import math
from dataclasses import dataclass

import numpy as np

SHAPE_CLASSES: tuple[str, ...] = ("circle", "square", "triangle", "ring", "cross", "ellipse")
"""The six object classes, in category-id order (COCO ids 1..6)."""

PALETTE: dict[str, tuple[float, float, float]] = {
    "red": (0.0, 0.85, 0.85),
    "orange": (28.0, 0.9, 0.9),
    "yellow": (55.0, 0.85, 0.85),
    "green": (120.0, 0.75, 0.7),
    "cyan": (185.0, 0.8, 0.8),
    "blue": (225.0, 0.8, 0.85),
    "purple": (275.0, 0.65, 0.75),
    "pink": (320.0, 0.5, 0.9),
    "white": (0.0, 0.0, 0.85),
}
"""Named object colours as (hue in degrees, saturation, value). Any class can take any colour, so colour is
never a shortcut for class. Neighbouring hues are at least 27 degrees apart, more than twice the jitter."""

COLOUR_NAMES: tuple[str, ...] = tuple(PALETTE)

HUE_JITTER_DEG = 5.0
SV_JITTER = 0.07

PATTERNS: tuple[str, ...] = ("plain", "striped", "checkered")
"""Surface patterns. ``striped`` alternates image rows and ``checkered`` alternates pixels in both axes
between ``colour + d`` and ``colour - d``: a period of 2 pixels, aligned to the image grid, so every 2x2
(hence every 4x4) block averages exactly to the plain colour and the pattern vanishes under pooling."""

# Shape geometry ranges (documented constants rather than configuration).
SQUARE_ASPECT = (0.75, 1.0)  # short/long side of the "square" (a near-square rectangle)
ELLIPSE_ASPECT = (0.45, 0.7)  # minor/major axis, clearly not a circle
RING_INNER = (0.45, 0.65)  # inner/outer radius
CROSS_THICKNESS = (0.28, 0.4)  # arm half-width / arm half-length
MAX_TILT_DEG = 15.0  # light rotation of triangles and crosses


def hsv_to_rgb255(hue_deg: float, saturation: float, value: float) -> tuple[int, int, int]:
    """HSV (hue in degrees, s and v in [0, 1]) to an 8-bit RGB triple."""
    r, g, b = colorsys.hsv_to_rgb((hue_deg % 360.0) / 360.0, saturation, value)
    return (round(r * 255), round(g * 255), round(b * 255))


def sample_rgb(rng: np.random.Generator, colour: str) -> tuple[int, int, int]:
    """A jittered RGB instance of the named palette colour."""
    hue, sat, val = PALETTE[colour]
    jitter_h, jitter_s, jitter_v = rng.uniform(-1.0, 1.0, size=3)
    return hsv_to_rgb255(
        hue + HUE_JITTER_DEG * jitter_h,
        float(np.clip(sat + SV_JITTER * jitter_s, 0.0, 1.0)) if sat > 0 else 0.0,
        float(np.clip(val + SV_JITTER * jitter_v, 0.0, 1.0)),
    )


@dataclass(frozen=True)
class ShapeSpec:
    """Everything needed to draw one shape.

    Attributes:
        label: one of :data:`SHAPE_CLASSES`.
        cx, cy: centre in continuous pixel coordinates (the centroid for triangles).
        size: nominal size in pixels: the diameter (circle, ring), major axis (ellipse), long side
            (square) or arm span (cross); for triangles the side length.
        aspect: short/long ratio for squares and ellipses, 1 otherwise.
        angle: rotation in radians.
        inner: inner/outer radius for rings, arm half-width/half-length for crosses, 0 otherwise.
        colour: palette name; ``rgb`` is the jittered instance actually drawn.
        pattern: one of :data:`PATTERNS`.
    """

    label: str
    cx: float
    cy: float
    size: float
    aspect: float
    angle: float
    inner: float
    colour: str
    rgb: tuple[int, int, int]
    pattern: str = "plain"

    @property
    def radius(self) -> float:
        """Radius of a circle around the centre that contains the whole shape."""
        half = self.size / 2.0
        if self.label == "triangle":
            return self.size / math.sqrt(3.0)
        if self.label == "square":
            return half * math.hypot(1.0, self.aspect)
        if self.label == "cross":
            return half * math.hypot(1.0, self.inner)
        return half


def sample_geometry(rng: np.random.Generator, label: str) -> tuple[float, float, float]:
    """Random ``(aspect, angle, inner)`` for a class, from the module's documented ranges."""
    tilt = math.radians(MAX_TILT_DEG)
    if label == "square":
        # Long side horizontal or vertical; squares stay axis-aligned.
        return float(rng.uniform(*SQUARE_ASPECT)), float(rng.integers(2) * math.pi / 2), 0.0
    if label == "ellipse":
        return float(rng.uniform(*ELLIPSE_ASPECT)), float(rng.uniform(0.0, math.pi)), 0.0
    if label == "triangle":
        return 1.0, float(rng.uniform(-tilt, tilt)), 0.0
    if label == "cross":
        return 1.0, float(rng.uniform(-tilt, tilt)), float(rng.uniform(*CROSS_THICKNESS))
    if label == "ring":
        return 1.0, 0.0, float(rng.uniform(*RING_INNER))
    if label == "circle":
        return 1.0, 0.0, 0.0
    raise ValueError(f"unknown shape class {label!r}; expected one of {SHAPE_CLASSES}.")


def _inside(spec: ShapeSpec, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Membership of points given in the shape's own (rotated, centred) frame."""
    half = spec.size / 2.0
    if spec.label == "circle":
        return u * u + v * v <= half * half
    if spec.label == "ring":
        rho2 = u * u + v * v
        return (rho2 <= half * half) & (rho2 >= (half * spec.inner) ** 2)
    if spec.label == "ellipse":
        return (u / half) ** 2 + (v / (half * spec.aspect)) ** 2 <= 1.0
    if spec.label == "square":
        return (np.abs(u) <= half) & (np.abs(v) <= half * spec.aspect)
    if spec.label == "cross":
        arm = half * spec.inner
        au, av = np.abs(u), np.abs(v)
        return ((au <= half) & (av <= arm)) | ((au <= arm) & (av <= half))
    if spec.label == "triangle":
        # Equilateral, pointing up, centroid at the origin, circumradius R = side / sqrt(3).
        r = spec.size / math.sqrt(3.0)
        s3 = math.sqrt(3.0)
        return (v <= r / 2.0) & (s3 * u - v <= r) & (-s3 * u - v <= r)
    raise ValueError(f"unknown shape class {spec.label!r}; expected one of {SHAPE_CLASSES}.")


@dataclass(frozen=True)
class Coverage:
    """Anti-aliased coverage of a shape in the window ``[y0, y0 + h) x [x0, x0 + w)`` of an image."""

    y0: int
    x0: int
    alpha: np.ndarray  # (h, w) float32 in [0, 1]

    def full_mask(self, height: int, width: int) -> np.ndarray:
        """Binary mask (coverage >= 0.5) as a full-image bool array."""
        mask = np.zeros((height, width), dtype=bool)
        h, w = self.alpha.shape
        mask[self.y0 : self.y0 + h, self.x0 : self.x0 + w] = self.alpha >= 0.5
        return mask


def shape_coverage(spec: ShapeSpec, height: int, width: int, ss: int = 4) -> Coverage:
    """Supersampled coverage of ``spec`` on an ``height x width`` image (clipped to the image)."""
    reach = spec.radius + 1.0
    x0 = max(0, math.floor(spec.cx - reach))
    y0 = max(0, math.floor(spec.cy - reach))
    x1 = min(width, math.ceil(spec.cx + reach))
    y1 = min(height, math.ceil(spec.cy + reach))
    if x1 <= x0 or y1 <= y0:
        return Coverage(0, 0, np.zeros((0, 0), dtype=np.float32))
    offsets = (np.arange(ss) + 0.5) / ss
    xs = (np.arange(x0, x1)[:, None] + offsets[None, :]).ravel() - spec.cx
    ys = (np.arange(y0, y1)[:, None] + offsets[None, :]).ravel() - spec.cy
    cos, sin = math.cos(spec.angle), math.sin(spec.angle)
    dx, dy = xs[None, :], ys[:, None]
    inside = _inside(spec, cos * dx + sin * dy, -sin * dx + cos * dy)
    alpha = inside.reshape(y1 - y0, ss, x1 - x0, ss).mean(axis=(1, 3), dtype=np.float32)
    return Coverage(y0, x0, alpha)


def pattern_layer(
    rgb: tuple[int, int, int], pattern: str, y0: int, x0: int, h: int, w: int, amplitude: float
) -> np.ndarray:
    """Colour of a (possibly patterned) surface in a window, as float32 ``(h, w, 3)``.

    The two pattern colours are ``rgb +/- d`` with ``d = min(amplitude, c, 255 - c)`` per channel, so they
    stay in range and their mean is exactly ``rgb``.
    """
    base = np.asarray(rgb, dtype=np.float32)
    if pattern == "plain":
        return np.broadcast_to(base, (h, w, 3))
    if pattern not in PATTERNS:
        raise ValueError(f"unknown pattern {pattern!r}; expected one of {PATTERNS}.")
    d = np.minimum(np.minimum(base, 255.0 - base), amplitude)
    rows = np.arange(y0, y0 + h)[:, None]
    cols = np.arange(x0, x0 + w)[None, :]
    parity = rows % 2 == 0 if pattern == "striped" else (rows + cols) % 2 == 0
    sign = np.where(np.broadcast_to(parity, (h, w)), 1.0, -1.0).astype(np.float32)
    return base + sign[:, :, None] * d


def paint(canvas: np.ndarray, coverage: Coverage, layer: np.ndarray) -> None:
    """Alpha-composite ``layer`` (window-sized or broadcastable) over ``canvas`` in place."""
    h, w = coverage.alpha.shape
    region = canvas[coverage.y0 : coverage.y0 + h, coverage.x0 : coverage.x0 + w]
    region += coverage.alpha[:, :, None] * (layer - region)


def draw_shape(
    canvas: np.ndarray, spec: ShapeSpec, coverage: Coverage, pattern_amplitude: float = 48.0
) -> None:
    """Draw ``spec`` (with its pattern) onto the float canvas using its precomputed coverage."""
    h, w = coverage.alpha.shape
    paint(
        canvas,
        coverage,
        pattern_layer(spec.rgb, spec.pattern, coverage.y0, coverage.x0, h, w, pattern_amplitude),
    )


def _interpolation_matrix(n_out: int, n_in: int) -> np.ndarray:
    """Smooth (smoothstep-weighted linear) interpolation from ``n_in`` grid nodes to ``n_out`` samples."""
    pos = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0.0, n_in - 1.0)
    lo = np.minimum(np.floor(pos).astype(int), n_in - 2) if n_in > 1 else np.zeros(n_out, dtype=int)
    t = pos - lo
    t = t * t * (3.0 - 2.0 * t)
    matrix = np.zeros((n_out, n_in))
    matrix[np.arange(n_out), lo] += 1.0 - t
    if n_in > 1:
        matrix[np.arange(n_out), lo + 1] += t
    return matrix


def smooth_field(rng: np.random.Generator, height: int, width: int, grid: int, channels: int) -> np.ndarray:
    """Low-pass random field in ``[-1, 1]``: uniform noise on a ``grid x grid`` lattice, smoothly upsampled."""
    coarse = rng.uniform(-1.0, 1.0, size=(grid, grid, channels))
    rows = _interpolation_matrix(height, grid)
    cols = _interpolation_matrix(width, grid)
    along_rows = np.tensordot(rows, coarse, axes=(1, 0))  # (height, grid, channels)
    return np.tensordot(along_rows, cols, axes=(1, 1)).transpose(0, 2, 1)


def smooth_background(
    rng: np.random.Generator, height: int, width: int, *, amplitude: float = 28.0
) -> np.ndarray:
    """Muted random base colour plus two octaves of smooth per-channel noise, float32 ``(H, W, 3)``.

    The base colour has saturation <= 0.35 and value in [0.2, 0.5]; objects use the saturated, brighter
    :data:`PALETTE`, and background clutter reuses those object colours so colour alone does not separate
    objects from background.
    """
    base = np.asarray(
        hsv_to_rgb255(rng.uniform(0.0, 360.0), rng.uniform(0.0, 0.35), rng.uniform(0.2, 0.5)),
        dtype=np.float64,
    )
    field = amplitude * smooth_field(rng, height, width, 4, 3) + 0.5 * amplitude * smooth_field(
        rng, height, width, 9, 3
    )
    return np.clip(base + field, 0.0, 255.0).astype(np.float32)


def draw_stripes(canvas: np.ndarray, rng: np.random.Generator, ss: int = 2) -> None:
    """Background clutter: a patch of thin parallel lines at a random angle in a palette colour."""
    height, width = canvas.shape[:2]
    h = int(rng.integers(height // 4, height // 2 + 1))
    w = int(rng.integers(width // 4, width // 2 + 1))
    y0 = int(rng.integers(0, height - h + 1))
    x0 = int(rng.integers(0, width - w + 1))
    theta = rng.uniform(0.0, math.pi)
    period = rng.uniform(4.0, 8.0)
    line_width = rng.uniform(1.0, 1.6)
    offsets = (np.arange(ss) + 0.5) / ss
    xs = (np.arange(x0, x0 + w)[:, None] + offsets[None, :]).ravel()
    ys = (np.arange(y0, y0 + h)[:, None] + offsets[None, :]).ravel()
    phase = np.mod(xs[None, :] * math.cos(theta) + ys[:, None] * math.sin(theta), period)
    alpha = (phase < line_width).reshape(h, ss, w, ss).mean(axis=(1, 3), dtype=np.float32)
    alpha *= np.float32(rng.uniform(0.35, 0.7))
    colour = COLOUR_NAMES[int(rng.integers(len(COLOUR_NAMES)))]
    paint(canvas, Coverage(y0, x0, alpha), np.asarray(sample_rgb(rng, colour), dtype=np.float32))


def draw_blob(canvas: np.ndarray, rng: np.random.Generator) -> None:
    """Background clutter: an irregular lumpy blob (thresholded smooth noise) in a palette colour."""
    height, width = canvas.shape[:2]
    side = int(rng.integers(max(6, height // 9), max(7, height // 3) + 1))
    side = min(side, height, width)
    y0 = int(rng.integers(0, height - side + 1))
    x0 = int(rng.integers(0, width - side + 1))
    centre = (np.arange(side) + 0.5) / side * 2.0 - 1.0
    falloff = 1.0 - (centre[:, None] ** 2 + centre[None, :] ** 2)
    field = falloff + 0.9 * smooth_field(rng, side, side, 4, 1)[:, :, 0]
    alpha = np.clip((field - 0.35) * 4.0, 0.0, 1.0).astype(np.float32) * np.float32(rng.uniform(0.5, 0.85))
    colour = COLOUR_NAMES[int(rng.integers(len(COLOUR_NAMES)))]
    paint(canvas, Coverage(y0, x0, alpha), np.asarray(sample_rgb(rng, colour), dtype=np.float32))


def finish(canvas: np.ndarray, rng: np.random.Generator, noise_std: float) -> np.ndarray:
    """Add Gaussian sensor noise (skipped when ``noise_std`` is 0) and round to uint8."""
    if noise_std > 0:
        canvas = canvas + rng.normal(0.0, noise_std, size=canvas.shape).astype(np.float32)
    return np.clip(np.rint(canvas), 0, 255).astype(np.uint8)
