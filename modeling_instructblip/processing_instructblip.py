"""InstructBLIP input processing: images, videos and text in, model-ready batches out. Ships to the Hub with the model.

Built on transformers' BLIP image processor and `ProcessorMixin` (kwargs, the tokenizers' own truncation and padding),
keeping what is InstructBLIP's own: the image-token layout below, label masking, candidates for ranking, decoding
`generate`'s output, the Q-Former tokenizer's subfolder, and video frames (the paper's T=4, evenly spaced).

    inference, right padding:  [IMG x N*T][BOS instruction][PAD ...]     N = num_query_tokens, T = frames (1: image)
    inference, left padding:   [IMG x N*T][PAD ...][BOS instruction]     (the image tokens are never padded)
    training, decoder-only:    [IMG x N*T][BOS instruction][target EOS][PAD ...]   labels: -100 except target EOS
    training, encoder-decoder: [IMG x N*T][instruction </s>][PAD ...]              labels: [target </s>][-100 ...]

This module must not load models or touch the network, nor augment images (the train transform is `training/`'s).
"""

import json
import os
import re
from typing import is_typeddict

import numpy as np
import PIL.Image
import torch
import transformers
from transformers import AutoImageProcessor, AutoTokenizer, BlipImageProcessorPil
from transformers.image_processing_base import ImageProcessingMixin
from transformers.image_processing_utils import BatchFeature
from transformers.processing_utils import ImagesKwargs, ProcessingKwargs, ProcessorMixin, Unpack
from transformers.tokenization_utils_base import AddedToken
from transformers.utils import cached_file


IGNORE_INDEX = -100  # label value the loss skips
NUM_FRAMES = 4  # frames per video in the paper


