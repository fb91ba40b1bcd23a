"""`python -m publish model FOLDER REPO_ID` / `python -m publish space REPO_ID --model REPO_ID` /
`python -m publish card FOLDER --eval-dir EVAL_DIR` /
`python -m publish dataset REPO_ID --data_dir ROOT --datasets coco_caption,vqav2 [--splits train] [--out FOLDER]`.

Uploads check first and print what is missing; `--check` stops there (nothing is sent). The token comes
from `HF_TOKEN` or `hf auth login`, the Hub address from `HF_ENDPOINT`.
"""

import argparse
import json
import os
import shlex
import sys


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="python -m publish", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)

    model = commands.add_parser("model", help="upload a trained or converted model folder as a model repo")
    model.add_argument("folder", help="the saved model folder (model + processor + generation config + README.md)")
    model.add_argument("repo_id", help="e.g. your-org/instructblip-vicuna-7b")
    model.add_argument("--card-summary", metavar="JSON",
                       help="write README.md first with publish.model_card.write_model_card, from this JSON file of "
                            "its keyword arguments (model_name, base_models, datasets, origin, ...): for a folder "
                            "train.py did not write, e.g. a converted checkpoint")
    model.add_argument("--eval-dir", help="add evaluate.py's results (EVAL_DIR/results.json) to the card first")
    model.add_argument("--create-pr", action="store_true", help="open a pull request instead of committing to main")

    card = commands.add_parser("card", help="write a folder's model card again, with evaluation results")
    card.add_argument("folder", help="a folder whose card write_model_card wrote (train.py does)")
    card.add_argument("--eval-dir", help="evaluate.py's --output_dir (its results.json goes into the card)")
    card.add_argument("--repo-id", help="the repo the loading snippet names")
    card.add_argument("--revision", help="the commit the loading snippet pins")

    space = commands.add_parser("space", help="upload the Gradio demo in space/ as a Space")
    space.add_argument("repo_id", help="e.g. your-org/instructblip-demo")
    space.add_argument("--model", dest="model_id", help="the model repo the Space serves (default: the tiny demo model)")
    space.add_argument("--model-revision", help="pin the model to this commit")
    space.add_argument("--hardware", help="Space hardware, e.g. cpu-basic, t4-small")

    dataset = commands.add_parser(
        "dataset", help="build instruction data from the raw releases and upload it as a dataset repo (Parquet, "
                        "images embedded, one config per dataset)")
    dataset.add_argument("repo_id", help="e.g. your-org/instructblip-instruction-data")
    dataset.add_argument("--data_dir", "--data-dir", dest="data_dir",
                         help="ROOT: each dataset's official raw release in ROOT/<name>, as its builder documents")
    dataset.add_argument("--datasets", help="comma-separated registry names, e.g. coco_caption,vqav2,gqa")
    dataset.add_argument("--splits", help="comma-separated, for every dataset (default: train for held-in "
                                          "datasets, the evaluation split for held-out ones)")
    dataset.add_argument("--out", help="the folder to export to and upload (default: hub_datasets/<repo name>)")
    dataset.add_argument("--cache_dir", "--cache-dir", dest="cache_dir", help="the builders' cache")
    dataset.add_argument("--errors", choices=("fail", "skip"), help="bad raw records: stop, or skip and count them "
                                                                    "(the builders' default: fail)")
    dataset.add_argument("--seed", type=int, help="seed of the templates drawn per record (builders' default: 0)")
    dataset.add_argument("--max_shard_size", "--max-shard-size", dest="max_shard_size", default="500MB")
    dataset.add_argument("--upload_only", "--upload-only", dest="upload_only", action="store_true",
                         help="upload the --out folder as it is (resume an interrupted upload without rebuilding)")
    dataset.add_argument("--create-pr", action="store_true", help="open a pull request instead of committing to main")

    for sub in (model, space, dataset):
        sub.add_argument("--private", action="store_true", default=None, help="create the repo private")
        sub.add_argument("--message", help="commit message")
        sub.add_argument("--check", action="store_true", help="only check and list the files; send nothing")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    from huggingface_hub import constants

    from .model_repo import IncompleteFolderError, check_model_folder, publish_model
    from .space import check_space_folder, publish_space

    from .model_card import rewrite_with_results, write_model_card

    args = parse_args(argv)
    if args.command == "card":
        changes = {k: v for k, v in (("repo_id", args.repo_id), ("revision", args.revision)) if v}
        print(f"wrote {rewrite_with_results(args.folder, args.eval_dir, **changes)}")
        return 0
    try:
        if args.command == "model":
            if args.card_summary:
                with open(args.card_summary) as handle:
                    write_model_card(args.folder, **json.load(handle))
            if args.eval_dir:
                rewrite_with_results(args.folder, args.eval_dir, repo_id=args.repo_id)
            files = check_model_folder(args.folder)
        elif args.command == "dataset":  # imports datasets: only here
            from .dataset_repo import check_dataset_folder, publish_instruction_data

            args.out = args.out or os.path.join("hub_datasets", args.repo_id.split("/")[-1])
            status = 0 if args.upload_only else export_dataset_folder(args, sys.argv[1:] if argv is None else argv)
            if status:
                return status
            files = check_dataset_folder(args.out)
        else:
            files = [in_repo for in_repo, _ in check_space_folder()]
    except IncompleteFolderError as error:
        print(error, file=sys.stderr)
        return 1
    print(f"{len(files)} files ready to upload to {args.repo_id}")
    if args.check:
        print("\n".join(f"  {name}" for name in files))
        return 0
    if constants.HF_HUB_OFFLINE:
        print("HF_HUB_OFFLINE is set (the Makefile sets it for tests); run with HF_HUB_OFFLINE=0 to publish.",
              file=sys.stderr)
        return 1
    if args.command == "model":
        info = publish_model(args.folder, args.repo_id, private=args.private, create_pr=args.create_pr,
                             **({"commit_message": args.message} if args.message else {}))
        print(f"uploaded: {info.commit_url}")
        print(f"load it pinned: AutoModel.from_pretrained({args.repo_id!r}, revision={info.oid!r}, trust_remote_code=True)")
    elif args.command == "dataset":
        info = publish_instruction_data(args.out, args.repo_id, private=args.private, create_pr=args.create_pr,
                                        **({"commit_message": args.message} if args.message else {}))
        print(f"uploaded: {info.commit_url}")
        print(f"load it pinned: load_dataset({args.repo_id!r}, <config>, revision={info.oid!r})")
    else:
        info = publish_space(args.repo_id, model_id=args.model_id, model_revision=args.model_revision,
                             private=args.private, hardware=args.hardware,
                             **({"commit_message": args.message} if args.message else {}))
        print(f"uploaded: {info.commit_url}")
    return 0


