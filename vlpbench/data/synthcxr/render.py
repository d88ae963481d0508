"""SynthCXR's pixels: a chunk of drawn studies rendered as radiographs with their finding masks.

Vectorised over the chunk (numpy). :func:`render` builds the scene every painter shares (pixel
coordinates, the patient's body, lungs and hemidiaphragms: :class:`Scene`), paints the anatomy
(:func:`_anatomy`), then each local or device finding where it belongs (the ``_paint_*``
functions, which also set the finding's bit in the mask), then exposure and noise. The painters
run in a fixed order and some draw from ``rng`` (lung markings, the edema haze, a consolidation's
patchiness, the final noise): that order is part of the data, so it must not change without a
new :data:`~vlpbench.data.synthcxr.GENERATOR_VERSION`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import numpy as np

from vlpbench.data.synthcxr.studies import Studies
from vlpbench.data.synthcxr.vocabulary import BILATERAL, FINDINGS, LEFT, LOBES, LOCAL_FINDINGS, RIGHT

if TYPE_CHECKING:
    from vlpbench.data.synthcxr import SynthCXRConfig


def _interp_matrix(coarse: int, fine: int) -> np.ndarray:
    """[fine, coarse] linear interpolation weights (used to upsample smooth noise)."""
    pos = np.linspace(0, coarse - 1, fine)
    lo = np.floor(pos).astype(int).clip(0, coarse - 2)
    frac = pos - lo
    weights = np.zeros((fine, coarse), dtype=np.float32)
    weights[np.arange(fine), lo] = 1 - frac
    weights[np.arange(fine), lo + 1] = frac
    return weights


def _smooth_noise(rng: np.random.Generator, c: int, coarse: int, size: int) -> np.ndarray:
    """[c, size, size] noise: a coarse standard-normal grid upsampled bilinearly."""
    grid = rng.standard_normal((c, coarse, coarse)).astype(np.float32)
    w = _interp_matrix(coarse, size)
    return np.einsum("hk,ckl,wl->chw", w, grid, w, optimize=True)


def _col(a: np.ndarray) -> np.ndarray:
    """Per-sample scalars [c] → [c, 1, 1] for broadcasting over the image."""
    return a.astype(np.float32)[:, None, None]


def _ellipse(x: np.ndarray, y: np.ndarray, cx: np.ndarray, cy: np.ndarray, ax: np.ndarray, ay: np.ndarray) -> np.ndarray:
    """Normalised elliptic radius (< 1 inside)."""
    return ((x - cx) / ax) ** 2 + ((y - cy) / ay) ** 2


@dataclass
class Scene:
    """What every painter of one chunk reads: pixel coordinates, per-patient geometry ([c,1,1]
    arrays), the findings' contrast and size, and the body and lung regions."""

    studies: Studies
    difficulty: float
    c: int
    size: int
    x: np.ndarray  # [1, 1, W] in [-1, 1]
    y: np.ndarray  # [1, H, 1] in [-1, 1]
    cx: np.ndarray
    cy: np.ndarray
    s: np.ndarray  # the patient's scale
    contrast: np.ndarray  # [c, F]
    size_factor: float
    body: np.ndarray
    lung_cx: dict[int, np.ndarray]
    lung_ax: dict[int, np.ndarray]
    lung_cy: np.ndarray
    lung_ay: np.ndarray
    base: dict[int, np.ndarray]  # per side, the height of the hemidiaphragm
    lungs: dict[int, np.ndarray]  # per side, bool [c, H, W]
    lung: np.ndarray

    def side_masks(self, k: int) -> dict[int, np.ndarray]:
        """Per side, [c,1,1] bool: finding ``k`` is present on that side (or bilateral)."""
        side_of = self.studies.sides[:, k]
        return {side: _col((side_of == side) | (side_of == BILATERAL)) > 0 for side in (RIGHT, LEFT)}

    def severity(self, k: int) -> np.ndarray:
        """[c,1,1] severity of finding ``k`` (0 where absent)."""
        return _col(self.studies.severity[:, k])

    def blend(self, k: int) -> np.ndarray:
        """[c,1,1] contrast of finding ``k``: how far a painted region moves towards its value."""
        return _col(self.contrast[:, k])


