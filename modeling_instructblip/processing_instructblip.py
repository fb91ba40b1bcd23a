"""InstructBLIP input processing: images, videos and text in, model-ready batches out.

Ships to the Hub with the model (`trust_remote_code`): absolute `transformers` imports, sibling-relative imports,
torch, numpy and PIL only (no torchvision). Two classes:

- `InstructBlipImageProcessor`: the paper's eval transform (any PIL mode to RGB, straight bicubic resize to 224x224,
  CLIP normalisation) and its train transform (RandomResizedCrop(scale 0.5-1) + horizontal flip), side by side, for
  single images and for videos (a sequence of frames per sample).
- `InstructBlipProcessor`: puts `num_query_tokens` `<image>` placeholders (per frame) in front of the LLM tokens,
  tokenizes the instruction for the Q-Former, builds training batches with `labels` masked as the paper does, tokenizes
  candidate answers for ranking, and decodes what `generate` returns.

Layouts (N = num_query_tokens, T = frames per sample, T = 1 for images):

    inference, right padding:  [IMG x N*T][BOS instruction][PAD ...]
    inference, left padding:   [IMG x N*T][PAD ...][BOS instruction]       (the image tokens are never padded)
    training, decoder-only:    [IMG x N*T][BOS instruction][target EOS][PAD ...]   labels: -100 except target EOS
    training, encoder-decoder: [IMG x N*T][instruction </s>][PAD ...]              labels: [target </s>][-100 ...]

This module must not load models or touch the network: it only turns raw inputs into tensors and ids back into text.
"""

import json
import math
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import PIL.Image
import torch
import transformers
from transformers import AutoTokenizer
from transformers.image_processing_utils import BaseImageProcessor, BatchFeature
from transformers.processing_utils import ProcessorMixin
from transformers.tokenization_utils_base import AddedToken
from transformers.utils import cached_file, logging


logger = logging.get_logger(__name__)

OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
IGNORE_INDEX = -100  # label value the loss skips


# ------------------------------------------------------------------------------------------------------------------
# Raw image -> RGB PIL image
# ------------------------------------------------------------------------------------------------------------------


def _is_image_like(obj) -> bool:
    return isinstance(obj, (PIL.Image.Image, np.ndarray, torch.Tensor))


def _describe(obj) -> str:
    if isinstance(obj, (np.ndarray, torch.Tensor)):
        return f"{type(obj).__name__} of shape {tuple(obj.shape)}"
    return type(obj).__name__