def export_dataset_folder(args, argv) -> int:
    """`python -m publish dataset`'s first steps: build every (dataset, split) with dataset_builders.load from
    the raw releases under --data_dir, and export them to --out. Returns the exit status (0: exported)."""
    from dataset_builders import RecordError

    from .dataset_repo import build_instruction_data, export_instruction_data

    if not args.data_dir or not args.datasets:
        print("pass --data_dir ROOT and --datasets NAME,... (or --upload_only to upload --out as it is)", file=sys.stderr)
        return 2
    names = [name.strip() for name in args.datasets.split(",") if name.strip()]
    splits = [split.strip() for split in args.splits.split(",") if split.strip()] if args.splits else None
    options = {key: value for key, value in (("errors", args.errors), ("seed", args.seed)) if value is not None}
    try:
        built, reports = build_instruction_data(args.data_dir, names, splits, cache_dir=args.cache_dir, **options)
    except (FileNotFoundError, KeyError, ValueError, RecordError) as error:
        print(error.args[0] if isinstance(error, KeyError) else error, file=sys.stderr)
        return 1
    export_instruction_data(built, args.out, max_shard_size=args.max_shard_size, reports=reports,
                            commands=[shlex.join(["python", "-m", "publish", *argv])])
    return 0

if __name__ == "__main__":
    sys.exit(main())