def _scene(studies: Studies, config: SynthCXRConfig) -> Scene:
    """The chunk's coordinates and geometry. Lungs: the patient's right lung on the image's left,
    their bases cut by the hemidiaphragms."""
    c, size = len(studies.labels), config.image_size
    a = studies.anatomy
    lin = np.linspace(-1, 1, size, dtype=np.float32)
    y, x = lin[None, :, None], lin[None, None, :]
    cx, cy, s = _col(a["cx"]), _col(a["cy"]), _col(a["scale"])
    contrast = (1.0 - 0.55 * config.difficulty) * (0.75 + 0.25 * studies.severity.astype(np.float32))
    size_factor = 1.0 - 0.35 * config.difficulty
    body = _ellipse(x, y, cx, cy + 0.1, 0.92 * s, 1.15 * s) < 1
    lung_cx = {RIGHT: cx - 0.37 * s, LEFT: cx + 0.37 * s}
    lung_ax = {RIGHT: 0.29 * s, LEFT: 0.27 * s}
    lung_cy, lung_ay = cy - 0.08, 0.58 * s
    base = {RIGHT: cy + 0.38 * s - 0.02 + _col(a["diaphragm"]), LEFT: cy + 0.40 * s + _col(a["diaphragm"])}
    lungs = {}
    for side in (RIGHT, LEFT):
        dome = base[side] - 0.22 * ((x - lung_cx[side]) / lung_ax[side]) ** 2 + 0.1
        lungs[side] = (_ellipse(x, y, lung_cx[side], lung_cy, lung_ax[side], lung_ay) < 1) & (y < dome)
    return Scene(studies, config.difficulty, c, size, x, y, cx, cy, s, contrast, size_factor, body,
                 lung_cx, lung_ax, lung_cy, lung_ay, base, lungs, lungs[RIGHT] | lungs[LEFT])


@dataclass
class Canvas:
    """The image being painted and the mask bits of the local findings painted so far."""

    image: np.ndarray  # float32 [c, H, W]
    mask_bits: np.ndarray  # uint8 [c, H, W]

    def paint(self, region: np.ndarray, finding: str, value: np.ndarray, blend: np.ndarray) -> None:
        """Blend ``value`` into ``region`` and mark the region as ``finding`` in the masks."""
        self.image = np.where(region, self.image * (1 - blend) + value * blend, self.image)
        self.mask_bits[region] |= np.uint8(1 << LOCAL_FINDINGS.index(finding))


