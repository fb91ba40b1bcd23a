"""InstructBLIP demo (a Gradio app, the `app_file` of the Hugging Face Space).

Ask for anything about an image, or a short video (4 evenly spaced frames, as in the paper's video
evaluation), with the decoding settings of `generate`: beams, max new tokens, sampling, temperature,
top-p.

The model is `INSTRUCTBLIP_MODEL` (a Hub repo id or a folder, loaded with `AutoModel` /
`AutoProcessor` and `trust_remote_code=True`; `INSTRUCTBLIP_REVISION` pins the Hub revision). Unset,
in a checkout where `make demo` has run, it is the tiny model the demo trained
(`demo_output/instructblip-tiny-trained`, which answers colour questions about its synthetic shapes);
with neither, a tiny random InstructBLIP is built at start-up (`modeling_instructblip.tiny`), so the
app runs on a CPU with nothing downloaded: its answers are arbitrary text. The page says which.

Guards, all answered with a message rather than a stack trace: uploads over `max_upload_mb` (refused
by the server before they reach the model, and checked again here), unreadable or decompression-bomb
images, broken or too-short videos, empty or over-long instructions (instructions longer than the
model reads are cut from the left, as in the paper, with a warning), out-of-range decoding settings;
generation is bounded in tokens and seconds, and requests wait in a bounded queue.

Concurrent requests are batched: up to `max_batch_size` requests are taken in at once (each one
checked and preprocessed on its own, so one bad upload fails only its own request), and one model
worker answers them with one `generate` call per group of requests with the same decoding settings
and input kind. `generate` never runs twice at once.

`INSTRUCTBLIP_QUANTIZATION` chooses how a loaded model is held: `auto` (default) is int8 weight-only
LLM (torchao; the rest in bf16) on a CPU and bf16 on a GPU; `int8`, `nf4` (bitsandbytes 4-bit LLM),
`bf16` and `none` (the saved dtype) force one. The tiny model built at start-up is never quantized.

Run locally: `python space/app.py` (http://127.0.0.1:7860). This file must not train or download data.
"""

import os
import queue
import threading
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path

import gradio as gr
import PIL.Image
import torch

HERE = Path(__file__).resolve().parent
MODEL_VARIABLE = "INSTRUCTBLIP_MODEL"
REVISION_VARIABLE = "INSTRUCTBLIP_REVISION"
QUANTIZATION_VARIABLE = "INSTRUCTBLIP_QUANTIZATION"
QUANTIZATIONS = ("auto", "int8", "nf4", "bf16", "none")
# On the Space the example sits next to this file (publish.space uploads it there); in the repository
# it is in the top-level assets/.
EXAMPLE_IMAGE = next((p for p in (HERE / "assets" / "demo.jpg", HERE.parent / "assets" / "demo.jpg") if p.is_file()), None)
EXAMPLE_INSTRUCTIONS = ["What color is the square? Short answer:", "A short image description:"]
# Where `make demo` saves the model it trains (the Makefile's DEMO_MODEL), relative to the repository.
DEMO_MODEL = Path("demo_output") / "instructblip-tiny-trained"
RANDOM_MODEL_NOTE = ("Model: a tiny **untrained** InstructBLIP built at start-up (set `INSTRUCTBLIP_MODEL` to a Hub id, "
                     "or run `make demo` to train the tiny one), so answers are arbitrary text.")


@dataclass(frozen=True)
class Limits:
    max_upload_mb: float = 10.0
    max_image_pixels: int = 40_000_000  # decoded size: a small PNG can claim a huge canvas
    max_instruction_chars: int = 2_000
    max_new_tokens: int = 256  # the paper's generation length
    max_beams: int = 5
    max_seconds: float = 60.0  # per batch, passed to `generate(max_time=...)`
    max_batch_size: int = 16  # requests taken in at once and answered by one `generate` call
    queue_size: int = 32

    @property
    def concurrency(self) -> int:
        """Requests in progress at once: a batch's worth (the model itself answers one batch at a time)."""
        return self.max_batch_size

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)


LIMITS = Limits()


def choose_model(environ=os.environ, root: Path = HERE.parent) -> tuple[str | None, str]:
    """(what to load, the page's line naming it): `INSTRUCTBLIP_MODEL` when set, else the folder
    `make demo` trained under `root` when it holds a saved model, else None (the random tiny model)."""
    name = environ.get(MODEL_VARIABLE) or None
    if name:
        return name, f"Model: `{name}`."
    trained = root / DEMO_MODEL
    if (trained / "config.json").is_file():
        return str(trained), (
            f"Model: the tiny InstructBLIP that `make demo` trained (`{DEMO_MODEL.as_posix()}`): it has learnt "
            "the synthetic corpus' coloured shapes and little else (set `INSTRUCTBLIP_MODEL` to a Hub id for a real one)."
        )
    return None, RANDOM_MODEL_NOTE


