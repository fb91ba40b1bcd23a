"""Publish the Gradio demo in `space/` as a Hugging Face Space.

The Space is `space/` (app.py, requirements.txt, README.md whose front matter names the SDK) plus what
the app imports from this repository, uploaded beside it: `modeling_instructblip/` (the tiny model the
app builds when no model is configured, and the paper's video frame sampler, next to the processor) and the
example image. The model the Space serves is the Space variable `INSTRUCTBLIP_MODEL` (and
`INSTRUCTBLIP_REVISION`), set here. Everything goes up in one commit, so a Space never runs a
half-uploaded app. This module must not build models or start the app.
"""

from pathlib import Path

from .model_repo import IncompleteFolderError

ROOT = Path(__file__).resolve().parent.parent
SPACE_DIR = ROOT / "space"
# path in the Space -> local path
BUNDLED = {
    "modeling_instructblip": ROOT / "modeling_instructblip",
    "assets/demo.jpg": ROOT / "assets" / "demo.jpg",
}
MODEL_VARIABLE = "INSTRUCTBLIP_MODEL"
REVISION_VARIABLE = "INSTRUCTBLIP_REVISION"
SKIPPED = ("__pycache__", ".pyc", ".pytest_cache")


def _files(local: Path, in_repo: str) -> list[tuple[str, Path]]:
    if local.is_file():
        return [(in_repo, local)]
    prefix = f"{in_repo}/" if in_repo else ""
    return [
        (prefix + path.relative_to(local).as_posix(), path)
        for path in sorted(local.rglob("*"))
        if path.is_file() and not any(part in path.as_posix() for part in SKIPPED)
    ]


def check_space_folder(space_dir=SPACE_DIR, bundled: dict | None = None) -> list[tuple[str, Path]]:
    """(path in the Space, local path) for every file the Space gets; raises `IncompleteFolderError`
    naming what is missing (app file, requirements, a README whose front matter runs a gradio app)."""
    from huggingface_hub import SpaceCard

    space_dir = Path(space_dir)
    bundled = BUNDLED if bundled is None else bundled
    problems = []
    data = {}
    if not (space_dir / "README.md").is_file():
        problems.append("README.md: missing (its front matter tells the Hub how to run the Space)")
    else:
        try:
            data = SpaceCard.load(space_dir / "README.md").data.to_dict()
        except Exception as error:
            problems.append(f"README.md: the front matter does not parse ({error})")
    if data:
        if data.get("sdk") != "gradio":
            problems.append(f"README.md: sdk is {data.get('sdk')!r}, expected 'gradio'")
        if not data.get("sdk_version"):
            problems.append("README.md: no sdk_version (the gradio version the app was tested with)")
        app_file = data.get("app_file")
        if not app_file:
            problems.append("README.md: no app_file")
        elif not (space_dir / app_file).is_file():
            problems.append(f"{app_file}: named as app_file in README.md, but not in {space_dir}")
    if not (space_dir / "requirements.txt").is_file():
        problems.append("requirements.txt: missing (what the app imports besides gradio)")
    for in_repo, local in bundled.items():
        if not local.exists():
            problems.append(f"{in_repo}: bundled from {local}, which does not exist")
    if problems:
        raise IncompleteFolderError(space_dir, problems)
    files = _files(space_dir, "")
    for in_repo, local in bundled.items():
        files += _files(local, in_repo)
    return files


def publish_space(
    repo_id: str,
    *,
    model_id: str | None = None,
    model_revision: str | None = None,
    token: str | None = None,
    private: bool | None = None,
    hardware: str | None = None,
    commit_message: str = "Upload InstructBLIP demo",
    endpoint: str | None = None,
    space_dir=SPACE_DIR,
):
    """Check the Space folder, create the Space if needed (gradio SDK), set the model variables, and
    upload the app with what it imports in one commit. Returns the `CommitInfo`."""
    from huggingface_hub import CommitOperationAdd, HfApi

    files = check_space_folder(space_dir)
    api = HfApi(endpoint=endpoint, token=token)
    repo_id = api.create_repo(
        repo_id, repo_type="space", space_sdk="gradio", private=private, exist_ok=True, space_hardware=hardware
    ).repo_id
    if model_id:
        api.add_space_variable(repo_id, MODEL_VARIABLE, model_id, description="Hub id of the InstructBLIP model")
    if model_revision:
        api.add_space_variable(repo_id, REVISION_VARIABLE, model_revision, description="revision of the model")
    operations = [CommitOperationAdd(path_in_repo=in_repo, path_or_fileobj=str(local)) for in_repo, local in files]
    return api.create_commit(repo_id, operations, commit_message=commit_message, repo_type="space")