def _anatomy(rng: np.random.Generator, g: Scene) -> np.ndarray:
    """Body, lungs with vascular markings, edema (a global finding), ribs, heart, mediastinum, spine."""
    studies, x, y, cx, cy, s = g.studies, g.x, g.y, g.cx, g.cy, g.s
    image = np.where(g.body, 0.38, 0.04).astype(np.float32)
    markings = 0.035 * _smooth_noise(rng, g.c, max(4, g.size // 6), g.size)
    image = np.where(g.lung, 0.13 + markings, image)

    # Edema: bilateral perihilar haze and interstitial texture.
    k = FINDINGS.index("edema")
    edema = _col(studies.labels[:, k] * g.contrast[:, k])
    hilum_dist = np.minimum(_ellipse(x, y, g.lung_cx[RIGHT] + 0.12 * s, cy, 0.3 * s, 0.35 * s),
                            _ellipse(x, y, g.lung_cx[LEFT] - 0.12 * s, cy, 0.3 * s, 0.35 * s))
    haze = 0.22 * np.exp(-hilum_dist) + 0.06 * np.abs(_smooth_noise(rng, g.c, max(4, g.size // 4), g.size))
    image += np.where(g.lung, edema * haze, 0.0)

    # Ribs: curved periodic bands over the lungs (bone is denser than lung).
    a = studies.anatomy
    curve = y - 0.3 * (x - cx) ** 2  # posterior ribs slope downwards laterally
    ribs = (0.5 + 0.5 * np.cos(2 * np.pi * (curve * _col(a["rib_freq"]) / s + _col(a["rib_phase"])))) ** 6
    image += np.where(g.lung, 0.09 * ribs, 0.0)

    # Heart (shifted to the patient's left) and mediastinum; cardiomegaly widens the heart.
    k = FINDINGS.index("cardiomegaly")
    cardio = studies.labels[:, k] * (1.25 + 0.25 * studies.severity[:, k] * (1.0 - 0.4 * g.difficulty))
    heart_width = _col(a["heart"] * np.where(cardio > 0, cardio, 1.0))
    heart = _ellipse(x, y, cx + 0.09 * s, cy + 0.22 * s, 0.22 * s * heart_width, 0.2 * s) < 1
    mediastinum = (np.abs(x - cx) < 0.09 * s) & (y < cy + 0.25 * s) & g.body
    image = np.where(heart | mediastinum, 0.62, image)
    spine = np.abs(x - cx) < 0.045 * s
    return np.where(spine & g.body, image + 0.1, image)


def _paint_effusion(rng: np.random.Generator, g: Scene, canvas: Canvas) -> None:
    """Pleural effusion: fluid fills the base below a meniscus that rises towards the lateral wall."""
    k = FINDINGS.index("pleural_effusion")
    for side, on in g.side_masks(k).items():
        height = (0.12 + 0.22 * g.severity(k)) * g.s * g.size_factor
        lateral = np.abs(g.x - g.lung_cx[side]) / g.lung_ax[side]
        level = g.base[side] - height - 0.12 * g.s * lateral ** 2
        region = on & g.lungs[side] & (g.y > level)
        canvas.paint(region, "pleural_effusion", np.float32(0.55), g.blend(k) * np.ones_like(canvas.image))


def _paint_atelectasis(rng: np.random.Generator, g: Scene, canvas: Canvas) -> None:
    """Atelectasis: a plate-like band in the lower zone."""
    k = FINDINGS.index("atelectasis")
    for side, on in g.side_masks(k).items():
        centre_y = g.base[side] - 0.18 * g.s
        band_y = centre_y + _col(g.studies.anatomy["atel_tilt"]) * (g.x - g.lung_cx[side])
        thickness = (0.035 + 0.03 * g.severity(k)) * g.s * g.size_factor
        region = (on & g.lungs[side] & (np.abs(g.y - band_y) < thickness)
                  & (np.abs(g.x - g.lung_cx[side]) < 0.7 * g.lung_ax[side]))
        canvas.paint(region, "atelectasis", np.float32(0.5), g.blend(k) * np.ones_like(canvas.image))


def _paint_consolidation(rng: np.random.Generator, g: Scene, canvas: Canvas) -> None:
    """Consolidation: a patchy opacity confined to one lobe (draws its patchiness per side)."""
    k = FINDINGS.index("consolidation")
    zone = g.studies.zone[:, k]
    blob = g.studies.anatomy["blob"]
    for side, on in g.side_masks(k).items():
        n_lobes = len(LOBES[side])
        lobe_y = g.lung_cy - g.lung_ay + (2 * g.lung_ay) * (_col(zone).clip(0, n_lobes - 1) + 0.5) / n_lobes
        radius = (0.13 + 0.08 * g.severity(k)) * g.s * g.size_factor
        field_ = np.zeros_like(canvas.image)
        for j in range(3):
            ox, oy = _col(blob[:, j, 0]) * 0.06 * g.s, _col(blob[:, j, 1]) * 0.06 * g.s
            field_ += np.exp(-((g.x - g.lung_cx[side] - ox) ** 2 + (g.y - lobe_y - oy) ** 2) / (2 * radius ** 2))
        patchy = field_ + 0.25 * _smooth_noise(rng, g.c, max(4, g.size // 8), g.size)
        lobe_band = np.abs(g.y - lobe_y) < g.lung_ay / n_lobes
        region = on & g.lungs[side] & lobe_band & (patchy > 1.0)
        canvas.paint(region, "consolidation", np.float32(0.52), g.blend(k) * np.ones_like(canvas.image))


def _paint_nodule(rng: np.random.Generator, g: Scene, canvas: Canvas) -> None:
    """Nodule: a small round opacity in one zone of one lung."""
    k = FINDINGS.index("nodule")
    a = g.studies.anatomy
    for side, on in g.side_masks(k).items():
        zone_y = (g.lung_cy - g.lung_ay * 0.6 + g.lung_ay * 0.6 * _col(g.studies.zone[:, k])
                  + _col(a["nodule_dy"]) * 0.15 * g.s)
        zone_x = g.lung_cx[side] + _col(a["nodule_dx"]) * 0.5 * g.lung_ax[side]
        radius = (0.06 + 0.04 * g.severity(k)) * g.s * g.size_factor
        dist = np.sqrt((g.x - zone_x) ** 2 + (g.y - zone_y) ** 2) / radius
        region = on & g.lungs[side] & (dist < 1)
        canvas.paint(region, "nodule", np.float32(0.7), g.blend(k) * (1.0 - 0.4 * dist ** 2))


def _paint_pneumothorax(rng: np.random.Generator, g: Scene, canvas: Canvas) -> None:
    """Pneumothorax: at the apex, a lucent rim without lung markings behind a visible pleural line."""
    k = FINDINGS.index("pneumothorax")
    for side, on in g.side_masks(k).items():
        outward = -1.0 if side == RIGHT else 1.0
        depth = (0.18 + 0.25 * g.severity(k) * _col(g.studies.anatomy["ptx_size"])) * g.s * g.size_factor
        apex_y = g.lung_cy - g.lung_ay
        rim = _ellipse(g.x, g.y, g.lung_cx[side] + outward * 0.35 * g.lung_ax[side], apex_y + 0.05,
                       g.lung_ax[side] * 0.9, depth * 2.2)
        region = on & g.lungs[side] & (rim < 1)
        pleural_line = on & g.lungs[side] & (np.abs(rim - 1) < 0.12)
        canvas.image = np.where(pleural_line, canvas.image + 0.18 * g.blend(k), canvas.image)
        canvas.paint(region, "pneumothorax", np.float32(0.05), g.blend(k) * np.ones_like(canvas.image))


def _paint_devices(rng: np.random.Generator, g: Scene, canvas: Canvas) -> None:
    """Support devices: a bright tube from the neck down to a tip above the carina (no mask)."""
    k = FINDINGS.index("support_devices")
    a = g.studies.anatomy
    on = _col(g.studies.labels[:, k].astype(np.float32)) > 0
    tube = on & (np.abs(g.x - g.cx - _col(a["tube_x"]) - 0.05 * (g.y + 1)) < 0.022) & (g.y < g.cy + _col(a["tube_tip"]))
    canvas.image = np.where(tube, 0.9, canvas.image)


#: The finding painters, in the order they paint (and draw from the generator).
PAINTERS: tuple[Callable[[np.random.Generator, Scene, Canvas], None], ...] = (
    _paint_effusion, _paint_atelectasis, _paint_consolidation, _paint_nodule, _paint_pneumothorax, _paint_devices)


def _expose(rng: np.random.Generator, g: Scene, image: np.ndarray) -> np.ndarray:
    """Exposure, smooth inhomogeneity and quantum noise; the result clipped to [0, 1]."""
    a = g.studies.anatomy
    image = image * _col(a["exposure"]) + 0.04 * _smooth_noise(rng, g.c, 4, g.size)
    noise_sd = (0.015 + 0.05 * g.difficulty) * _col(a["noise"])
    image += noise_sd * rng.standard_normal(image.shape, dtype=np.float32)
    return np.clip(image, 0.0, 1.0).astype(np.float32)


def render(rng: np.random.Generator, studies: Studies, config: SynthCXRConfig) -> tuple[np.ndarray, np.ndarray]:
    """Images [c,H,W] in [0,1] and mask bits [c,H,W] of one chunk of studies."""
    scene = _scene(studies, config)
    canvas = Canvas(_anatomy(rng, scene), np.zeros((scene.c, scene.size, scene.size), dtype=np.uint8))
    for painter in PAINTERS:
        painter(rng, scene, canvas)
    return _expose(rng, scene, canvas.image), canvas.mask_bits


def boxes(mask_bits: np.ndarray, offset: int) -> np.ndarray:
    """Bounding boxes (pixel corners, inclusive-exclusive) of every non-empty local mask."""
    rows = []
    for j, finding in enumerate(LOCAL_FINDINGS):
        mask = (mask_bits >> j) & 1 == 1
        has = mask.any((1, 2))
        if not has.any():
            continue
        ys, xs = mask.any(2), mask.any(1)  # [c, H], [c, W]
        y0, y1 = ys.argmax(1), ys.shape[1] - ys[:, ::-1].argmax(1)
        x0, x1 = xs.argmax(1), xs.shape[1] - xs[:, ::-1].argmax(1)
        sample = np.nonzero(has)[0]
        rows.append(np.stack([sample + offset, np.full(len(sample), FINDINGS.index(finding)),
                              x0[has], y0[has], x1[has], y1[has]], 1))
    return np.concatenate(rows).astype(np.float32) if rows else np.zeros((0, 6), np.float32)