def choose_quantization(environ=os.environ, cuda: bool | None = None) -> str:
    """`INSTRUCTBLIP_QUANTIZATION` resolved for this hardware: `auto` is `int8` on a CPU (the LLM's
    weights in int8, a quarter of their fp32 memory) and `bf16` on a GPU."""
    wanted = (environ.get(QUANTIZATION_VARIABLE) or "auto").strip().lower()
    if wanted not in QUANTIZATIONS:
        raise ValueError(f"{QUANTIZATION_VARIABLE}={wanted!r}: expected one of {', '.join(QUANTIZATIONS)}")
    if wanted != "auto":
        return wanted
    return "bf16" if (torch.cuda.is_available() if cuda is None else cuda) else "int8"


def quantization_kwargs(quantization: str) -> dict:
    """`from_pretrained` keywords for a `choose_quantization` value (our model class quantizes the LLM only)."""
    if quantization == "int8":
        from torchao.quantization import Int8WeightOnlyConfig
        from transformers import TorchAoConfig

        return {"dtype": torch.bfloat16, "quantization_config": TorchAoConfig(Int8WeightOnlyConfig())}
    if quantization == "nf4":
        from transformers import BitsAndBytesConfig

        config = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.bfloat16)
        return {"dtype": torch.bfloat16, "quantization_config": config}
    if quantization == "bf16":
        return {"dtype": torch.bfloat16}
    return {}


def checkpoint_quantization(name: str | None, revision: str | None = None) -> str | None:
    """The quantization method of a checkpoint saved quantized (`save_pretrained` of an int8 or NF4
    model), else None. Such a checkpoint is held as it was saved, whatever INSTRUCTBLIP_QUANTIZATION
    says: it is already the small form, and transformers cannot quantize it another way."""
    if not name:
        return None
    from transformers import AutoConfig

    saved = getattr(AutoConfig.from_pretrained(name, revision=revision, trust_remote_code=True), "quantization_config", None)
    if saved is None:
        return None
    method = saved.get("quant_method") if isinstance(saved, dict) else saved.quant_method
    return str(getattr(method, "value", method))


def load_model(name: str | None = None, revision: str | None = None, quantization: str = "none"):
    """(model, processor): `name` (Hub id or folder) with remote code, held as `quantization` says
    (`choose_quantization`), or the tiny demo model."""
    if name:
        from transformers import AutoModel, AutoProcessor

        kwargs = {} if checkpoint_quantization(name, revision) else quantization_kwargs(quantization)
        model = AutoModel.from_pretrained(name, revision=revision, trust_remote_code=True, **kwargs)
        processor = AutoProcessor.from_pretrained(name, revision=revision, trust_remote_code=True)
        return model.eval(), processor
    from modeling_instructblip import paper_generation_config, tiny

    model, processor = tiny.build("llama")
    model.generation_config = paper_generation_config(model.config.text_config)
    return model.eval(), processor


def _check_file_size(path: str, what: str, limits: Limits):
    size = os.path.getsize(path)
    if size > limits.max_upload_bytes:
        raise gr.Error(f"The {what} is {size / 2**20:.1f} MB; this demo takes files up to {limits.max_upload_mb:g} MB.")


def read_image(path: str, limits: Limits) -> PIL.Image.Image:
    _check_file_size(path, "image", limits)
    try:
        with PIL.Image.open(path) as image:
            width, height = image.size
            if width * height > limits.max_image_pixels:
                raise gr.Error(
                    f"The image is {width}×{height} pixels; this demo takes up to {limits.max_image_pixels:,} pixels."
                )
            image.load()
            return image.copy()
    except gr.Error:
        raise
    except (OSError, ValueError, SyntaxError, PIL.Image.DecompressionBombError) as error:
        raise gr.Error(f"Could not read the image ({type(error).__name__}): upload a JPEG, PNG, GIF or WebP file.")


def read_video(path: str, limits: Limits) -> list[PIL.Image.Image]:
    from modeling_instructblip.processing_instructblip import NUM_FRAMES, VideoError, sample_frames

    _check_file_size(path, "video", limits)
    try:
        frames = sample_frames(path, NUM_FRAMES)
    except VideoError as error:
        raise gr.Error(f"Could not use the video: {error.reason.replace('_', ' ')} (it needs {NUM_FRAMES} readable frames).")
    for frame in frames:
        if frame.width * frame.height > limits.max_image_pixels:
            raise gr.Error(f"The video's frames are {frame.width}×{frame.height} pixels; too large for this demo.")
    return frames


