"""RandAugment as LAVIS's `blip_image_train` applies it: the training transform of the FlanT5
InstructBLIP models (the Vicuna ones train with `blip2_image_train`, crop and flip only).

After the random resized crop and the flip, two operations are drawn (with replacement) from ten;
each is applied with probability 0.5, at magnitude 5 of 10:

| operation | at magnitude 5 |
|---|---|
| Identity, AutoContrast, Equalize | no argument |
| Brightness, Sharpness | factor 1.0 (so, as in LAVIS, they leave the image as it is) |
| ShearX, ShearY | shear 0.15, sign drawn |
| TranslateX, TranslateY | 5 pixels, sign drawn |
| Rotate | 15 degrees about the centre, sign drawn |

Geometric operations fill what comes from outside the image with grey (128, 128, 128) and sample
bilinearly, with OpenCV's `warpAffine` geometry (pixel centres at integer coordinates). LAVIS runs
OpenCV; we run PIL with that geometry. Checked against OpenCV 5.0 by hand: pixels whose source lies
inside the image agree within one level, those from outside are the same grey, and only the thin
band where the source straddles the image's edge (under 2% of a 224 px view) differs. The
photometric operations are PIL's, which LAVIS re-implements (exactly for AutoContrast, Equalize and
Brightness; its Sharpness differs on the image border and wraps around where PIL clips, neither of
which matters at magnitude 5, where Sharpness is the identity). The draws come from the caller's
`numpy` generator, so a sample's view is a function of its seed.
"""

import numpy as np
import PIL.Image
import PIL.ImageEnhance
import PIL.ImageOps

OPERATIONS = (
    "Identity", "AutoContrast", "Brightness", "Sharpness", "Equalize", "ShearX", "ShearY", "TranslateX",
    "TranslateY", "Rotate",
)
MAX_MAGNITUDE = 10
FILL = (128, 128, 128)


def _with_pil(image: np.ndarray, operation) -> np.ndarray:
    return np.asarray(operation(PIL.Image.fromarray(image)))


def autocontrast(image: np.ndarray) -> np.ndarray:
    """Each channel stretched linearly so its darkest value is 0 and its brightest 255."""
    return _with_pil(image, PIL.ImageOps.autocontrast)


def equalize(image: np.ndarray) -> np.ndarray:
    return _with_pil(image, PIL.ImageOps.equalize)


def brightness(image: np.ndarray, factor: float) -> np.ndarray:
    if factor == 1.0:  # the identity
        return image
    return _with_pil(image, lambda pil: PIL.ImageEnhance.Brightness(pil).enhance(factor))


def sharpness(image: np.ndarray, factor: float) -> np.ndarray:
    """Blend with the image smoothed by [[1, 1, 1], [1, 5, 1], [1, 1, 1]] / 13 (borders kept)."""
    if factor == 1.0:  # the identity
        return image
    return _with_pil(image, lambda pil: PIL.ImageEnhance.Sharpness(pil).enhance(factor))


def warp(image: np.ndarray, matrix) -> np.ndarray:
    """OpenCV's `warpAffine(image, matrix, (W, H), borderValue=FILL)`: the output pixel (x, y) takes the
    input at matrix^-1 (x, y), sampled bilinearly (pixel centres at integer coordinates)."""
    forward = np.vstack([np.asarray(matrix, dtype=np.float64), [0.0, 0.0, 1.0]])
    (a, b, c), (d, e, f) = np.linalg.inv(forward)[:2]
    # PIL maps output pixel centres (x + 0.5, y + 0.5) and samples at the result minus 0.5
    data = (a, b, c + 0.5 - 0.5 * (a + b), d, e, f + 0.5 - 0.5 * (d + e))
    height, width = image.shape[:2]
    warped = PIL.Image.fromarray(image).transform(
        (width, height), PIL.Image.Transform.AFFINE, data, resample=PIL.Image.Resampling.BILINEAR, fillcolor=FILL
    )
    return np.asarray(warped)


def rotation_matrix(width: int, height: int, degrees: float) -> np.ndarray:
    """OpenCV's getRotationMatrix2D((W / 2, H / 2), degrees, 1): counter-clockwise on screen."""
    cos, sin = np.cos(np.radians(degrees)), np.sin(np.radians(degrees))
    cx, cy = width / 2, height / 2
    return np.array([[cos, sin, (1 - cos) * cx - sin * cy], [-sin, cos, sin * cx + (1 - cos) * cy]])


def apply(image: np.ndarray, name: str, magnitude: float, rng: np.random.Generator) -> np.ndarray:
    """One operation at `magnitude` (of MAX_MAGNITUDE); draws its sign from `rng` where it has one."""
    level = magnitude / MAX_MAGNITUDE
    height, width = image.shape[:2]
    if name == "Identity":
        return image
    if name == "AutoContrast":
        return autocontrast(image)
    if name == "Equalize":
        return equalize(image)
    if name in ("Brightness", "Sharpness"):
        factor = level * 1.8 + 0.1
        return brightness(image, factor) if name == "Brightness" else sharpness(image, factor)
    if name in ("ShearX", "ShearY"):
        shear = -level * 0.3 if rng.random() > 0.5 else level * 0.3
        return warp(image, [[1, shear, 0], [0, 1, 0]] if name == "ShearX" else [[1, 0, 0], [shear, 1, 0]])
    if name in ("TranslateX", "TranslateY"):
        offset = -level * 10.0 if rng.random() > 0.5 else level * 10.0
        return warp(image, [[1, 0, -offset], [0, 1, 0]] if name == "TranslateX" else [[1, 0, 0], [0, 1, -offset]])
    if name == "Rotate":
        degrees = -level * 30.0 if rng.random() < 0.5 else level * 30.0
        return warp(image, rotation_matrix(width, height, degrees))
    raise ValueError(f"unknown RandAugment operation {name!r}; known: {', '.join(OPERATIONS)}")


def random_augment(image: np.ndarray, rng: np.random.Generator, num_ops: int = 2, magnitude: float = 5,
                   probability: float = 0.5) -> np.ndarray:
    """`num_ops` operations drawn with replacement, each applied with `probability` (uint8 [H, W, 3] in
    and out). Draw order: the operations first, then per operation whether it applies, then its sign."""
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"random_augment expects a uint8 [H, W, 3] image, got {image.dtype} {image.shape}")
    chosen = rng.integers(0, len(OPERATIONS), size=num_ops)
    for index in chosen:
        if rng.random() > probability:
            continue
        image = apply(image, OPERATIONS[index], magnitude, rng)
    return image
