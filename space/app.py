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
generation is bounded in tokens and seconds, and requests wait in a bounded queue
(`concurrency` at a time) instead of running unbounded in parallel.

Run locally: `python space/app.py` (http://127.0.0.1:7860). This file must not train or download data.
"""

import os
from dataclasses import dataclass
from pathlib import Path

import gradio as gr
import PIL.Image
import torch

HERE = Path(__file__).resolve().parent
MODEL_VARIABLE = "INSTRUCTBLIP_MODEL"
REVISION_VARIABLE = "INSTRUCTBLIP_REVISION"
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
    max_seconds: float = 60.0  # per request, passed to `generate(max_time=...)`
    concurrency: int = 1  # one generation at a time: it already uses every CPU core
    queue_size: int = 32

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


def load_model(name: str | None = None, revision: str | None = None):
    """(model, processor): `name` (Hub id or folder) with remote code, or the tiny demo model."""
    if name:
        from transformers import AutoModel, AutoProcessor

        model = AutoModel.from_pretrained(name, revision=revision, trust_remote_code=True)
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


def make_answer_fn(model, processor, limits: Limits):
    instruction_max_length = processor.instruction_max_length

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

        visual = {"videos": [read_video(video, limits)]} if video else {"images": read_image(image, limits)}
        num_tokens = len(processor.tokenizer(instruction, add_special_tokens=True)["input_ids"])
        if instruction_max_length and num_tokens > instruction_max_length:
            gr.Warning(f"The instruction is {num_tokens} tokens; the model reads its last {instruction_max_length}.")
        inputs = processor(text=instruction, return_tensors="pt", **visual)
        settings = dict(num_beams=int(num_beams), max_new_tokens=int(max_new_tokens), max_time=limits.max_seconds)
        if do_sample:
            settings.update(do_sample=True, temperature=temperature, top_p=top_p)
        else:
            settings.update(do_sample=False)
        with torch.inference_mode():
            generated = model.generate(**inputs, **settings)
        return processor.post_process_generation(generated, inputs["input_ids"])[0]

    return answer


def build_demo(model, processor, limits: Limits = LIMITS, about: str = RANDOM_MODEL_NOTE) -> gr.Blocks:
    """The page; `about` is the line saying which model answers (choose_model's second value)."""
    generation = model.generation_config
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
            make_answer_fn(model, processor, limits),
            inputs=[image, video, instruction, num_beams, max_new_tokens, do_sample, temperature, top_p],
            outputs=answer,
            api_name="answer",
            # Raw payloads: gradio's Image preprocessing opens the file with PIL and turns a malformed
            # upload into an opaque error; `answer` reads the uploaded files itself and says what is wrong.
            preprocess=False,
        )
    return demo.queue(default_concurrency_limit=limits.concurrency, max_size=limits.queue_size)


def launch(demo: gr.Blocks, limits: Limits = LIMITS, **kwargs):
    """`demo.launch` with the upload limit (a launch setting in gradio 6) and the example's folder served."""
    kwargs.setdefault("max_file_size", limits.max_upload_bytes)
    if EXAMPLE_IMAGE is not None:
        kwargs.setdefault("allowed_paths", [str(EXAMPLE_IMAGE.parent)])
    return demo.launch(**kwargs)


MODEL_NAME, ABOUT_MODEL = choose_model()
model, processor = load_model(MODEL_NAME, os.environ.get(REVISION_VARIABLE) or None)
demo = build_demo(model, processor, LIMITS, ABOUT_MODEL)

if __name__ == "__main__":
    launch(demo)