def _setting(name: str, value, low, high) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = None
    if number is None or not low <= number <= high:
        raise gr.Error(f"{name} must be between {low} and {high}, got {value!r}.")
    return number


def _path(payload) -> str | None:
    """The uploaded file's path from a raw component payload (a FileData dict) or a plain path."""
    if isinstance(payload, dict):
        payload = payload.get("path")
    return str(payload) if payload else None


@dataclass
class _Request:
    settings: tuple  # (kind, sorted generate settings): requests with the same one share a `generate` call
    visual: dict
    instruction: str
    answer: Future


class Batcher:
    """One model worker answering queued requests in batches: it takes every request waiting (up to
    `max_batch_size`), groups them by decoding settings and input kind, and calls `generate` once per
    group. Callers block on their own request's answer; an error in a group's `generate` reaches that
    group's callers only."""

    def __init__(self, model, processor, limits: Limits, start: bool = True):
        self.model, self.processor, self.limits = model, processor, limits
        self.pending: queue.Queue[_Request] = queue.Queue()
        self.batch_sizes: list[int] = []  # requests per `generate` call, for tests and the benchmark
        self._worker = threading.Thread(target=self._serve, name="instructblip-batcher", daemon=True)
        if start:
            self.start()

    def start(self):
        """Start the model worker (`start=False` holds queued requests back until then)."""
        self._worker.start()

    def submit(self, visual: dict, instruction: str, settings: dict) -> str:
        kind = "videos" if "videos" in visual else "images"
        request = _Request((kind, tuple(sorted(settings.items()))), visual, instruction, Future())
        self.pending.put(request)
        return request.answer.result()

    def _serve(self):
        while True:
            batch = [self.pending.get()]
            while len(batch) < self.limits.max_batch_size:
                try:
                    batch.append(self.pending.get_nowait())
                except queue.Empty:
                    break
            groups: dict[tuple, list[_Request]] = {}
            for request in batch:
                groups.setdefault(request.settings, []).append(request)
            for requests in groups.values():
                self._answer(requests)

    def _answer(self, requests: list[_Request]):
        try:
            kind, settings = requests[0].settings
            visual = {kind: [item for r in requests for item in r.visual[kind]]}
            inputs = self.processor(text=[r.instruction for r in requests], padding=True, return_tensors="pt", **visual)
            self.batch_sizes.append(len(requests))
            with torch.inference_mode():
                generated = self.model.generate(**inputs, **dict(settings), max_time=self.limits.max_seconds)
            answers = self.processor.post_process_generation(generated, inputs["input_ids"])
        except Exception as error:  # the group's callers get it; the worker goes on
            for request in requests:
                request.answer.set_exception(error)
            return
        for request, text in zip(requests, answers, strict=True):
            request.answer.set_result(text)


def make_answer_fn(model, processor, limits: Limits, batcher: Batcher | None = None):
    """The `/answer` handler: checks and reads one request (its errors are its own), then waits for
    its answer from `batcher` (a new one when not given)."""
    instruction_max_length = processor.instruction_max_length
    batcher = batcher or Batcher(model, processor, limits)

    def answer(image, video, instruction, num_beams, max_new_tokens, do_sample, temperature, top_p):
        """Answer `instruction` about `image` (a file) or `video` (a file; 4 frames are sampled)."""
        image, video = _path(image), _path(video)
        instruction = str(instruction or "").strip()
        if not instruction:
            raise gr.Error("Type an instruction, e.g. “What is unusual about this image?”.")
        if len(instruction) > limits.max_instruction_chars:
            raise gr.Error(
                f"The instruction is {len(instruction):,} characters; this demo takes up to "
                f"{limits.max_instruction_chars:,}."
            )
        if image and video:
            raise gr.Error("Give an image or a video, not both (clear one of them).")
        if not image and not video:
            raise gr.Error("Upload an image (or a short video) first.")
        num_beams = _setting("Beams", num_beams, 1, limits.max_beams)
        max_new_tokens = _setting("Max new tokens", max_new_tokens, 1, limits.max_new_tokens)
        temperature = _setting("Temperature", temperature, 0.01, 2.0)
        top_p = _setting("Top-p", top_p, 0.01, 1.0)
        if do_sample not in (True, False):
            raise gr.Error(f"Sample must be true or false, got {do_sample!r}.")

        visual = {"videos": [read_video(video, limits)]} if video else {"images": [read_image(image, limits)]}
        num_tokens = len(processor.tokenizer(instruction, add_special_tokens=True)["input_ids"])
        if instruction_max_length and num_tokens > instruction_max_length:
            gr.Warning(f"The instruction is {num_tokens} tokens; the model reads its last {instruction_max_length}.")
        settings = dict(num_beams=int(num_beams), max_new_tokens=int(max_new_tokens))
        if do_sample:
            settings.update(do_sample=True, temperature=temperature, top_p=top_p)
        else:
            settings.update(do_sample=False)
        return batcher.submit(visual, instruction, settings)

    answer.batcher = batcher
    return answer


