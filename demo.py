"""Load a Hub-ready InstructBLIP folder the way users do (`AutoModel` / `AutoProcessor` with
`trust_remote_code=True`) and answer an instruction about the bundled image.

`make demo` runs it on the folder `train.py configs/demo.yaml` just wrote (a tiny model trained on
the bundled synthetic corpus). Without `--model`, it first builds a tiny untrained InstructBLIP
from scratch and saves it as a Hub-ready folder, so its answer is arbitrary text: that shows the
path a published checkpoint takes, not a model's quality. Nothing is downloaded.
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


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="a saved model folder (or Hub id) to load; default: build a tiny one")
    parser.add_argument("--output", default="demo_output/instructblip-tiny", help="where to save the built model")
    parser.add_argument("--image", default=str(ROOT / "assets" / "demo.jpg"))
    parser.add_argument("--instruction", default="What color is the square? Short answer:")
    parser.add_argument("--text-model", default="llama", choices=sorted(tiny.TINY_TEXT), help="the tiny LLM's type")
    parser.add_argument("--max-new-tokens", type=int, default=12)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data_dir", help="the sample corpus: report held-in VQAv2 validation accuracy per question kind")
    parser.add_argument("--cache_dir", help="the builders' cache (the one train.py used)")
    parser.add_argument("--report", help="also write the report here (.md; a .json with the numbers beside it)")
    return parser.parse_args(argv)


def held_in_report(model, processor, data_dir: str, cache_dir: str | None = None, batch_size: int = 32) -> dict:
    """Answer every VQAv2 validation question of the sample corpus in `data_dir`; `answer_report`
    against the training questions' image-blind baseline."""
    import datasets

    from dataset_builders import load
    from training.report import answer_report
    from training.trainer import GenerationEval

    coco = os.path.join(data_dir, "coco")
    train = load("vqav2", coco, "train", cache_dir=cache_dir)
    validation = load("vqav2", coco, "validation", cache_dir=cache_dir).cast_column("image", datasets.Image(decode=False))
    records = list(validation)
    predictions = GenerationEval(processor, records, batch_size=batch_size).predict(model)
    return answer_report(predictions, records, list(train.remove_columns(["image", "frames"])))


def build_untrained(args) -> Path:
    output = Path(args.output)
    print(f"building a tiny untrained InstructBLIP ({args.text_model} LLM) and its processor")
    model, processor = tiny.build(args.text_model, seed=args.seed)
    model.generation_config = paper_generation_config(model.config.text_config)
    trainable = sum(p.numel() for p in model.freeze_for_instruction_tuning().parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    print(f"   {total:,} parameters, {trainable:,} trainable under the paper's freezing")
    model.save_pretrained(output)
    processor.save_pretrained(output)
    return output


def main(argv=None):
    args = parse_args(argv)
    folder = Path(args.model) if args.model else build_untrained(args)

    print(f"the Hub-ready folder {folder}:")
    if folder.is_dir():
        for path in sorted(p for p in folder.glob("**/*") if p.is_file() and "checkpoint-" not in str(p)):
            if "runs" not in path.relative_to(folder).parts:
                print(f"   {path.relative_to(folder).as_posix():45s} {path.stat().st_size:>10,} bytes")
        print(f"   auto_map: {json.loads((folder / 'config.json').read_text())['auto_map']}")

    print("loading it with AutoModel / AutoProcessor (trust_remote_code=True)")
    model = AutoModel.from_pretrained(folder, trust_remote_code=True).eval()
    processor = AutoProcessor.from_pretrained(folder, trust_remote_code=True)
    print(f"   {type(model).__module__}.{type(model).__name__}")

    image = Image.open(args.image)
    inputs = processor(images=image, text=args.instruction, return_tensors="pt")
    torch.manual_seed(args.seed)
    generated = model.generate(**inputs, max_new_tokens=args.max_new_tokens)
    answer = processor.post_process_generation(generated, inputs["input_ids"])[0]
    print(f"answering about {args.image}")
    print(f"   instruction: {args.instruction}")
    print(f"   answer ({model.generation_config.num_beams}-beam search): {answer!r}")

    if args.data_dir:
        from training.report import format_answer_report

        print(f"answering the held-in validation questions of {args.data_dir} (greedy)")
        report = held_in_report(model, processor, args.data_dir, args.cache_dir)
        table = format_answer_report(report)
        print(table)
        if args.report:
            Path(args.report).parent.mkdir(parents=True, exist_ok=True)
            Path(args.report).write_text(f"# Held-in answers of {folder}\n\n{table}\n")
            Path(args.report).with_suffix(".json").write_text(json.dumps(report, indent=2))
        return report


if __name__ == "__main__":
    main()
