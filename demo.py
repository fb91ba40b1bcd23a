"""`make demo`: build a small InstructBLIP from scratch, save it as a Hub-ready folder, load it back
the way users do (`AutoModel` / `AutoProcessor` with `trust_remote_code=True`), and answer an
instruction about the bundled image.

The model is tiny and untrained (random weights, tokenizers trained in a second on a small
corpus), so its answer is arbitrary text: the demo shows the whole path a published checkpoint
takes, not a model's quality. Nothing is downloaded.
"""

import argparse
import json
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402
from PIL import Image  # noqa: E402
from transformers import AutoModel, AutoProcessor  # noqa: E402

from modeling_instructblip import paper_generation_config, tiny  # noqa: E402


ROOT = Path(__file__).resolve().parent


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", default="demo_output/instructblip-tiny", help="where to save the model folder")
    parser.add_argument("--image", default=str(ROOT / "assets" / "demo.jpg"))
    parser.add_argument("--instruction", default="What color is the square? Short answer:")
    parser.add_argument("--text-model", default="llama", choices=sorted(tiny.TINY_TEXT), help="the tiny LLM's type")
    parser.add_argument("--max-new-tokens", type=int, default=12)
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


def main():
    args = parse_args()
    output = Path(args.output)

    print(f"1. building a tiny InstructBLIP ({args.text_model} LLM) and its processor")
    model, processor = tiny.build(args.text_model, seed=args.seed)
    model.generation_config = paper_generation_config(model.config.text_config)
    model.generation_config.max_new_tokens = args.max_new_tokens
    trainable = sum(p.numel() for p in model.freeze_for_instruction_tuning().parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    print(f"   {total:,} parameters, {trainable:,} trainable under the paper's freezing")

    print(f"2. saving a Hub-ready folder to {output}")
    model.save_pretrained(output)
    processor.save_pretrained(output)
    for path in sorted(p for p in output.rglob("*") if p.is_file()):
        print(f"   {path.relative_to(output).as_posix():45s} {path.stat().st_size:>10,} bytes")
    auto_map = json.loads((output / "config.json").read_text())["auto_map"]
    print(f"   auto_map: {auto_map}")

    print("3. loading it back with AutoModel / AutoProcessor (trust_remote_code=True)")
    loaded = AutoModel.from_pretrained(output, trust_remote_code=True).eval()
    loaded_processor = AutoProcessor.from_pretrained(output, trust_remote_code=True)
    print(f"   {type(loaded).__module__}.{type(loaded).__name__}")

    print(f"4. answering about {args.image}")
    image = Image.open(args.image)
    inputs = loaded_processor(images=image, text=args.instruction, return_tensors="pt")
    torch.manual_seed(args.seed)
    generated = loaded.generate(**inputs)
    answer = loaded_processor.post_process_generation(generated, inputs["input_ids"])[0]
    print(f"   instruction: {args.instruction}")
    print(f"   answer ({loaded.generation_config.num_beams}-beam search, untrained weights): {answer!r}")


if __name__ == "__main__":
    main()
