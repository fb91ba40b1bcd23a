"""The Space demo (`space/app.py`) as people use it: served on loopback, driven from headless Chromium
(upload, type, click, read the answer), called through `gradio_client`, and sent 20 requests at once.
It runs the tiny model the app builds when `INSTRUCTBLIP_MODEL` is unset.

The browser test needs a Chromium ($CHROMIUM, else `chromium` on PATH; `make test` installs Debian's
package when it is missing, tools/ensure_chromium.sh) and Playwright's Python package; it fails,
naming the install step, when either is missing.
"""

import importlib.util
import os
import shutil
import threading
from importlib.metadata import version
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # read when gradio is imported

import numpy as np  # noqa: E402
import PIL.Image  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from tests.helpers import IMAGE, INSTRUCTION, SPACE, ask, import_app  # noqa: E402  (app, url, client: tests/conftest.py)

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("CHROMIUM") or shutil.which("chromium") or "chromium"  # as tools/ensure_chromium.sh
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]


def write_video(path, frames=8, size=(64, 48)):
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=8)
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        for index in range(frames):
            pixels = np.full((size[1], size[0], 3), index * 30, np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")))
        container.mux(stream.encode())
    return path


def test_space_readme_runs_this_app_with_the_tested_versions():
    from huggingface_hub import SpaceCard
    from packaging.version import Version

    data = SpaceCard.load(SPACE / "README.md").data
    assert (data.sdk, data.app_file) == ("gradio", "app.py")
    assert data.sdk_version == version("gradio")
    for line in (SPACE / "requirements.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, pinned = line.split("==")
            assert Version(version(name)).public == pinned, f"{name}: tested with {version(name)}, Space pins {pinned}"


def test_api_answers_about_an_image(client):
    endpoints = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    assert list(endpoints) == ["/answer"]
    assert ask(client).strip()
    assert ask(client, beams=2, sample=True, temperature=0.7, top_p=0.8).strip()


def test_api_answers_about_a_short_video(client, tmp_path):
    assert ask(client, image=None, video=write_video(tmp_path / "clip.mp4")).strip()


@pytest.mark.parametrize(
    "case, message",
    [
        ("malformed image", "Could not read the image"),
        ("huge canvas", "this demo takes up to 40,000,000 pixels"),
        ("broken video", "Could not use the video"),
        ("no image", "Upload an image (or a short video) first"),
        ("image and video", "Give an image or a video, not both"),
        ("empty instruction", "Type an instruction"),
        ("huge instruction", "The instruction is 5,000 characters; this demo takes up to 2,000"),
        ("too many new tokens", "Max new tokens must be between 1 and 256"),
        ("too many beams", "Beams must be between 1 and 5"),
    ],
)
def test_bad_requests_get_a_message_not_a_stack_trace(client, tmp_path, case, message):
    from gradio_client.exceptions import AppError

    garbage = tmp_path / "photo.jpg"
    garbage.write_bytes(b"this is not a JPEG " * 20)
    canvas = tmp_path / "canvas.png"
    PIL.Image.new("1", (8_000, 6_000)).save(canvas)  # 48 megapixels in a few kB
    kwargs = {
        "malformed image": dict(image=str(garbage)),
        "huge canvas": dict(image=str(canvas)),
        "broken video": dict(image=None, video=str(garbage).replace(".jpg", ".mp4")),
        "no image": dict(image=None),
        "image and video": dict(video=str(write_video(tmp_path / "clip.mp4"))),
        "empty instruction": dict(instruction="   "),
        "huge instruction": dict(instruction="x" * 5_000),
        "too many new tokens": dict(max_new_tokens=100_000),
        "too many beams": dict(beams=50),
    }[case]
    if case == "broken video":
        garbage.rename(kwargs["video"])
    with pytest.raises(AppError) as caught:
        ask(client, **kwargs)
    assert message in str(caught.value)
    assert "Traceback" not in str(caught.value)


def test_oversized_uploads_are_refused(app, url, tmp_path):
    import httpx

    big = tmp_path / "big.jpg"
    big.write_bytes(os.urandom(app.LIMITS.max_upload_bytes + 1))
    # by the server, before the file is stored (the browser and gradio_client check this limit too)
    with big.open("rb") as handle:
        response = httpx.post(f"{url}gradio_api/upload", files={"files": ("big.jpg", handle, "image/jpeg")})
    assert response.status_code == 413 and "maximum allowed size" in response.text
    # and by the app itself, for a file that reached it another way
    answer = app.make_answer_fn(app.model, app.processor, app.LIMITS)
    with pytest.raises(Exception, match="this demo takes files up to 10 MB"):
        answer(str(big), None, INSTRUCTION, 1, 8, False, 1.0, 0.9)


def test_an_instruction_longer_than_the_model_reads_is_cut_with_a_warning(app):
    answer = app.make_answer_fn(app.model, app.processor, app.LIMITS)
    long_instruction = " ".join(["what is in the picture"] * 60)
    with pytest.warns(UserWarning, match="the model reads its last 128"):
        assert answer(str(IMAGE), None, long_instruction, 1, 4, False, 1.0, 0.9).strip()


@pytest.mark.slow
def test_twenty_concurrent_requests_are_batched_and_all_get_answers(app, client, monkeypatch):
    """20 requests at once: all answered, `generate` never runs twice at once, and requests share calls."""
    running, most = [0], [0]
    lock = threading.Lock()
    generate = app.model.generate

    def counting_generate(*args, **kwargs):
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        try:
            return generate(*args, **kwargs)
        finally:
            with lock:
                running[0] -= 1

    monkeypatch.setattr(app.model, "generate", counting_generate)
    app.demo.batcher.batch_sizes.clear()
    from gradio_client import handle_file

    jobs = [client.submit(handle_file(str(IMAGE)), None, f"{INSTRUCTION} ({i})", 1, 4, False, 1.0, 0.9,
                          api_name="/answer") for i in range(20)]
    answers = [job.result(timeout=120) for job in jobs]
    assert len(answers) == 20 and all(answer.strip() for answer in answers)
    assert most[0] == 1  # one model worker
    sizes = app.demo.batcher.batch_sizes
    assert sum(sizes) == 20 and max(sizes) > 1 and len(sizes) < 20, sizes


def test_a_batch_answers_as_one_request_at_a_time_would(app):
    """Batched generation (padded prompts of different lengths, one `generate` call) gives each request
    the answer it gets alone; a request with other settings is answered in its own group."""
    from concurrent.futures import ThreadPoolExecutor

    image = app.read_image(str(IMAGE), app.LIMITS)
    instructions = [INSTRUCTION, "A short image description:", "Question: how many shapes are there in the picture? Short answer:"]
    greedy = dict(num_beams=1, max_new_tokens=6, do_sample=False)
    alone = app.Batcher(app.model, app.processor, app.LIMITS)
    expected = [alone.submit({"images": [image]}, text, greedy) for text in instructions]
    assert alone.batch_sizes == [1, 1, 1]

    batcher = app.Batcher(app.model, app.processor, app.LIMITS, start=False)  # all four queued before it runs
    beams = dict(num_beams=2, max_new_tokens=6, do_sample=False)
    with ThreadPoolExecutor(4) as pool:
        jobs = [pool.submit(batcher.submit, {"images": [image]}, text, greedy) for text in instructions]
        other = pool.submit(batcher.submit, {"images": [image]}, INSTRUCTION, beams)
        while batcher.pending.qsize() < 4:
            threading.Event().wait(0.01)
        batcher.start()
        assert [job.result(timeout=60) for job in jobs] == expected
    assert other.result(timeout=60) == alone.submit({"images": [image]}, INSTRUCTION, beams)
    assert sorted(batcher.batch_sizes) == [1, 3]


def test_the_quantization_follows_the_hardware_unless_set(app):
    assert app.choose_quantization({}, cuda=False) == "int8"
    assert app.choose_quantization({}, cuda=True) == "bf16"
    assert app.choose_quantization({"INSTRUCTBLIP_QUANTIZATION": "NF4"}, cuda=True) == "nf4"
    assert app.choose_quantization({"INSTRUCTBLIP_QUANTIZATION": "none"}, cuda=False) == "none"
    with pytest.raises(ValueError, match="INSTRUCTBLIP_QUANTIZATION='int3': expected one of auto, int8"):
        app.choose_quantization({"INSTRUCTBLIP_QUANTIZATION": "int3"})


def test_a_configured_model_is_served_int8_on_a_cpu(app, tmp_path):
    from modeling_instructblip import tiny

    model, processor = tiny.build("llama")
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    loaded, loaded_processor = app.load_model(str(tmp_path), quantization=app.choose_quantization({}, cuda=False))
    assert type(loaded.language_model.model.layers[0].mlp.up_proj.weight).__name__ == "Int8Tensor"
    assert loaded.language_projection.weight.dtype == torch.bfloat16 and type(loaded.language_projection.weight) is torch.nn.Parameter
    answer = app.make_answer_fn(loaded, loaded_processor, app.LIMITS)
    assert answer(str(IMAGE), None, INSTRUCTION, 1, 4, False, 1.0, 0.9).strip()


def test_a_small_model_is_served_nf4_on_a_cpu(app, tmp_path):
    """bitsandbytes' AVX512 4-bit kernel fails on layers narrower than it packs (the tiny Llama is 48
    wide): those keep bitsandbytes' plain path, and the Space answers, with the paper's 5 beams."""
    pytest.importorskip("bitsandbytes")
    from modeling_instructblip import tiny

    model, processor = tiny.build("llama")
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    loaded, loaded_processor = app.load_model(str(tmp_path), quantization="nf4")
    layers = {name: m for name, m in loaded.named_modules() if type(m).__name__ == "Linear4bit"}
    assert layers and all(name.startswith("language_model.") for name in layers)
    narrow = {name for name, m in layers.items() if m.out_features % 32 or m.in_features % 64}
    assert narrow and all(not layers[name].support_avx512bf16_for_cpu for name in narrow)
    answer = app.make_answer_fn(loaded, loaded_processor, app.LIMITS)
    assert answer(str(IMAGE), None, INSTRUCTION, 5, 4, False, 1.0, 0.9).strip()


@pytest.mark.slow
def test_a_person_uploads_an_image_asks_and_reads_an_answer(url, tmp_path, record_property):
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"Chromium not found ({CHROMIUM}): install Debian's package with `apt-get install -y chromium` "
                    "(or point $CHROMIUM at a Chromium binary); `make test` does this when it can")
    try:
        from playwright.sync_api import expect, sync_playwright
    except ImportError:
        pytest.fail("Playwright's Python package is missing: `pip install playwright==1.65.2` (it drives the system "
                    "Chromium; no browser download is needed)")
    screenshot = tmp_path / "space.png"
    record_property("screenshot", str(screenshot))
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(url)
            instruction = page.get_by_label("Instruction")
            instruction.fill(INSTRUCTION)
            page.get_by_role("button", name="Answer").click()
            expect(page.get_by_text("Upload an image (or a short video) first")).to_be_visible(timeout=30_000)

            page.locator("input[type=file]").first.set_input_files(str(IMAGE))
            expect(page.get_by_role("img", name="Image").or_(page.locator("img[src*='demo.jpg']")).first).to_be_visible()
            page.get_by_role("button", name="Answer").click()
            answer = page.get_by_label("Answer")
            expect(answer).not_to_have_value("", timeout=60_000)
            assert answer.input_value().strip()
            page.screenshot(path=str(screenshot), full_page=True)
        finally:
            browser.close()
    print(f"screenshot: {screenshot}")


def test_a_configured_model_is_loaded_with_remote_code(app, tmp_path):
    from modeling_instructblip import tiny

    model, processor = tiny.build("llama")
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    loaded, loaded_processor = app.load_model(str(tmp_path))
    assert type(loaded).__module__.startswith("transformers_modules.")
    answer = app.make_answer_fn(loaded, loaded_processor, app.LIMITS)
    assert answer(str(IMAGE), None, INSTRUCTION, 1, 4, False, 1.0, 0.9).strip()


def _page_text(demo) -> str:
    import gradio as gr

    return "\n".join(block.value for block in demo.blocks.values() if isinstance(block, gr.Markdown))


def test_a_fresh_checkout_serves_the_random_model_and_says_so(app):
    assert app.MODEL_NAME is None
    assert "untrained" in _page_text(app.demo) and "make demo" in _page_text(app.demo)


def test_after_make_demo_the_app_serves_the_trained_model(tmp_path):
    """With `INSTRUCTBLIP_MODEL` unset, the folder `make demo` wrote is what answers, and the page names it."""
    from modeling_instructblip import tiny

    model, processor = tiny.build("llama", seed=3)
    trained = tmp_path / "demo_output" / "instructblip-tiny-trained"
    model.save_pretrained(trained)
    processor.save_pretrained(trained)
    served = import_app(tmp_path, name="instructblip_space_app_trained", environ={"INSTRUCTBLIP_QUANTIZATION": "none"})
    assert served.MODEL_NAME == str(trained)
    text = _page_text(served.demo)
    assert "`make demo` trained" in text and "demo_output/instructblip-tiny-trained" in text
    assert "untrained" not in text and "Held as" not in text
    expected = model.state_dict()
    for key, value in served.model.state_dict().items():
        torch.testing.assert_close(value, expected[key], rtol=0, atol=0, msg=key)
    answer = served.make_answer_fn(served.model, served.processor, served.LIMITS)
    assert isinstance(answer(str(IMAGE), None, INSTRUCTION, 1, 4, False, 1.0, 0.9), str)


def test_on_a_cpu_the_demo_folder_is_served_int8_and_the_page_says_so(tmp_path):
    from modeling_instructblip import tiny

    model, processor = tiny.build("llama", seed=3)
    trained = tmp_path / "demo_output" / "instructblip-tiny-trained"
    model.save_pretrained(trained)
    processor.save_pretrained(trained)
    served = import_app(tmp_path, name="instructblip_space_app_int8")
    assert served.QUANTIZATION == ("bf16" if torch.cuda.is_available() else "int8")
    assert f"Held as: {served.QUANTIZATION}" in _page_text(served.demo)


@pytest.mark.parametrize("wanted", ["nf4", "int8"])
def test_a_checkpoint_saved_int8_is_served_as_saved_whatever_the_setting(tmp_path, wanted):
    """A published int8 checkpoint (the smallest to serve on a CPU) is held as saved: transformers
    refuses to re-quantize it another way (NF4), and the page says which quantization answers."""
    from torchao.quantization import Int8WeightOnlyConfig
    from transformers import TorchAoConfig

    from modeling_instructblip import InstructBlipForConditionalGeneration, tiny

    model, processor = tiny.build("llama", seed=3)
    model.save_pretrained(tmp_path / "fp32")
    saved = tmp_path / "demo_output" / "instructblip-tiny-trained"
    int8 = InstructBlipForConditionalGeneration.from_pretrained(
        tmp_path / "fp32", dtype=torch.bfloat16, quantization_config=TorchAoConfig(Int8WeightOnlyConfig())
    )
    int8.save_pretrained(saved)
    processor.save_pretrained(saved)
    served = import_app(tmp_path, name=f"instructblip_space_app_saved_{wanted}", environ={"INSTRUCTBLIP_QUANTIZATION": wanted})
    assert served.SAVED_QUANTIZATION == "torchao"
    assert type(served.model.language_model.model.layers[0].mlp.up_proj.weight).__name__ == "Int8Tensor"
    assert "Held as saved: quantized with torchao" in _page_text(served.demo)
    answer = served.make_answer_fn(served.model, served.processor, served.LIMITS)
    assert answer(str(IMAGE), None, INSTRUCTION, 1, 4, False, 1.0, 0.9).strip()


def test_a_configured_model_wins_over_the_demo_folder(app, tmp_path):
    (tmp_path / "demo_output" / "instructblip-tiny-trained").mkdir(parents=True)
    (tmp_path / "demo_output" / "instructblip-tiny-trained" / "config.json").write_text("{}")
    assert app.choose_model({"INSTRUCTBLIP_MODEL": "org/model"}, tmp_path) == ("org/model", "Model: `org/model`.")
    assert app.choose_model({}, tmp_path)[0] == str(tmp_path / "demo_output" / "instructblip-tiny-trained")
    assert app.choose_model({}, tmp_path / "elsewhere") == (None, app.RANDOM_MODEL_NOTE)


@pytest.mark.slow
def test_the_batching_benchmark_runs_at_smoke_size(tmp_path, monkeypatch):
    """benchmarks/bench_space.py end to end (the random tiny model, 1 and 2 clients, one repeat)."""
    monkeypatch.setenv("INSTRUCTBLIP_QUANTIZATION", "auto")  # restored afterwards: the benchmark sets it
    monkeypatch.delenv("INSTRUCTBLIP_MODEL", raising=False)
    spec = importlib.util.spec_from_file_location("bench_space", ROOT / "benchmarks" / "bench_space.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    output = tmp_path / "BENCHMARKS.md"
    rates = bench.main(["--model", str(tmp_path / "none"), "--clients", "1,2", "--requests", "2", "--repeats", "1",
                        "--output", str(output)])
    assert set(rates) == {(name, c) for name in ("one at a time", "batched") for c in (1, 2)}
    assert all(r[0] > 0 for r in rates.values())
    assert "## Space: batched serving" in output.read_text() and "| 2 |" in output.read_text()
