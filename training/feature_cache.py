"""The frozen vision tower's features, computed once per image and read back while training.

Training without image augmentation shows the tower the same eval view of an image every time it
is drawn, and the tower is frozen: its output is fixed. `VisionFeatureCache.fill` runs the tower once
per distinct image of the mixture (images keyed by the SHA-256 of their bytes, so one COCO image used
by five datasets is computed once) and stores one safetensors file per image; training batches then
carry `vision_features` instead of `pixel_values`, which skips the JPEG decoding in the workers and
the tower's forward pass (about half the compute of a step at the paper's sizes).

The folder records what the features depend on (`feature_cache.json`: the tower's weights
fingerprint, its dtype, the eval transform); a folder filled by another tower or transform is
refused rather than read. Files are written atomically, so an interrupted fill resumes.
"""

import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from .data import NO_IMAGE, UNREADABLE_IMAGE, open_image
from .modeling import weights_fingerprint


logger = logging.getLogger(__name__)

INFO_FILENAME = "feature_cache.json"
NOT_CACHED = "image not in the vision feature cache"


def image_key(image: dict | None) -> str:
    """SHA-256 of an undecoded image's bytes ({"path", "bytes"}, as the datasets hold it).
    Raises ValueError for a record without an image and OSError for a file that cannot be read."""
    if image is None:
        raise ValueError(NO_IMAGE)
    data = image.get("bytes") or Path(image["path"]).read_bytes()
    return hashlib.sha256(data).hexdigest()


def cache_settings(model, processor) -> dict:
    """What the cached features depend on: the frozen tower's weights and dtype, and the eval transform."""
    frozen = torch.nn.ModuleList(model._frozen_vision_modules())
    image_processor = processor.image_processor
    return {
        "vision_tower": weights_fingerprint(frozen),
        "vision_feature_layer": None if model.config.uses_eva_vision else model.config.vision_feature_layer,
        "dtype": str(next(frozen.parameters()).dtype).replace("torch.", ""),
        "eval_transform": {
            "size": dict(image_processor.size),
            "resample": int(image_processor.resample),
            "image_mean": [float(v) for v in image_processor.image_mean],
            "image_std": [float(v) for v in image_processor.image_std],
        },
    }


class VisionFeatureCache:
    """A folder of frozen-tower features, one `<key[:2]>/<key>.safetensors` file per image.

    `VisionFeatureCache(folder, model, processor)` opens (or starts) the folder for this tower and
    eval transform; a folder written for others raises ValueError naming what differs.
    """

    def __init__(self, folder: str | os.PathLike, model, processor):
        self.folder = Path(folder)
        self.settings = cache_settings(model, processor)
        info = self.folder / INFO_FILENAME
        if info.exists():
            recorded = json.loads(info.read_text())
            differing = sorted(k for k in set(recorded) | set(self.settings) if recorded.get(k) != self.settings.get(k))
            if differing:
                raise ValueError(
                    f"vision feature cache {self.folder} was filled by another vision tower or transform "
                    f"(differs in: {', '.join(differing)}; recorded {[recorded.get(k) for k in differing]}, "
                    f"now {[self.settings.get(k) for k in differing]}). Use another folder or delete this one."
                )
        else:
            self.folder.mkdir(parents=True, exist_ok=True)
            _write_atomically(info, lambda path: Path(path).write_text(json.dumps(self.settings, indent=1)))

    def path(self, key: str) -> Path:
        return self.folder / key[:2] / f"{key}.safetensors"

    def __contains__(self, key: str) -> bool:
        return self.path(key).exists()

    def load_image(self, image: dict | None) -> torch.Tensor:
        """The features of an undecoded image ({"path", "bytes"}); OSError/ValueError as `image_key`
        and `load` raise them."""
        return self.load(image_key(image))

    def load(self, key: str) -> torch.Tensor:
        """[tokens, hidden] features of the image with this key; OSError if it was never cached
        (the fill pass could not read the image)."""
        path = self.path(key)
        if not path.exists():
            raise OSError(f"{NOT_CACHED} {self.folder} (key {key})")
        return load_file(str(path))["features"]

    def fill(self, model, processor, images, batch_size: int = 32, rank: int = 0, world_size: int = 1,
             device=None, total: int | None = None) -> dict:
        """Compute and store the features of every distinct image in `images` (undecoded
        {"path", "bytes"} dicts) that is not cached yet; rank `rank` of `world_size` takes the keys
        that fall to it. Returns counts: computed, already cached, repeats, and unreadable images by
        reason (those stay uncached; training then skips and counts their records)."""
        report = {"computed": 0, "cached": 0, "repeats": 0, "unreadable": {}}
        device = device or next(model.parameters()).device
        dtype = next(model._frozen_vision_modules()[0].parameters()).dtype
        seen, pending = set(), []

        def unreadable(reason):
            report["unreadable"][reason] = report["unreadable"].get(reason, 0) + 1

        def flush():
            if not pending:
                return
            keys, pictures = zip(*pending)
            pixel_values = processor.image_processor(images=list(pictures))["pixel_values"]
            pixel_values = torch.as_tensor(pixel_values).to(device=device, dtype=dtype)
            with torch.inference_mode():
                features = model.get_vision_features(pixel_values).cpu()
            for key, row in zip(keys, features):
                target = self.path(key)
                target.parent.mkdir(exist_ok=True)
                _write_atomically(target, lambda path, row=row: save_file({"features": row.contiguous()}, path))
            report["computed"] += len(pending)
            pending.clear()

        for image in tqdm(images, total=total, desc="vision feature cache", unit="image", disable=rank != 0):
            try:
                key = image_key(image)
            except (OSError, ValueError) as error:
                unreadable(NO_IMAGE if str(error) == NO_IMAGE else UNREADABLE_IMAGE)
                continue
            if key in seen:
                report["repeats"] += 1
                continue
            seen.add(key)
            if int(key[:8], 16) % world_size != rank:
                continue
            if key in self:
                report["cached"] += 1
                continue
            try:
                pending.append((key, open_image(image)))
            except (OSError, ValueError, SyntaxError):
                unreadable(UNREADABLE_IMAGE)
                continue
            if len(pending) == batch_size:
                flush()
        flush()
        logger.info("vision feature cache %s: %s", self.folder, report)
        return report


def _write_atomically(target: Path, write):
    """`write(path)` into a temporary file beside `target`, then rename it over `target`."""
    handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(handle)
    try:
        write(temporary)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def dataset_images(dataset):
    """(the image of every record of a map-style or streaming records dataset, undecoded; its length
    or None). Video records (frames, no image) are not cached and count as having no image."""
    import datasets

    dataset = dataset.select_columns(["image"]).cast_column("image", datasets.Image(decode=False))

    def rows():
        for batch in dataset.iter(batch_size=256):
            yield from batch["image"]

    total = len(dataset) if isinstance(dataset, datasets.Dataset) else None
    return rows(), total