def _to_uint8(array: np.ndarray, where: str) -> np.ndarray:
    """Pixel values of any numeric dtype to uint8 in [0, 255]; 16-bit data is scaled, not clipped."""
    if array.dtype == np.uint8:
        return array
    if array.dtype == np.bool_:
        return array.astype(np.uint8) * 255
    if array.dtype == np.uint16 or array.dtype == np.dtype(">u2"):
        # 65535 -> 255: x / 257, rounded
        return ((array.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    if np.issubdtype(array.dtype, np.integer):
        low, high = int(array.min()), int(array.max())
        if low < 0 or high > 255:
            raise ValueError(
                f"{where}: integer pixel values must lie in [0, 255] (uint16 arrays are read as 16-bit), "
                f"got values in [{low}, {high}]"
            )
        return array.astype(np.uint8)
    if np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(array).all():
            raise ValueError(f"{where}: the image contains NaN or infinite values")
        low, high = float(array.min()), float(array.max())
        if low >= 0.0 and high <= 1.0:
            return np.round(array.astype(np.float64) * 255).astype(np.uint8)
        if low >= 0.0 and high <= 255.0 and np.array_equal(array, np.round(array)):
            return array.astype(np.uint8)
        raise ValueError(
            f"{where}: float pixel values must lie in [0, 1] (or be whole numbers in [0, 255]), "
            f"got values in [{low}, {high}]"
        )
    raise TypeError(f"{where}: unsupported pixel dtype {array.dtype}; expected an integer, bool or float array")


def _high_bit_depth_to_l(image: PIL.Image.Image) -> PIL.Image.Image:
    """Modes I;16*, I and F to 8-bit L. PIL's own convert clips them to 255 instead of scaling."""
    array = np.asarray(image)
    if image.mode.startswith("I;16"):
        return PIL.Image.fromarray(_to_uint8(array.astype(np.uint16), "image"), mode="L")
    if image.mode == "I":
        # 32-bit ints hold 16-bit scans (older PIL opens 16-bit PNGs as "I"); 8-bit content stays as it is
        array = np.clip(array, 0, 65535)
        array = array.astype(np.uint16) if array.max() > 255 else array.astype(np.uint8)
        return PIL.Image.fromarray(_to_uint8(array, "image"), mode="L")
    array = np.nan_to_num(array.astype(np.float64), nan=0.0, posinf=255.0, neginf=0.0)
    array = array * 255 if array.size and array.max() <= 1.0 else array
    return PIL.Image.fromarray(np.round(np.clip(array, 0, 255)).astype(np.uint8), mode="L")


def _lab_to_rgb(image: PIL.Image.Image) -> PIL.Image.Image:
    try:
        from PIL import ImageCms
    except ImportError as error:  # Pillow built without littlecms
        raise ValueError("converting a LAB image to RGB needs PIL.ImageCms (littlecms)") from error

    transform = ImageCms.buildTransform(ImageCms.createProfile("LAB"), ImageCms.createProfile("sRGB"), "LAB", "RGB")
    return ImageCms.applyTransform(image, transform)


def pil_to_rgb(image: PIL.Image.Image) -> PIL.Image.Image:
    """Any PIL mode to RGB. Transparency (RGBA, LA, PA, P or L with a transparent colour) is composited on white, as
    transformers' `convert_to_rgb` does; 16/32-bit and float greyscale are scaled to 8 bits, not clipped."""
    mode = image.mode
    if mode == "RGB":
        return image
    if mode.startswith("I") or mode == "F":
        return _high_bit_depth_to_l(image).convert("RGB")
    if mode == "La":  # premultiplied: PIL converts it to nothing but LA
        image, mode = image.convert("LA"), "LA"
    if mode == "LAB":  # PIL's plain convert copies the L, a, b bytes into R, G, B
        return _lab_to_rgb(image)
    try:
        if image.has_transparency_data:
            rgba = image.convert("RGBA")
            background = PIL.Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            return PIL.Image.alpha_composite(background, rgba).convert("RGB")
        return image.convert("RGB")
    except (ValueError, OSError) as error:
        raise ValueError(f"cannot convert a PIL image of mode {mode!r} to RGB: {error}") from error


def array_to_rgb(array, input_data_format: str | None = None, where: str = "image") -> PIL.Image.Image:
    """A numpy array or torch tensor ([H, W], [H, W, C] or [C, H, W], C in {1, 3, 4}) to an RGB PIL image.

    Channel order: `input_data_format` ("channels_last" / "channels_first") when given; otherwise the layout whose
    channel axis has 1, 3 or 4 entries, preferring channels-last for numpy arrays and channels-first for tensors
    when both fit. 4 channels are RGBA, composited on white.
    """
    channels_first_default = isinstance(array, torch.Tensor)
    if isinstance(array, torch.Tensor):
        array = array.detach().cpu()
        if array.dtype in (torch.bfloat16, torch.float16):
            array = array.float()
        array = array.numpy()
    if array.ndim == 2:
        array = array[:, :, None]
    elif array.ndim == 3:
        last_ok, first_ok = array.shape[-1] in (1, 3, 4), array.shape[0] in (1, 3, 4)
        if input_data_format in ("channels_first", "first"):
            channels_first = True
        elif input_data_format in ("channels_last", "last"):
            channels_first = False
        elif input_data_format is not None:
            raise ValueError(
                f"input_data_format must be 'channels_first', 'channels_last' or None, got {input_data_format!r}"
            )
        elif last_ok and first_ok:
            channels_first = channels_first_default
        elif last_ok or first_ok:
            channels_first = first_ok
        else:
            raise ValueError(
                f"{where}: expected an array of shape (H, W), (H, W, C) or (C, H, W) with C in {{1, 3, 4}}, "
                f"got shape {tuple(array.shape)}"
            )
        if channels_first:
            array = np.moveaxis(array, 0, -1)
        if array.shape[-1] not in (1, 3, 4):
            raise ValueError(
                f"{where}: expected 1, 3 or 4 channels ({input_data_format}), got shape {tuple(array.shape)}"
            )
    else:
        raise ValueError(
            f"{where}: expected an array of shape (H, W), (H, W, C) or (C, H, W), got shape {tuple(array.shape)}"
        )
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(f"{where}: the image is empty (shape {tuple(array.shape)})")
    array = _to_uint8(array, where)
    if array.shape[-1] == 1:
        array = np.repeat(array, 3, axis=-1)
    elif array.shape[-1] == 4:
        alpha = array[..., 3:4].astype(np.float64) / 255
        array = np.round(array[..., :3] * alpha + 255 * (1 - alpha)).astype(np.uint8)
    return PIL.Image.fromarray(np.ascontiguousarray(array), mode="RGB")


def to_rgb_image(image, input_data_format: str | None = None, where: str = "image") -> PIL.Image.Image:
    if isinstance(image, PIL.Image.Image):
        if image.width == 0 or image.height == 0:
            raise ValueError(f"{where}: the image is empty ({image.width}x{image.height})")
        return pil_to_rgb(image)
    if isinstance(image, (np.ndarray, torch.Tensor)):
        return array_to_rgb(image, input_data_format, where)
    raise TypeError(f"{where}: expected a PIL.Image.Image, a numpy array or a torch tensor, got {_describe(image)}")


def random_resized_crop_box(width: int, height: int, scale, ratio, rng: np.random.Generator):
    """torchvision's `RandomResizedCrop.get_params`, drawn from a numpy Generator: 10 tries at a box with a random
    area fraction in `scale` and a log-uniform aspect ratio in `ratio`, else the largest centred box within `ratio`.
    Returns a PIL box (left, top, right, bottom)."""
    area = width * height
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target_area = area * rng.uniform(scale[0], scale[1])
        aspect_ratio = math.exp(rng.uniform(log_ratio[0], log_ratio[1]))
        w = int(round(math.sqrt(target_area * aspect_ratio)))
        h = int(round(math.sqrt(target_area / aspect_ratio)))
        if 0 < w <= width and 0 < h <= height:
            top = int(rng.integers(0, height - h + 1))
            left = int(rng.integers(0, width - w + 1))
            return left, top, left + w, top + h
    in_ratio = width / height
    if in_ratio < min(ratio):
        w, h = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        w, h = int(round(height * max(ratio))), height
    else:
        w, h = width, height
    top, left = (height - h) // 2, (width - w) // 2
    return left, top, left + w, top + h


def _size_hw(size) -> tuple[int, int]:
    if isinstance(size, int):
        height = width = size
    elif isinstance(size, dict) or hasattr(size, "height"):
        get = size.get if isinstance(size, dict) else lambda key: getattr(size, key, None)
        height, width = get("height"), get("width")
    elif isinstance(size, Sequence) and len(size) == 2:
        height, width = size
    else:
        raise ValueError(f"size must be an int, (height, width) or {{'height': h, 'width': w}}, got {size!r}")
    if not (isinstance(height, int) and isinstance(width, int) and height > 0 and width > 0):
        raise ValueError(f"size must hold two positive ints (height, width), got {size!r}")
    return height, width


# ------------------------------------------------------------------------------------------------------------------
# Image processor
# ------------------------------------------------------------------------------------------------------------------


_THREAD_POOL = {"pid": None, "pool": None}


def _map_in_threads(function, items) -> None:
    """Run `function` over `items` on a per-process thread pool (one thread per core, at most 8), or
    inline for a single item. A pool inherited through fork is not reused: its threads did not survive."""
    workers = min(8, os.cpu_count() or 1)
    if len(items) < 2 or workers < 2:
        for item in items:
            function(item)
        return
    if _THREAD_POOL["pid"] != os.getpid():
        _THREAD_POOL.update(pid=os.getpid(), pool=ThreadPoolExecutor(workers, thread_name_prefix="instructblip-images"))
    for _ in _THREAD_POOL["pool"].map(function, items):  # re-raises the first error, with its message
        pass


class InstructBlipImageProcessor(BaseImageProcessor):
    r"""The paper's image transforms, on PIL uint8 images with one vectorised numpy normalisation per batch.

    Eval (`train=False`): convert to RGB, resize straight to `size` (bicubic, no crop, aspect ratio not kept),
    rescale by `rescale_factor`, normalise with `image_mean` / `image_std` (OpenAI CLIP's). Matches transformers'
    `BlipImageProcessor(size=224, resample=BICUBIC, CLIP mean/std, do_convert_rgb=True)` (its PIL backend).

    Train (`train=True`): RandomResizedCrop(`size`, scale=`train_scale`, ratio=`train_ratio`, bicubic) then a
    horizontal flip with probability `train_flip_prob`, then the same normalisation. Reproducible with `seed` or a
    `numpy.random.Generator`. All frames of one video get the same crop and flip.

    Args:
        size (`int` or `dict`, *optional*, defaults to `{"height": 224, "width": 224}`): output size.
        resample (`int`, *optional*, defaults to `PIL.Image.BICUBIC`): PIL resampling filter.
        rescale_factor (`float`, *optional*, defaults to `1/255`): uint8 to [0, 1].
        image_mean, image_std (`tuple[float]`, *optional*): per-channel normalisation, OpenAI CLIP's by default.
        train_scale (`tuple[float, float]`, *optional*, defaults to `(0.5, 1.0)`): crop area fraction range.
        train_ratio (`tuple[float, float]`, *optional*, defaults to `(3/4, 4/3)`): crop aspect ratio range.
        train_flip_prob (`float`, *optional*, defaults to 0.5): horizontal flip probability.
    """

    model_input_names = ["pixel_values"]

    def __init__(
        self,
        size: int | dict[str, int] | None = None,
        resample: int = PIL.Image.Resampling.BICUBIC,
        rescale_factor: float = 1 / 255,
        image_mean: Sequence[float] | None = None,
        image_std: Sequence[float] | None = None,
        train_scale: Sequence[float] = (0.5, 1.0),
        train_ratio: Sequence[float] = (3 / 4, 4 / 3),
        train_flip_prob: float = 0.5,
        **kwargs,
    ):
        # transformers' BlipImageProcessor switches (in Salesforce/instructblip-* configs): all steps always run here
        for step in ("do_convert_rgb", "do_resize", "do_rescale", "do_normalize"):
            if kwargs.pop(step, True) is False:
                raise ValueError(
                    f"{type(self).__name__} always converts, resizes, rescales and normalises: got {step}=False"
                )
        super().__init__(**kwargs)
        height, width = _size_hw(size if size is not None else 224)
        self.size = {"height": height, "width": width}
        self.resample = int(resample)
        self.rescale_factor = float(rescale_factor)
        self.image_mean = tuple(float(m) for m in (image_mean if image_mean is not None else OPENAI_CLIP_MEAN))
        self.image_std = tuple(float(s) for s in (image_std if image_std is not None else OPENAI_CLIP_STD))
        if len(self.image_mean) != 3 or len(self.image_std) != 3:
            raise ValueError(f"image_mean and image_std need 3 values, got {self.image_mean} and {self.image_std}")
        self.train_scale = tuple(float(s) for s in train_scale)
        self.train_ratio = tuple(float(r) for r in train_ratio)
        self.train_flip_prob = float(train_flip_prob)

    # -- input structure ---------------------------------------------------------------------------------------

    @staticmethod
    def make_image_list(images, name: str = "images") -> list:
        """One image, a batch array [B, H, W, C] / [B, C, H, W], or a list of images -> a list of images."""
        if isinstance(images, PIL.Image.Image):
            return [images]
        if isinstance(images, (np.ndarray, torch.Tensor)):
            if images.ndim in (2, 3):
                return [images]
            if images.ndim == 4:
                if images.shape[0] == 0:
                    raise ValueError(f"{name} is an empty batch (shape {tuple(images.shape)})")
                return list(images)
            raise ValueError(
                f"{name}: expected an image array of 2 or 3 dimensions, or a batch of 4, got shape "
                f"{tuple(images.shape)}; pass frame sequences as videos="
            )
        if isinstance(images, (list, tuple)):
            if len(images) == 0:
                raise ValueError(f"{name} is an empty list; pass at least one image")
            for index, image in enumerate(images):
                if isinstance(image, (list, tuple)):
                    raise TypeError(
                        f"{name}[{index}] is a {type(image).__name__}: pass one image per sample, "
                        "or frame sequences as videos="
                    )
                if not _is_image_like(image):
                    raise TypeError(
                        f"{name}[{index}]: expected a PIL.Image.Image, a numpy array or a torch tensor, "
                        f"got {_describe(image)}"
                    )
            return list(images)
        raise TypeError(
            f"{name}: expected a PIL.Image.Image, a numpy array, a torch tensor or a list of them, "
            f"got {_describe(images)}"
        )

    @staticmethod
    def make_video_list(videos, name: str = "videos") -> list[list]:
        """A list of samples, each a list of T frames or an array [T, H, W, C] / [T, C, H, W] (a single such array,
        or a 5-d batch of them, is accepted too) -> a list of lists of frames, T equal across samples."""
        if isinstance(videos, (np.ndarray, torch.Tensor)):
            if videos.ndim == 4:
                videos = [videos]
            elif videos.ndim == 5:
                videos = list(videos)
            else:
                raise ValueError(
                    f"{name}: expected a video array [T, H, W, C] or a batch [B, T, H, W, C], got shape "
                    f"{tuple(videos.shape)}"
                )
        if not isinstance(videos, (list, tuple)):
            raise TypeError(
                f"{name}: expected a list of videos (lists of frames or 4-d arrays), got {_describe(videos)}"
            )
        if len(videos) == 0:
            raise ValueError(f"{name} is an empty list; pass at least one video")
        samples = []
        for index, video in enumerate(videos):
            if isinstance(video, (np.ndarray, torch.Tensor)):
                if video.ndim != 4:
                    raise ValueError(
                        f"{name}[{index}]: expected a 4-d array of frames [T, H, W, C] or [T, C, H, W], got shape "
                        f"{tuple(video.shape)}"
                    )
                frames = list(video)
            elif isinstance(video, (list, tuple)):
                frames = list(video)
                for frame_index, frame in enumerate(frames):
                    if not _is_image_like(frame):
                        raise TypeError(
                            f"{name}[{index}][{frame_index}]: expected a PIL.Image.Image, a numpy array or a torch "
                            f"tensor, got {_describe(frame)}"
                        )
            else:
                raise TypeError(
                    f"{name}[{index}]: expected a list of frames or a 4-d array, got {_describe(video)}"
                )
            if len(frames) == 0:
                raise ValueError(f"{name}[{index}] has no frames")
            if samples and len(frames) != len(samples[0]):
                raise ValueError(
                    f"{name}: every video needs the same number of frames, got {len(samples[0])} for {name}[0] "
                    f"and {len(frames)} for {name}[{index}]"
                )
            samples.append(frames)
        return samples

    # -- transforms ---------------------------------------------------------------------------------------------

    def eval_transform(self, image: PIL.Image.Image, size: tuple[int, int], resample: int) -> np.ndarray:
        """RGB PIL image -> uint8 [H, W, 3]: straight resize, no crop."""
        height, width = size
        if image.size != (width, height):
            image = image.resize((width, height), resample=resample)
        return np.asarray(image)

    def train_transform(
        self, image: PIL.Image.Image, size: tuple[int, int], resample: int, box: tuple, flip: bool
    ) -> np.ndarray:
        """RGB PIL image -> uint8 [H, W, 3]: crop `box` (from `random_resized_crop_box`), resize, maybe flip."""
        height, width = size
        array = np.asarray(image.crop(box).resize((width, height), resample=resample))
        return array[:, ::-1] if flip else array

    @staticmethod
    def normalization(rescale_factor: float, image_mean, image_std) -> tuple[np.ndarray, np.ndarray]:
        """(scale, offset) per channel, float32: (x * rescale_factor - mean) / std == x * scale + offset."""
        mean, std = np.asarray(image_mean, dtype=np.float64), np.asarray(image_std, dtype=np.float64)
        return (rescale_factor / std).astype(np.float32), (-mean / std).astype(np.float32)

    @staticmethod
    def normalize_into(pixels: np.ndarray, out: np.ndarray, scale: np.ndarray, offset: np.ndarray) -> None:
        """uint8 [H, W, 3] -> `out`, float32 [3, H, W]: x * scale + offset per channel, written in place
        (numpy releases the GIL here, so images normalise in parallel on the thread pool)."""
        for channel in range(3):
            np.multiply(pixels[..., channel], scale[channel], out=out[channel], dtype=np.float32)
            out[channel] += offset[channel]

    def normalize_batch(self, pixels: np.ndarray, rescale_factor: float, image_mean, image_std) -> np.ndarray:
        """uint8 [..., H, W, 3] -> float32 [..., 3, H, W], (x * rescale_factor - mean) / std."""
        scale, offset = self.normalization(rescale_factor, image_mean, image_std)
        flat = pixels.reshape(-1, *pixels.shape[-3:])
        out = np.empty((flat.shape[0], 3, *pixels.shape[-3:-1]), dtype=np.float32)
        for pixel, target in zip(flat, out):
            self.normalize_into(pixel, target, scale, offset)
        return out.reshape(*pixels.shape[:-3], 3, *pixels.shape[-3:-1])

    def preprocess(
        self,
        images=None,
        videos=None,
        train: bool = False,
        generator: np.random.Generator | None = None,
        seed: int | None = None,
        size: int | dict[str, int] | None = None,
        resample: int | None = None,
        rescale_factor: float | None = None,
        image_mean: Sequence[float] | None = None,
        image_std: Sequence[float] | None = None,
        input_data_format: str | None = None,
        return_tensors: str | None = None,
        **kwargs,
    ) -> BatchFeature:
        r"""
        Args:
            images: a PIL image, numpy array or torch tensor ([H, W], [H, W, C] or [C, H, W]; uint8, uint16, bool,
                or float in [0, 1]), a batch array [B, ...], or a list of those.
            videos: a list of samples, each a list of T frames or an array [T, H, W, C] / [T, C, H, W].
            train (`bool`): apply the train transform (random resized crop + flip) instead of the eval one.
            generator / seed: randomness of the train transform (a `numpy.random.Generator`, or a seed for one).
            input_data_format: "channels_first" or "channels_last" for ambiguous arrays.
            return_tensors: "pt", "np" or None (numpy).

        Returns:
            `BatchFeature` with `pixel_values`: float32 [B, 3, H, W] for images, [B, T, 3, H, W] for videos.
        """
        if kwargs:
            raise TypeError(f"{type(self).__name__}.preprocess got unexpected keyword arguments {sorted(kwargs)}")
        if (images is None) == (videos is None):
            raise ValueError("pass exactly one of images= (one image per sample) or videos= (frames per sample)")
        if generator is not None and seed is not None:
            raise ValueError("pass either generator= or seed=, not both")
        if generator is not None and not isinstance(generator, np.random.Generator):
            raise TypeError(f"generator must be a numpy.random.Generator, got {type(generator).__name__}")
        size = _size_hw(size if size is not None else self.size)
        resample = int(resample if resample is not None else self.resample)
        rescale_factor = rescale_factor if rescale_factor is not None else self.rescale_factor
        image_mean = image_mean if image_mean is not None else self.image_mean
        image_std = image_std if image_std is not None else self.image_std
        rng = (generator if generator is not None else np.random.default_rng(seed)) if train else None

        if videos is not None:
            samples = self.make_video_list(videos)
            names = [[f"videos[{i}][{t}]" for t in range(len(frames))] for i, frames in enumerate(samples)]
        else:
            samples = [[image] for image in self.make_image_list(images)]
            names = [[f"images[{i}]"] for i in range(len(samples))]

        scale, offset = self.normalization(rescale_factor, image_mean, image_std)
        pixel_values = np.empty((len(samples), len(samples[0]), 3, size[0], size[1]), dtype=np.float32)
        if not train:
            # decoding, resizing (PIL's C code) and normalising (numpy) release the GIL: spread them over threads
            def eval_one(item):
                i, t, frame = item
                rgb = self.eval_transform(to_rgb_image(frame, input_data_format, names[i][t]), size, resample)
                self.normalize_into(rgb, pixel_values[i, t], scale, offset)

            _map_in_threads(eval_one, [(i, t, f) for i, frames in enumerate(samples) for t, f in enumerate(frames)])
            samples = []
        for i, frames in enumerate(samples):
            params = {}  # (width, height) -> (box, flip): one draw per video and frame size
            for t, frame in enumerate(frames):
                rgb = to_rgb_image(frame, input_data_format, names[i][t])
                if rgb.size not in params:
                    box = random_resized_crop_box(rgb.width, rgb.height, self.train_scale, self.train_ratio, rng)
                    params[rgb.size] = (box, bool(rng.random() < self.train_flip_prob))
                view = self.train_transform(rgb, size, resample, *params[rgb.size])
                self.normalize_into(view, pixel_values[i, t], scale, offset)

        if videos is None:
            pixel_values = pixel_values[:, 0]
        return BatchFeature(data={"pixel_values": pixel_values}, tensor_type=return_tensors)

    def __call__(self, images=None, *args, **kwargs) -> BatchFeature:
        return self.preprocess(images, *args, **kwargs)


# ------------------------------------------------------------------------------------------------------------------
# Processor
# ------------------------------------------------------------------------------------------------------------------


def _pad(sequences: list[list[int]], length: int, value: int, side: str) -> list[list[int]]:
    if side == "left":
        return [[value] * (length - len(s)) + s for s in sequences]
    return [s + [value] * (length - len(s)) for s in sequences]


def _rows(ids) -> list[list[int]]:
    if isinstance(ids, torch.Tensor):
        ids = ids.detach().cpu()
        return ids.tolist() if ids.ndim == 2 else [ids.tolist()]
    if isinstance(ids, np.ndarray):
        return ids.tolist() if ids.ndim == 2 else [ids.tolist()]
    ids = list(ids)
    if ids and isinstance(ids[0], (int, np.integer)):
        return [[int(i) for i in ids]]
    return [[int(i) for i in row] for row in ids]


_PADDING_CHOICES = (True, False, "longest", "max_length", "do_not_pad")


class InstructBlipProcessor(ProcessorMixin):
    r"""Image processor + LLM tokenizer + Q-Former (BERT) tokenizer, with InstructBLIP's token layout.

    On creation, `<image>` is added to the LLM tokenizer as a special token unless the tokenizer already has an
    `image_token` (as transformers' processor does): the model scatters its projected query outputs into those ids.

    Args:
        image_processor (`InstructBlipImageProcessor`): the image transforms.
        tokenizer: the LLM's tokenizer (LLaMA/Vicuna: BOS prepended; T5: `</s>` appended).
        qformer_tokenizer: the Q-Former's BERT tokenizer (`[CLS] ... [SEP]`).
        num_query_tokens (`int`, defaults to 32): `<image>` tokens per image (per frame for videos); must equal the
            model config's `num_query_tokens`.
        is_encoder_decoder (`bool`, *optional*): whether the LLM is encoder-decoder (FlanT5) or decoder-only
            (Vicuna). Decides the training layout; saved with the processor. Required for training batches.
        instruction_max_length (`int`, defaults to 128): the paper's `max_txt_len`, counting special tokens; the
            instruction is cut on the left to fit, for both tokenizers.
        target_max_length (`int`, defaults to 256): the paper's `max_output_txt_len`, counting the EOS (which is
            always kept); targets are cut on the right.
    """

    def __init__(
        self,
        image_processor,
        tokenizer,
        qformer_tokenizer,
        num_query_tokens: int = 32,
        is_encoder_decoder: bool | None = None,
        instruction_max_length: int = 128,
        target_max_length: int = 256,
        **kwargs,
    ):
        if getattr(tokenizer, "image_token", None) is not None:
            self.image_token = str(tokenizer.image_token)
        else:
            self.image_token = "<image>"
            tokenizer.add_tokens([AddedToken(self.image_token, normalized=False, special=True)], special_tokens=True)
        self.num_query_tokens = int(num_query_tokens)
        self.is_encoder_decoder = is_encoder_decoder
        self.instruction_max_length = instruction_max_length
        self.target_max_length = target_max_length
        super().__init__(image_processor, tokenizer, qformer_tokenizer, **kwargs)
        if self.num_query_tokens < 1:
            raise ValueError(f"num_query_tokens must be positive, got {num_query_tokens}")
        if target_max_length is not None and target_max_length < 1:
            raise ValueError(f"target_max_length must be at least 1 (room for EOS), got {target_max_length}")

    @classmethod
    def _get_arguments_from_pretrained(cls, pretrained_model_name_or_path, processor_dict=None, **kwargs):
        # The image processor class is known here: building it directly (instead of through AutoImageProcessor and
        # the folder's auto_map) lets `InstructBlipProcessor.from_pretrained` work without trust_remote_code, and
        # reads transformers' own `preprocessor_config.json` (Salesforce/instructblip-*) as well.
        subfolder = kwargs.pop("subfolder", "")
        for own in ("num_query_tokens", "is_encoder_decoder", "instruction_max_length", "target_max_length"):
            kwargs.pop(own, None)  # processor settings, not the sub-processors'
        image_config = (processor_dict or {}).get("image_processor")
        if isinstance(image_config, dict):
            image_processor = InstructBlipImageProcessor.from_dict(image_config)
        else:
            image_processor = InstructBlipImageProcessor.from_pretrained(
                pretrained_model_name_or_path, subfolder=subfolder, **kwargs
            )
        tokenizers = [
            cls._load_tokenizer_from_pretrained(name, pretrained_model_name_or_path, subfolder=subfolder, **kwargs)
            for name in ("tokenizer", "qformer_tokenizer")
        ]
        return [image_processor, *tokenizers]

    @classmethod
    def _load_tokenizer_from_pretrained(cls, sub_processor_type, pretrained_model_name_or_path, subfolder="", **kwargs):
        """The Q-Former tokenizer lives in `qformer_tokenizer/`. AutoTokenizer would look for a `config.json` there
        first; in an offline Hub cache that missing file is an error, after which transformers falls back to the
        root tokenizer (the LLM's) with only a warning. We read the subfolder's tokenizer config for its class, and
        a missing Q-Former tokenizer is an error, never a silent substitution."""
        if sub_processor_type == "tokenizer":
            return AutoTokenizer.from_pretrained(pretrained_model_name_or_path, subfolder=subfolder, **kwargs)
        folder = f"{subfolder}/{sub_processor_type}" if subfolder else sub_processor_type
        hub_kwargs = {k: kwargs[k] for k in ("cache_dir", "revision", "token", "local_files_only") if k in kwargs}
        config_file = cached_file(
            pretrained_model_name_or_path,
            "tokenizer_config.json",
            subfolder=folder,
            _raise_exceptions_for_missing_entries=False,
            **hub_kwargs,
        )
        if config_file is None:
            raise OSError(
                f"{pretrained_model_name_or_path} has no {folder}/tokenizer_config.json: the processor needs the "
                f"Q-Former tokenizer saved there (save_pretrained writes it)"
            )
        with open(config_file, encoding="utf-8") as handle:
            class_name = json.load(handle).get("tokenizer_class")
        tokenizer_class = getattr(transformers, class_name, None) if class_name else None
        tokenizer_class = tokenizer_class or AutoTokenizer
        return tokenizer_class.from_pretrained(pretrained_model_name_or_path, subfolder=folder, **kwargs)

    @property
    def image_token_id(self) -> int:
        return self.tokenizer.convert_tokens_to_ids(self.image_token)

    @property
    def model_input_names(self) -> list[str]:
        return list(self.tokenizer.model_input_names) + ["pixel_values", "qformer_input_ids", "qformer_attention_mask"]

    # -- text helpers ---------------------------------------------------------------------------------------------

    @staticmethod
    def _as_text_list(text, name: str) -> list[str]:
        if isinstance(text, str):
            return [text]
        if not isinstance(text, (list, tuple)):
            raise TypeError(f"{name} must be a string or a list of strings, got {type(text).__name__}")
        if len(text) == 0:
            raise ValueError(f"{name} is an empty list; pass at least one string")
        for index, item in enumerate(text):
            if not isinstance(item, str):
                raise TypeError(f"{name}[{index}] must be a string, got {type(item).__name__}")
        return list(text)

    @staticmethod
    def _special_tokens_around(tokenizer) -> tuple[int, int]:
        """How many special tokens `tokenizer` puts before and after a single text (BERT: 1 and 1,
        LLaMA: 1 and 0, T5: 0 and 1)."""
        plain = tokenizer("a b", add_special_tokens=False, truncation=False, padding=False)["input_ids"]
        full = tokenizer("a b", add_special_tokens=True, truncation=False, padding=False)["input_ids"]
        for before in range(len(full) - len(plain) + 1):
            if full[before : before + len(plain)] == plain:
                return before, len(full) - len(plain) - before
        raise ValueError(f"{type(tokenizer).__name__} changes a text's tokens when it adds its special tokens; "
                         "the processor cannot truncate around them")

    @staticmethod
    def _tokenize(tokenizer, texts, max_length, side, add_special_tokens) -> list[list[int]]:
        """Token ids of `texts`, each cut to `max_length` (special tokens included) on `side` as the
        tokenizer would: the text's tokens are cut, the special tokens kept. Cut here because tokenizers
        take the side from an attribute, and setting it would race with other threads tokenizing with
        the same tokenizer; every call here asks the tokenizer for the same (no truncation, no padding)."""
        encoding = tokenizer(
            texts,
            add_special_tokens=add_special_tokens,
            truncation=False,
            padding=False,
            return_attention_mask=False,
            return_token_type_ids=False,
            verbose=False,  # a text longer than the model's maximum is cut below
        )
        rows = [list(ids) for ids in encoding["input_ids"]]
        if max_length is None or all(len(ids) <= max_length for ids in rows):
            return rows
        before, after = InstructBlipProcessor._special_tokens_around(tokenizer) if add_special_tokens else (0, 0)
        keep = max_length - before - after
        if keep < 0:
            raise ValueError(f"max_length={max_length} leaves no room for the {before + after} special tokens "
                             f"{type(tokenizer).__name__} adds")
        for index, ids in enumerate(rows):
            if len(ids) > max_length:
                text = ids[before : len(ids) - after]
                text = text[len(text) - keep :] if side == "left" else text[:keep]
                rows[index] = ids[:before] + text + ids[len(ids) - after :]
        return rows

    def _tokenize_targets(self, targets: list[str], max_length: int | None) -> list[list[int]]:
        """Target ids as the paper builds them: the text without special tokens, cut on the right so that it and
        the EOS fit `max_length`, then EOS."""
        eos = self.tokenizer.eos_token_id
        if eos is None:
            raise ValueError("the LLM tokenizer has no EOS token; targets need one to mark the end of the answer")
        ids = self._tokenize(self.tokenizer, targets, None, "right", add_special_tokens=False)
        if max_length is not None:
            ids = [row[: max_length - 1] for row in ids]
        return [row + [eos] for row in ids]

    def _check_no_image_token(self, rows: list[list[int]], name: str):
        # the model fills exactly num_query_tokens * T placeholder positions: one more in the text would misalign them
        image_token_id = self.image_token_id
        for index, row in enumerate(rows):
            if image_token_id in row:
                raise ValueError(
                    f"{name}[{index}] contains the image placeholder {self.image_token!r}; the processor inserts the "
                    "image tokens itself"
                )

    @staticmethod
    def _pad_id(tokenizer) -> int:
        return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

    @staticmethod
    def _padded_length(lengths: list[int], padding, max_length: int | None) -> int | None:
        """Length to pad to: None (no padding), the longest, or `max_length` (never shorter than the longest)."""
        if padding in (False, "do_not_pad"):
            return None
        if padding == "max_length" and max_length is not None:
            return max(max_length, *lengths)
        return max(lengths)

    # -- main entry -----------------------------------------------------------------------------------------------

    def __call__(
        self,
        images=None,
        text: str | list[str] | None = None,
        videos=None,
        targets: str | list[str] | None = None,
        return_tensors: str | None = None,
        padding: bool | str = "longest",
        truncation: bool = True,
        max_length: int | None = None,
        padding_side: str | None = None,
        truncation_side: str = "left",
        instruction_max_length: int | None = None,
        target_max_length: int | None = None,
        add_special_tokens: bool = True,
        train: bool = False,
        generator: np.random.Generator | None = None,
        seed: int | None = None,
        vision_features=None,
        **kwargs,
    ) -> BatchFeature:
        r"""
        Build a batch: `input_ids` / `attention_mask` (the LLM's, `<image>` x `num_query_tokens` per image or frame
        in front), `qformer_input_ids` / `qformer_attention_mask`, `pixel_values`, and `labels` when `targets` is
        given.

        Args:
            images: one image per prompt (PIL, numpy array or torch tensor), or a list.
            text (`str` or `list[str]`): the instructions.
            videos: one frame sequence per prompt (list of frames or array [T, H, W, C]); same T for all.
            targets (`str` or `list[str]`, *optional*): the answers; turns the batch into a training batch with
                `labels` (requires `is_encoder_decoder` to be set on the processor).
            return_tensors: "pt", "np" or None (lists of ids, numpy pixel values).
            padding: "longest"/True (default), "max_length" (LLM sequence to `max_length`, Q-Former to
                `instruction_max_length`) or False.
            truncation (`bool`): apply `instruction_max_length`, `target_max_length` and `max_length`.
            max_length (`int`, *optional*): bound on the whole LLM sequence, image tokens included. In a
                decoder-only training batch the target is cut to fit; a sample whose image tokens and instruction
                leave no room for one target token and EOS raises ValueError. Elsewhere the instruction is cut.
            padding_side: "left" or "right" for the LLM tokenizer; defaults to its own side, and to "right" for
                decoder-only training batches. Use "left" for batched decoder-only generation. The Q-Former input
                keeps its tokenizer's side (right, as in LAVIS).
            truncation_side: side the instruction is cut from (the paper: "left").
            instruction_max_length / target_max_length: override the processor's.
            add_special_tokens (`bool`): add the tokenizers' special tokens to the instruction.
            train / generator / seed: the image processor's train transform and its randomness.
            vision_features: instead of `images`, each image's frozen vision-tower output ([tokens, hidden], e.g.
                from a feature cache): the batch gets `vision_features` (stacked) in place of `pixel_values`.
        """
        if kwargs:
            raise TypeError(f"{type(self).__name__}.__call__ got unexpected keyword arguments {sorted(kwargs)}")
        if images is None and text is None and videos is None and vision_features is None:
            raise ValueError("You have to specify at least images, videos or text.")
        if images is not None and videos is not None:
            raise ValueError("pass images= or videos=, not both: a batch holds one kind of visual input")
        if padding not in _PADDING_CHOICES:
            raise ValueError(f"padding must be one of {_PADDING_CHOICES}, got {padding!r}")
        if padding_side not in (None, "left", "right"):
            raise ValueError(f"padding_side must be 'left', 'right' or None, got {padding_side!r}")
        if truncation_side not in ("left", "right"):
            raise ValueError(f"truncation_side must be 'left' or 'right', got {truncation_side!r}")
        if padding == "max_length" and max_length is None:
            raise ValueError("padding='max_length' needs max_length")

        if vision_features is not None and (images is not None or videos is not None):
            raise ValueError("pass images=, videos= or vision_features=, not several: they are the same input")
        visual, num_visual, num_image_tokens = None, None, 0
        if vision_features is not None:
            vision_features = [torch.as_tensor(f) for f in vision_features]
            shapes = {tuple(f.shape) for f in vision_features}
            if len(shapes) != 1 or len(next(iter(shapes))) != 2:
                raise ValueError(
                    "vision_features must be one [tokens, hidden] tensor per image, all the same shape; "
                    f"got shapes {sorted(shapes)}"
                )
            num_visual, num_image_tokens = len(vision_features), self.num_query_tokens
        if images is not None:
            visual = self.image_processor.make_image_list(images)
            num_visual, num_image_tokens = len(visual), self.num_query_tokens
        elif videos is not None:
            visual = self.image_processor.make_video_list(videos)
            num_visual, num_image_tokens = len(visual), self.num_query_tokens * len(visual[0])

        data = {}
        if text is not None:
            text = self._as_text_list(text, "text")
            if num_visual is not None and num_visual != len(text):
                kind = "images" if images is not None or vision_features is not None else "videos"
                raise ValueError(f"got {num_visual} {kind} and {len(text)} prompts: pass one {kind[:-1]} per prompt")
            if targets is not None:
                targets = self._as_text_list(targets, "targets")
                if len(targets) != len(text):
                    raise ValueError(f"got {len(text)} prompts and {len(targets)} targets: pass one target per prompt")
                if self.is_encoder_decoder is None:
                    raise ValueError(
                        "training batches need the LLM kind: set is_encoder_decoder=True (FlanT5) or False (Vicuna) "
                        "on the processor"
                    )
            data.update(
                self._encode_text(
                    text,
                    targets,
                    num_image_tokens=num_image_tokens,
                    padding=padding,
                    truncation=truncation,
                    max_length=max_length,
                    padding_side=padding_side,
                    truncation_side=truncation_side,
                    instruction_max_length=(
                        instruction_max_length if instruction_max_length is not None else self.instruction_max_length
                    ),
                    target_max_length=target_max_length if target_max_length is not None else self.target_max_length,
                    add_special_tokens=add_special_tokens,
                )
            )
        elif targets is not None:
            raise ValueError("targets need prompts: pass text= as well")

        if vision_features is not None:
            data["vision_features"] = torch.stack(vision_features)
        if visual is not None:
            pixels = self.image_processor(
                images=visual if images is not None else None,
                videos=visual if videos is not None else None,
                train=train,
                generator=generator,
                seed=seed,
            )
            data["pixel_values"] = pixels["pixel_values"]
        return BatchFeature(data=data, tensor_type=return_tensors)

    def _encode_text(
        self,
        text: list[str],
        targets: list[str] | None,
        num_image_tokens: int,
        padding,
        truncation: bool,
        max_length: int | None,
        padding_side: str | None,
        truncation_side: str,
        instruction_max_length: int | None,
        target_max_length: int | None,
        add_special_tokens: bool,
    ) -> dict:
        decoder_only_training = targets is not None and not self.is_encoder_decoder
        if not truncation:
            instruction_max_length = target_max_length = max_length_bound = None
        else:
            max_length_bound = max_length

        # Q-Former: the instruction alone, cut to instruction_max_length
        qformer_ids = self._tokenize(
            self.qformer_tokenizer, text, instruction_max_length, truncation_side, add_special_tokens
        )

        # LLM instruction: in a decoder-only training batch max_length cuts the target, elsewhere the instruction
        llm_limit = instruction_max_length
        if max_length_bound is not None and not decoder_only_training:
            room = max_length_bound - num_image_tokens
            num_special = self.tokenizer.num_special_tokens_to_add() if add_special_tokens else 0
            if room <= num_special:
                raise ValueError(
                    f"max_length={max_length_bound} leaves {room} positions after {num_image_tokens} image tokens: "
                    f"no room for the instruction ({num_special} special tokens alone)"
                )
            llm_limit = room if llm_limit is None else min(llm_limit, room)
        llm_ids = self._tokenize(self.tokenizer, text, llm_limit, truncation_side, add_special_tokens)
        self._check_no_image_token(llm_ids, "text")

        labels = None
        if targets is not None:
            target_ids = self._tokenize_targets(targets, target_max_length)
            self._check_no_image_token(target_ids, "targets")
            if decoder_only_training:
                if max_length_bound is not None:
                    for index, (instruction, target) in enumerate(zip(llm_ids, target_ids)):
                        room = max_length_bound - num_image_tokens - len(instruction)
                        if room < 2:
                            raise ValueError(
                                f"sample {index}: {num_image_tokens} image tokens + {len(instruction)} instruction "
                                f"tokens leave {room} of max_length={max_length_bound} positions; a target needs at "
                                "least 2 (one token and EOS)"
                            )
                        if len(target) > room:
                            target_ids[index] = target[: room - 1] + [target[-1]]
                labels = [[IGNORE_INDEX] * len(i) + t for i, t in zip(llm_ids, target_ids)]
                llm_ids = [i + t for i, t in zip(llm_ids, target_ids)]
            else:
                labels = target_ids

        # pad the text part; the image tokens go in front of everything, never padded or truncated
        llm_side = padding_side or ("right" if decoder_only_training else self.tokenizer.padding_side)
        qformer_side = self.qformer_tokenizer.padding_side
        llm_mask = [[1] * len(ids) for ids in llm_ids]
        qformer_mask = [[1] * len(ids) for ids in qformer_ids]

        llm_length = self._padded_length(
            [len(ids) for ids in llm_ids], padding, max_length - num_image_tokens if max_length is not None else None
        )
        if llm_length is not None:
            llm_ids = _pad(llm_ids, llm_length, self._pad_id(self.tokenizer), llm_side)
            llm_mask = _pad(llm_mask, llm_length, 0, llm_side)
            if decoder_only_training:
                labels = _pad(labels, llm_length, IGNORE_INDEX, llm_side)
        if labels is not None and not decoder_only_training and padding not in (False, "do_not_pad"):
            labels = _pad(labels, max(len(row) for row in labels), IGNORE_INDEX, "right")

        qformer_length = self._padded_length(
            [len(ids) for ids in qformer_ids],
            padding,
            instruction_max_length if instruction_max_length is not None else max_length,
        )
        if qformer_length is not None:
            qformer_ids = _pad(qformer_ids, qformer_length, self._pad_id(self.qformer_tokenizer), qformer_side)
            qformer_mask = _pad(qformer_mask, qformer_length, 0, qformer_side)

        image_ids = [self.image_token_id] * num_image_tokens
        encoding = {
            "input_ids": [image_ids + ids for ids in llm_ids],
            "attention_mask": [[1] * num_image_tokens + mask for mask in llm_mask],
            "qformer_input_ids": qformer_ids,
            "qformer_attention_mask": qformer_mask,
        }
        if labels is not None:
            if decoder_only_training:
                labels = [[IGNORE_INDEX] * num_image_tokens + row for row in labels]
            encoding["labels"] = labels
        return encoding

    # -- ranking and decoding -------------------------------------------------------------------------------------

    def tokenize_candidates(
        self,
        candidates: list[list[str]],
        return_tensors: str | None = "pt",
        target_max_length: int | None = None,
    ) -> BatchFeature:
        r"""Tokenize candidate answers for ranking by teacher-forced likelihood, each exactly like a training target
        (no special tokens, cut on the right to `target_max_length` with the EOS, EOS appended).

        Args:
            candidates (`list[list[str]]`): for each sample, its candidate answers (counts may differ).

        Returns:
            `BatchFeature` with `candidate_input_ids` and `candidate_attention_mask`, [B, K, L] (K the largest
            number of candidates): right-padded with the pad id (0 without one); a sample's missing candidates are
            rows with an all-zero mask.
        """
        if not isinstance(candidates, (list, tuple)) or isinstance(candidates, str):
            raise TypeError(
                f"candidates must be a list (one per sample) of lists of strings, got {_describe(candidates)}"
            )
        if len(candidates) == 0:
            raise ValueError("candidates is an empty list; pass one list of candidate answers per sample")
        flat, counts = [], []
        for index, options in enumerate(candidates):
            if isinstance(options, str) or not isinstance(options, (list, tuple)):
                raise TypeError(f"candidates[{index}] must be a list of strings, got {_describe(options)}")
            if len(options) == 0:
                raise ValueError(f"candidates[{index}] is empty; every sample needs at least one candidate")
            flat.extend(self._as_text_list(list(options), f"candidates[{index}]"))
            counts.append(len(options))
        max_length = target_max_length if target_max_length is not None else self.target_max_length
        ids = self._tokenize_targets(flat, max_length)
        batch, num_candidates, length = len(candidates), max(counts), max(len(row) for row in ids)
        input_ids = np.full((batch, num_candidates, length), self._pad_id(self.tokenizer), dtype=np.int64)
        attention_mask = np.zeros((batch, num_candidates, length), dtype=np.int64)
        position = 0
        for index, count in enumerate(counts):
            for k in range(count):
                row = ids[position]
                input_ids[index, k, : len(row)] = row
                attention_mask[index, k, : len(row)] = 1
                position += 1
        data = {"candidate_input_ids": input_ids, "candidate_attention_mask": attention_mask}
        if return_tensors is None:
            data = {key: value.tolist() for key, value in data.items()}
        return BatchFeature(data=data, tensor_type=return_tensors)

    def post_process_generation(self, generated_ids, input_ids=None, skip_special_tokens: bool = True) -> list[str]:
        r"""Decode what `generate` returned into answer strings (special tokens skipped, whitespace stripped).

        A decoder-only LLM returns the prompt followed by the answer: with `input_ids` (the prompt batch given to
        `generate`), each row that starts with its prompt has the first `input_ids.shape[1]` tokens removed. Rows
        that do not (an encoder-decoder's decoder output, or new tokens only) are decoded whole; with
        `is_encoder_decoder=True` nothing is removed. `num_return_sequences` > 1 (B * k rows) is handled.
        """
        rows = _rows(generated_ids)
        if input_ids is not None and not self.is_encoder_decoder:
            prompts = _rows(input_ids)
            if len(prompts) == 0 or len(rows) % len(prompts) != 0:
                raise ValueError(
                    f"generated_ids has {len(rows)} rows, not a multiple of the {len(prompts)} rows of input_ids"
                )
            per_prompt = len(rows) // len(prompts)
            stripped = []
            for index, row in enumerate(rows):
                prompt = prompts[index // per_prompt]
                stripped.append(row[len(prompt) :] if row[: len(prompt)] == prompt else row)
            rows = stripped
        texts = self.tokenizer.batch_decode(rows, skip_special_tokens=skip_special_tokens)
        return [t.strip() for t in texts]


InstructBlipImageProcessor.register_for_auto_class()  # "AutoImageProcessor"
InstructBlipProcessor.register_for_auto_class()  # "AutoProcessor"

__all__ = ["InstructBlipImageProcessor", "InstructBlipProcessor"]