def build_demo(model, processor, limits: Limits = LIMITS, about: str = RANDOM_MODEL_NOTE, batcher: Batcher | None = None) -> gr.Blocks:
    """The page; `about` is the line saying which model answers (choose_model's second value).
    Requests are answered in batches by `batcher` (a new one when not given: `demo.batcher`)."""
    generation = model.generation_config
    batcher = batcher or Batcher(model, processor, limits)
    with gr.Blocks(title="InstructBLIP") as demo:
        gr.Markdown(
            "# InstructBLIP\nInstruction-tuned vision-language model (Dai et al., 2023). Upload an image or a "
            f"short video, type an instruction, press **Answer**. {about}"
        )
        with gr.Row():
            with gr.Column():
                with gr.Tab("Image"):
                    image = gr.Image(type="filepath", label="Image", sources=["upload", "clipboard"])
                with gr.Tab("Video"):
                    video = gr.Video(label="Short video (4 frames are sampled)", sources=["upload"])
                instruction = gr.Textbox(
                    label="Instruction", lines=2, placeholder="What is unusual about this image?",
                    max_length=limits.max_instruction_chars,
                )
                with gr.Accordion("Decoding", open=False):
                    num_beams = gr.Slider(1, limits.max_beams, value=min(generation.num_beams or 1, limits.max_beams),
                                          step=1, label="Beams")
                    max_new_tokens = gr.Slider(
                        1, limits.max_new_tokens, step=1, label="Max new tokens",
                        value=min(generation.max_new_tokens or limits.max_new_tokens, limits.max_new_tokens),
                    )
                    do_sample = gr.Checkbox(value=bool(generation.do_sample), label="Sample (instead of greedy / beam search)")
                    temperature = gr.Slider(0.01, 2.0, value=generation.temperature or 1.0, step=0.01, label="Temperature")
                    top_p = gr.Slider(0.01, 1.0, value=generation.top_p or 0.9, step=0.01, label="Top-p")
                submit = gr.Button("Answer", variant="primary")
            with gr.Column():
                answer = gr.Textbox(label="Answer", lines=6, interactive=False)
        if EXAMPLE_IMAGE is not None:
            gr.Examples([[str(EXAMPLE_IMAGE), text] for text in EXAMPLE_INSTRUCTIONS], inputs=[image, instruction],
                        cache_examples=False)
        gr.on(
            [submit.click, instruction.submit],
            make_answer_fn(model, processor, limits, batcher),
            inputs=[image, video, instruction, num_beams, max_new_tokens, do_sample, temperature, top_p],
            outputs=answer,
            api_name="answer",
            # Raw payloads: gradio's Image preprocessing opens the file with PIL and turns a malformed
            # upload into an opaque error; `answer` reads the uploaded files itself and says what is wrong.
            preprocess=False,
        )
    demo.batcher = batcher
    return demo.queue(default_concurrency_limit=limits.concurrency, max_size=limits.queue_size)


def launch(demo: gr.Blocks, limits: Limits = LIMITS, **kwargs):
    """`demo.launch` with the upload limit (a launch setting in gradio 6) and the example's folder served."""
    kwargs.setdefault("max_file_size", limits.max_upload_bytes)
    if EXAMPLE_IMAGE is not None:
        kwargs.setdefault("allowed_paths", [str(EXAMPLE_IMAGE.parent)])
    return demo.launch(**kwargs)


MODEL_NAME, ABOUT_MODEL = choose_model()
QUANTIZATION = choose_quantization() if MODEL_NAME else "none"
REVISION = os.environ.get(REVISION_VARIABLE) or None
SAVED_QUANTIZATION = checkpoint_quantization(MODEL_NAME, REVISION)
model, processor = load_model(MODEL_NAME, REVISION, QUANTIZATION)
if SAVED_QUANTIZATION:
    ABOUT_MODEL += f" Held as saved: quantized with {SAVED_QUANTIZATION} (`{QUANTIZATION_VARIABLE}` does not apply)."
elif QUANTIZATION != "none":
    ABOUT_MODEL += f" Held as: {QUANTIZATION} (`{QUANTIZATION_VARIABLE}`)."
demo = build_demo(model, processor, LIMITS, ABOUT_MODEL)

if __name__ == "__main__":
    launch(demo)