class InstructBlipImageProcessor(BlipImageProcessorPil):
    r"""transformers' BLIP image processor (PIL backend) with the paper's eval transform: RGB (transparency on white),
    a straight bicubic resize to 224x224, rescale by 1/255, OpenAI CLIP mean/std; every option is transformers'. Only
    the PIL modes whose `convert("RGB")` is wrong differ: premultiplied alpha (La, RGBa) fails or loses transparency,
    16-bit, 32-bit and float greyscale (I;16*, I, F) is clipped, not scaled (16-bit: x / 257; [0, 1] float: x * 255).
    """

    size = {"height": 224, "width": 224}

    def convert_to_rgb(self, image, input_data_format=None):
        if isinstance(image, PIL.Image.Image) and image.mode in ("La", "RGBa"):
            image = image.convert(image.mode.upper())
        elif isinstance(image, PIL.Image.Image) and (image.mode.startswith("I") or image.mode == "F"):
            array = np.nan_to_num(np.asarray(image, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
            if image.mode.startswith("I;16") or array.max(initial=0) > 255:
                array = array / 257
            elif image.mode == "F" and array.max(initial=0) <= 1:
                array = array * 255
            image = PIL.Image.fromarray(np.clip(np.round(array), 0, 255).astype(np.uint8))
        return super().convert_to_rgb(image, input_data_format=input_data_format)


class VideoError(ValueError):
    """A video that cannot give the frames asked for; `reason`: missing_video, corrupt_video or short_video."""

    def __init__(self, reason: str, path, detail: str):
        super().__init__(f"{reason.replace('_', ' ')}: {path} ({detail})")
        self.reason, self.path, self.detail = reason, str(path), detail


def frame_indices(num_video_frames: int, num_frames: int = NUM_FRAMES) -> list[int]:
    """`num_frames` evenly spaced indices over `num_video_frames`, first and last included."""
    step = (num_video_frames - 1) / (num_frames - 1) if num_frames > 1 else 0
    return [round(i * step) for i in range(num_frames)]


def sample_frames(path, num_frames: int = NUM_FRAMES) -> list[PIL.Image.Image]:
    """`num_frames` evenly spaced frames of the video file at `path` (PyAV) as RGB PIL images, or `VideoError`. Frames
    are counted by demuxing (AVI and WebM often leave the stream's count at 0); if fewer decode (a damaged stream),
    they are drawn again over what decodes."""
    import av

    def decode(wanted):  # -> (the wanted frames by index, how many frames decode)
        images, count = {}, 0
        with av.open(str(path)) as container:
            for count, frame in enumerate(container.decode(video=0), start=1):
                if count - 1 in wanted:
                    images[count - 1] = frame.to_image().convert("RGB")
        return images, count

    if not os.path.isfile(path):
        raise VideoError("missing_video", path, "file not found")
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise VideoError("corrupt_video", path, "no video stream")
            total = sum(1 for packet in container.demux(container.streams.video[0]) if packet.size)
        for attempt in ("frames", "decodable frames"):
            if total < num_frames:
                raise VideoError("short_video", path, f"{total} {attempt}, {num_frames} needed")
            wanted = frame_indices(total, num_frames)
            images, total = decode(set(wanted))
            if len(images) == len(set(wanted)):
                return [images[i] for i in wanted]
        raise VideoError("corrupt_video", path, "frames stopped decoding")
    except av.FFmpegError as error:
        raise VideoError("corrupt_video", path, f"{type(error).__name__}: {error}") from None


def _describe(obj) -> str:
    return f"{type(obj).__name__} of shape {tuple(obj.shape)}" if hasattr(obj, "shape") else type(obj).__name__


def _checked_image(image, where: str):
    """A PIL image or an image array ([H, W] gets a channel axis); TypeError/ValueError naming `where` otherwise."""
    if not isinstance(image, (PIL.Image.Image, np.ndarray, torch.Tensor)):
        raise TypeError(f"{where}: expected a PIL.Image.Image, a numpy array or a torch tensor, got {_describe(image)}")
    size = image.size if isinstance(image, PIL.Image.Image) else tuple(image.shape)
    if len(size) not in (2, 3) or 0 in size:
        raise ValueError(f"{where}: expected a non-empty image of shape (H, W), (H, W, C) or (C, H, W), got "
                         f"{_describe(image)} {size}")
    return image[..., None] if len(size) == 2 and not isinstance(image, PIL.Image.Image) else image


def _text_list(text, name: str) -> list[str]:
    text = [text] if isinstance(text, str) else text
    if not isinstance(text, (list, tuple)):
        raise TypeError(f"{name} must be a string or a list of strings, got {type(text).__name__}")
    if len(text) == 0:
        raise ValueError(f"{name} must be a string or a list of strings, got an empty list")
    for index, item in enumerate(text):
        if not isinstance(item, str):
            raise TypeError(f"{name}[{index}] must be a string, got {type(item).__name__}")
    return list(text)


def _rows(ids) -> list[list[int]]:
    ids = ids.tolist() if hasattr(ids, "tolist") else list(ids)
    return [[int(i) for i in ids]] if ids and isinstance(ids[0], (int, np.integer)) else [list(row) for row in ids]


class InstructBlipProcessor(ProcessorMixin):
    r"""Image processor + LLM tokenizer + Q-Former (BERT) tokenizer, with InstructBLIP's token layout.

    Keyword arguments are `ProcessorMixin`'s: text options (`padding`, `truncation`, `max_length`, `padding_side`...),
    image options (`size`, `do_normalize`...), `do_sample_frames` / `num_frames` for videos, flat or grouped
    (`text_kwargs=`, `images_kwargs=`, `videos_kwargs=`, `common_kwargs=`); a tokenizer's saved defaults hold unless a
    call overrides them. Defaults here: `padding="longest"`, `truncation=True`.

    Instructions are cut to `instruction_max_length` tokens (special tokens included) by each tokenizer on its own
    `truncation_side`: the saved one (Salesforce's checkpoints: "left"), else "left", the paper's. `max_length` bounds
    the whole LLM sequence, image tokens included. `<image>` is added to the LLM tokenizer unless it has an
    `image_token`; a prompt may hold it once to mark its visual input (as the paper's templates mark `<Image>`): it is
    taken out of the text, the image tokens always go in front.

    Args:
        image_processor: `InstructBlipImageProcessor`, or transformers' `BlipImageProcessor` (Salesforce's repos).
        tokenizer: the LLM's tokenizer (LLaMA/Vicuna: BOS prepended; T5: `</s>` appended).
        qformer_tokenizer: the Q-Former's BERT tokenizer (`[CLS] ... [SEP]`), saved in `qformer_tokenizer/`.
        num_query_tokens (`int`, defaults to 32): `<image>` tokens per image or frame; the model config's.
        is_encoder_decoder (`bool`, *optional*): FlanT5 (True) or Vicuna (False): the training layout.
        instruction_max_length (`int`, defaults to 128): the paper's `max_txt_len`, for both tokenizers.
        target_max_length (`int`, defaults to 256): the paper's `max_output_txt_len`, counting the EOS (always kept);
            targets are cut on the right.
    """

    text_kwargs = {"padding": "longest", "truncation": True, "return_token_type_ids": False}

    def __init__(self, image_processor, tokenizer, qformer_tokenizer, num_query_tokens=32, is_encoder_decoder=None,
                 instruction_max_length=128, target_max_length=256, **kwargs):
        if getattr(tokenizer, "image_token", None) is not None:
            self.image_token = str(tokenizer.image_token)
        else:
            self.image_token = "<image>"
            tokenizer.add_tokens([AddedToken(self.image_token, normalized=False, special=True)], special_tokens=True)
        for part in (tokenizer, qformer_tokenizer):  # the paper cuts instructions on the left; a saved side holds
            if "truncation_side" not in part.init_kwargs:
                part.truncation_side = part.init_kwargs["truncation_side"] = "left"
        if int(num_query_tokens) < 1 or (target_max_length is not None and target_max_length < 1):
            raise ValueError(f"num_query_tokens and target_max_length (room for EOS) must be positive, got "
                             f"{num_query_tokens} and {target_max_length}")
        self.num_query_tokens = int(num_query_tokens)
        self.is_encoder_decoder = is_encoder_decoder
        self.instruction_max_length = instruction_max_length
        self.target_max_length = target_max_length
        super().__init__(image_processor, tokenizer, qformer_tokenizer, **kwargs)

    @classmethod
    def _get_arguments_from_pretrained(cls, pretrained_model_name_or_path, processor_dict=None, **kwargs):
        # Each part by the class its folder names, not through the Auto classes: they read config.json, whose auto_map
        # (our remote code) makes transformers ask whether to trust it.
        for own in ("num_query_tokens", "is_encoder_decoder", "instruction_max_length", "target_max_length"):
            kwargs.pop(own, None)  # the processor's settings, not its parts'
        parts = {name: kwargs.pop(name) for name in cls.get_attributes() if name in kwargs}  # parts passed in
        if "image_processor" not in parts:
            config, _ = ImageProcessingMixin.get_image_processor_dict(pretrained_model_name_or_path, **kwargs)
            if config.get("image_processor_type") in (None, InstructBlipImageProcessor.__name__):
                parts["image_processor"] = InstructBlipImageProcessor.from_pretrained(pretrained_model_name_or_path,
                                                                                      **kwargs)
            else:  # transformers' own, e.g. BlipImageProcessor
                parts["image_processor"] = AutoImageProcessor.from_pretrained(
                    pretrained_model_name_or_path, **{"trust_remote_code": False, **kwargs})
        for name in ("tokenizer", "qformer_tokenizer"):
            if name not in parts:
                parts[name] = cls._load_tokenizer_from_pretrained(name, pretrained_model_name_or_path, **kwargs)
        return [parts[name] for name in ("image_processor", "tokenizer", "qformer_tokenizer")]

    @classmethod
    def _load_tokenizer_from_pretrained(cls, sub_processor_type, pretrained_model_name_or_path, subfolder="", **kwargs):
        """The class `tokenizer_config.json` names (the Q-Former's in `qformer_tokenizer/`). A missing Q-Former
        tokenizer is an error: AutoTokenizer would fall back to the root tokenizer, the LLM's, with a warning."""
        if sub_processor_type != "tokenizer":
            subfolder = f"{subfolder}/{sub_processor_type}" if subfolder else sub_processor_type
        hub_kwargs = {k: kwargs[k] for k in ("cache_dir", "revision", "token", "local_files_only") if k in kwargs}
        config_file = cached_file(pretrained_model_name_or_path, "tokenizer_config.json", subfolder=subfolder,
                                  _raise_exceptions_for_missing_entries=False, **hub_kwargs)
        if config_file is None and sub_processor_type != "tokenizer":
            raise OSError(f"{pretrained_model_name_or_path} has no {subfolder}/tokenizer_config.json: the processor "
                          "needs the Q-Former tokenizer saved there (save_pretrained writes it)")
        with open(config_file or os.devnull, encoding="utf-8") as handle:
            class_name = json.loads(handle.read() or "{}").get("tokenizer_class")
        tokenizer_class = getattr(transformers, class_name or "", None) or AutoTokenizer
        return tokenizer_class.from_pretrained(pretrained_model_name_or_path, subfolder=subfolder, **kwargs)

    def save_pretrained(self, save_directory, **kwargs):
        files = super().save_pretrained(save_directory, **kwargs)
        self.__dict__.pop("auto_map", None)  # written into processor_config.json; loading drops it again
        return files

    @property
    def image_token_id(self) -> int:
        return self.tokenizer.convert_tokens_to_ids(self.image_token)

    @property
    def model_input_names(self) -> list[str]:
        return list(self.tokenizer.model_input_names) + ["pixel_values", "qformer_input_ids", "qformer_attention_mask"]

    # -- main entry -----------------------------------------------------------------------------------------------

    def __call__(
        self,
        images: PIL.Image.Image | np.ndarray | torch.Tensor | list | None = None,
        text: str | list[str] | None = None,
        videos: str | os.PathLike | list | np.ndarray | torch.Tensor | None = None,
        targets: str | list[str] | None = None,
        vision_features: list[torch.Tensor] | torch.Tensor | None = None,
        **kwargs: Unpack[ProcessingKwargs],
    ) -> BatchFeature:
        r"""`input_ids` / `attention_mask` (the LLM's, `<image>` x `num_query_tokens` per image or frame in front),
        `qformer_input_ids` / `qformer_attention_mask`, `pixel_values` ([B, 3, H, W]; videos [B, T, 3, H, W]), and
        `labels` when `targets` is given.

        Args:
            images: one image per prompt (PIL, numpy array or torch tensor): a list, or a batch array.
            text (`str` or `list[str]`): the instructions.
            videos: one video per prompt: a file (`num_frames` frames sampled, default 4), a list of frames or an array
                [T, H, W, C] / [T, C, H, W] (`do_sample_frames=True` draws `num_frames` of them).
            targets (`str` or `list[str]`, *optional*): the answers: a training batch with `labels` (needs
                `is_encoder_decoder`), right-padded unless `padding_side` is given. `max_length` cuts the target in a
                decoder-only batch (a sample without room for a token and EOS raises), else the instruction.
            vision_features: instead of images, their frozen vision-tower outputs ([tokens, hidden] each, e.g. from a
                feature cache): the batch gets `vision_features` in place of `pixel_values`.
        """
        given = [name for name, value in (("images", images), ("videos", videos), ("vision_features", vision_features))
                 if value is not None]
        if not given and text is None:
            raise ValueError("You have to specify at least images, videos, vision_features or text.")
        if len(given) > 1:
            raise ValueError(f"pass one of images=, videos= or vision_features=, not several (got "
                             f"{' and '.join(given)}): a batch holds one kind of visual input")
        valid = {"common_kwargs", *getattr(getattr(self.image_processor, "valid_kwargs", None), "__annotations__", {})}
        for name, typed in self.valid_processor_kwargs.__annotations__.items():
            valid.update([name, *(typed.__annotations__ if is_typeddict(typed) else ())])
        if set(kwargs) - valid:
            raise TypeError(f"{type(self).__name__}.__call__ got unexpected keyword arguments "
                            f"{sorted(set(kwargs) - valid)}")
        explicit_side = kwargs.get("padding_side", kwargs.get("text_kwargs", {}).get("padding_side"))
        merged = self._merge_kwargs(self.valid_processor_kwargs, tokenizer_init_kwargs=self.tokenizer.init_kwargs,
                                    **kwargs)
        return_tensors = merged["text_kwargs"].pop("return_tensors", None)
        return_tensors = return_tensors or merged["images_kwargs"].get("return_tensors")
        images_kwargs = {**merged["images_kwargs"], "return_tensors": "np"}

        data, num_visual, num_image_tokens = {}, None, 0
        if images is not None:
            images = self._image_list(images)
            data["pixel_values"] = self.image_processor(images, **images_kwargs)["pixel_values"]
            num_visual, num_image_tokens = len(images), self.num_query_tokens
        elif videos is not None:
            videos = self._video_list(videos, merged["videos_kwargs"])
            images_kwargs.update({k: v for k, v in merged["videos_kwargs"].items()
                                  if k in ImagesKwargs.__annotations__}, return_tensors="np")
            pixels = self.image_processor([frame for frames in videos for frame in frames], **images_kwargs)
            data["pixel_values"] = pixels["pixel_values"].reshape(len(videos), len(videos[0]),
                                                                  *pixels["pixel_values"].shape[1:])
            num_visual, num_image_tokens = len(videos), self.num_query_tokens * len(videos[0])
        elif vision_features is not None:
            vision_features = [torch.as_tensor(f) for f in vision_features]
            shapes = {tuple(f.shape) for f in vision_features}
            if len(shapes) != 1 or len(next(iter(shapes))) != 2:
                raise ValueError("vision_features must be one [tokens, hidden] tensor per image, all the same shape; "
                                 f"got shapes {sorted(shapes)}")
            data["vision_features"] = torch.stack(vision_features)
            num_visual, num_image_tokens = len(vision_features), self.num_query_tokens

        if text is not None:
            text = _text_list(text, "text")
            if num_visual is not None and num_visual != len(text):
                kind = "videos" if videos is not None else "images"
                raise ValueError(f"got {num_visual} {kind} and {len(text)} prompts: pass one {kind[:-1]} per prompt")
            text = self._without_placeholder(text, num_visual is not None)
            data.update(self._encode_text(text, targets, num_image_tokens, merged["text_kwargs"], explicit_side))
            if merged.get("return_mm_token_type_ids"):
                data["mm_token_type_ids"] = self.create_mm_token_type_ids(data["input_ids"])
        elif targets is not None:
            raise ValueError("targets need prompts: pass text= as well")
        return BatchFeature(data=data, tensor_type=return_tensors)

    @staticmethod
    def _image_list(images) -> list:
        """One image, a batch array [B, ...], or a list of images (or of one-image lists, one per prompt)."""
        if isinstance(images, (np.ndarray, torch.Tensor)) and images.ndim == 4:
            images = list(images)
        elif not isinstance(images, (list, tuple)):
            return [_checked_image(images, "images")]
        if len(images) == 0:
            raise ValueError("images is an empty list; pass one image per prompt")
        for index, image in enumerate(images):
            if isinstance(image, (list, tuple)) and len(image) != 1:
                raise ValueError(f"images[{index}] holds {len(image)} images: InstructBLIP takes one image per prompt "
                                 "(and frame sequences as videos=)")
        return [_checked_image(image[0] if isinstance(image, (list, tuple)) else image, f"images[{index}]")
                for index, image in enumerate(images)]

    @staticmethod
    def _video_list(videos, videos_kwargs: dict) -> list[list]:
        for option in ("fps", "video_metadata", "return_metadata"):
            if videos_kwargs.get(option):
                raise ValueError(f"{option} is not supported: videos are sampled as num_frames evenly spaced frames")
        num_frames = videos_kwargs.get("num_frames") or NUM_FRAMES
        sample = bool(videos_kwargs.get("do_sample_frames")) or videos_kwargs.get("num_frames") is not None
        if isinstance(videos, (str, os.PathLike)) or getattr(videos, "ndim", None) in (4, 5):
            videos = [videos] if getattr(videos, "ndim", 4) == 4 else list(videos)
        if not isinstance(videos, (list, tuple)):
            raise TypeError(f"videos: expected one video per prompt (a file, frames or a [T, ...] array), got "
                            f"{_describe(videos)}")
        if len(videos) == 0:
            raise ValueError("videos: expected one video per prompt, got an empty list")
        samples = []
        for index, video in enumerate(videos):
            if isinstance(video, (str, os.PathLike)):
                frames = sample_frames(video, num_frames)
            elif isinstance(video, (list, tuple)) or getattr(video, "ndim", None) == 4:
                frames = list(video)
                if sample and len(frames) < num_frames:
                    raise ValueError(f"videos[{index}] has {len(frames)} frames, {num_frames} asked for")
                frames = [frames[i] for i in frame_indices(len(frames), num_frames)] if sample else frames
            else:
                raise TypeError(f"videos[{index}]: expected a file, a list of frames or a 4-d array, got "
                                f"{_describe(video)}")
            if not frames:
                raise ValueError(f"videos[{index}] has no frames")
            if samples and len(frames) != len(samples[0]):
                raise ValueError(f"videos: every video needs the same number of frames, got {len(samples[0])} for "
                                 f"videos[0] and {len(frames)} for videos[{index}]")
            samples.append([_checked_image(frame, f"videos[{index}][{t}]") for t, frame in enumerate(frames)])
        return samples

    def _without_placeholder(self, text: list[str], has_visual: bool) -> list[str]:
        for index, prompt in enumerate(text):
            count = prompt.count(self.image_token)
            if count > 1 or (count and not has_visual):
                raise ValueError(f"text[{index}] holds the image placeholder {self.image_token!r} {count} times"
                                 + ("" if has_visual else " but no images, videos or vision_features were given")
                                 + ": the processor puts the image tokens in front; a prompt may mark its input once")
        marker = re.compile(rf"\s*{re.escape(self.image_token)}\s*")
        return [marker.sub(" ", prompt).strip() if self.image_token in prompt else prompt for prompt in text]

    def _encode_text(self, text, targets, num_image_tokens: int, text_kwargs: dict, padding_side) -> dict:
        for option in ("return_mm_token_type_ids", "return_text_replacement_offsets", "sanitize_control_tokens"):
            text_kwargs.pop(option, None)  # processor options: no placeholders are expanded in the text here
        padding, truncation = text_kwargs.pop("padding", False), text_kwargs.pop("truncation", None)
        max_length, multiple = text_kwargs.pop("max_length", None), text_kwargs.pop("pad_to_multiple_of", None)
        side = text_kwargs.pop("padding_side", None)
        padding = getattr(padding, "value", padding)
        pad = padding is not False and padding != "do_not_pad"
        if padding == "max_length" and max_length is None:
            raise ValueError("padding='max_length' needs max_length (the whole LLM sequence, image tokens included)")
        cut = truncation not in (None, False, "do_not_truncate")
        targets = _text_list(targets, "targets") if targets is not None else None
        if targets is not None and len(targets) != len(text):
            raise ValueError(f"got {len(text)} prompts and {len(targets)} targets: pass one target per prompt")
        if targets is not None and self.is_encoder_decoder is None:
            raise ValueError("training batches need the LLM kind: set is_encoder_decoder=True (FlanT5) or False "
                             "(Vicuna) on the processor")
        decoder_only_training = targets is not None and not self.is_encoder_decoder

        # Q-Former: the instruction alone, cut (and padded to max_length) at instruction_max_length
        qformer_length = self.instruction_max_length if self.instruction_max_length is not None else max_length
        qformer = self.qformer_tokenizer(
            text, padding=padding, truncation=cut and qformer_length is not None, max_length=qformer_length,
            pad_to_multiple_of=multiple, add_special_tokens=text_kwargs.get("add_special_tokens", True),
            return_attention_mask=True, return_token_type_ids=False)

        # LLM: in a decoder-only training batch max_length cuts the target, elsewhere the instruction
        limit = self.instruction_max_length if cut else None
        if cut and max_length is not None and not decoder_only_training:
            room = max_length - num_image_tokens
            if room <= self.tokenizer.num_special_tokens_to_add():
                raise ValueError(f"max_length={max_length} leaves {room} positions after {num_image_tokens} image "
                                 "tokens: no room for the instruction")
            limit = room if limit is None else min(limit, room)
        encoding = dict(self.tokenizer(text, truncation=limit is not None, max_length=limit, **text_kwargs))
        extra = set(encoding) - {"input_ids", "attention_mask"} - ({"token_type_ids", "special_tokens_mask"} if
                                                                  targets is None else set())
        if extra:  # e.g. offset_mapping, length, labels (text_target): outputs without image-token positions
            raise ValueError(f"{sorted(extra)}: not supported by the InstructBLIP processor"
                             + (" in training batches" if targets is not None else ""))
        labels = None
        if targets is not None:
            target_ids = self._tokenize_targets(targets, self.target_max_length if cut else None)
            side = padding_side or "right"
            if not decoder_only_training:
                labels = target_ids
                if pad:
                    labels = [row + [IGNORE_INDEX] * (max(map(len, labels)) - len(row)) for row in labels]
            else:
                instructions = encoding["input_ids"]
                bounded = cut and max_length is not None
                for index, (instruction, target) in enumerate(zip(instructions, target_ids) if bounded else ()):
                    room = max_length - num_image_tokens - len(instruction)
                    if room < 2:
                        raise ValueError(f"sample {index}: {num_image_tokens} image tokens + {len(instruction)} "
                                         f"instruction tokens leave {room} of max_length={max_length} positions; a "
                                         "target needs at least 2 (one token and EOS)")
                    target_ids[index] = target if len(target) <= room else target[: room - 1] + target[-1:]
                labels = [[IGNORE_INDEX] * len(i) + t for i, t in zip(instructions, target_ids)]
                encoding = {"input_ids": [i + t for i, t in zip(instructions, target_ids)],
                            "attention_mask": [[1] * (len(i) + len(t)) for i, t in zip(instructions, target_ids)]}

        # the tokenizer's own padding of the text part, when any is due (so a tokenizer without a pad token still
        # makes one-prompt batches); the image tokens go in front, never padded or truncated
        lengths = {len(row) for row in encoding["input_ids"]}
        if pad and (len(lengths) > 1 or padding == "max_length" or multiple):
            encoding = dict(self.tokenizer.pad(
                encoding, padding=padding, max_length=max_length - num_image_tokens if max_length else None,
                pad_to_multiple_of=multiple, padding_side=side,
                return_attention_mask=text_kwargs.get("return_attention_mask")))
            if decoder_only_training:
                width, left = len(encoding["input_ids"][0]), (side or self.tokenizer.padding_side) == "left"
                gaps = [[IGNORE_INDEX] * (width - len(row)) for row in labels]
                labels = [gap + row if left else row + gap for row, gap in zip(labels, gaps)]
        fill = {"input_ids": self.image_token_id, "token_type_ids": 0}  # masks: 1
        result = {key: [[fill.get(key, 1)] * num_image_tokens + list(row) for row in rows]
                  for key, rows in encoding.items()}
        result.update(qformer_input_ids=qformer["input_ids"], qformer_attention_mask=qformer["attention_mask"])
        if labels is not None:
            result["labels"] = [[IGNORE_INDEX] * num_image_tokens * decoder_only_training + row for row in labels]
        return result

    def _tokenize_targets(self, targets: list[str], max_length: int | None) -> list[list[int]]:
        """Target ids as the paper builds them: no special tokens, cut on the right so that they and the EOS fit
        `max_length`, then EOS."""
        eos = self.tokenizer.eos_token_id
        if eos is None:
            raise ValueError("the LLM tokenizer has no EOS token; targets need one to mark the end of the answer")
        ids = self.tokenizer(targets, add_special_tokens=False, verbose=False)["input_ids"]
        for index, row in enumerate(ids):
            if self.image_token_id in row:
                raise ValueError(f"targets[{index}] contains the image placeholder {self.image_token!r}")
        return [list(row[: max_length - 1] if max_length is not None else row) + [eos] for row in ids]

    # -- ranking and decoding -------------------------------------------------------------------------------------

    def tokenize_candidates(self, candidates: list[list[str]], return_tensors: str | None = "pt") -> BatchFeature:
        r"""Each sample's candidate answers (`list[list[str]]`, counts may differ) for ranking by teacher-forced
        likelihood, tokenized exactly like training targets: `candidate_input_ids` / `candidate_attention_mask`,
        [B, K, L] (K the most candidates), right-padded with the pad id (0 without); missing ones have an all-0 mask."""
        for name, value in [("candidates", candidates), *((f"candidates[{i}]", c) for i, c in enumerate(candidates))]:
            if isinstance(value, str) or not isinstance(value, (list, tuple)):
                raise TypeError(f"{name} must be a list (of lists of strings, one per sample), got {_describe(value)}")
            if len(value) == 0:
                raise ValueError(f"{name} is an empty list: every sample needs at least one candidate")
        flat = [o for i, options in enumerate(candidates) for o in _text_list(list(options), f"candidates[{i}]")]
        ids = iter(self._tokenize_targets(flat, self.target_max_length))
        rows = [[next(ids) for _ in options] for options in candidates]
        shape = (len(rows), max(map(len, rows)), max(len(row) for sample in rows for row in sample))
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        data = {"candidate_input_ids": np.full(shape, pad, dtype=np.int64),
                "candidate_attention_mask": np.zeros(shape, dtype=np.int64)}
        for b, sample in enumerate(rows):
            for k, row in enumerate(sample):
                data["candidate_input_ids"][b, k, : len(row)] = row
                data["candidate_attention_mask"][b, k, : len(row)] = 1
        if return_tensors is None:
            data = {key: value.tolist() for key, value in data.items()}
        return BatchFeature(data=data, tensor_type=return_tensors)

    def post_process_generation(self, generated_ids, input_ids=None, skip_special_tokens: bool = True) -> list[str]:
        r"""`generate`'s output as answer strings (special tokens skipped, whitespace stripped). A decoder-only LLM
        returns prompt + answer: given `input_ids` (the prompts), each row that starts with its prompt loses it
        (B * k rows for `num_return_sequences` k); other rows, and all with `is_encoder_decoder=True`, stay whole."""
        rows = _rows(generated_ids)
        if input_ids is not None and not self.is_encoder_decoder:
            prompts = _rows(input_ids)
            if len(prompts) == 0 or len(rows) % len(prompts) != 0:
                raise ValueError(f"generated_ids has {len(rows)} rows, not a multiple of the {len(prompts)} rows of "
                                 "input_ids")
            prompts = [prompts[index * len(prompts) // len(rows)] for index in range(len(rows))]
            rows = [row[len(p):] if row[: len(p)] == p else row for row, p in zip(rows, prompts)]
        return [t.strip() for t in self.tokenizer.batch_decode(rows, skip_special_tokens=skip_special_tokens)]


InstructBlipImageProcessor.register_for_auto_class()  # "AutoImageProcessor"
InstructBlipProcessor.register_for_auto_class()  # "AutoProcessor"

__all__ = ["InstructBlipImageProcessor", "InstructBlipProcessor", "NUM_FRAMES", "VideoError", "frame_indices",
           "sample_frames"]
