"""Publishing to the Hugging Face Hub: a model folder as a model repo (`model_repo`), the Gradio demo
in `space/` as a Space (`space`). `python -m publish --help` is the command line.

Both check what they are about to upload before they create anything, so a folder that would not load
on the Hub is refused with the list of what is missing. Nothing here builds models or writes model
cards (`train.py` writes the card with `training.report.write_model_card`); nothing touches the
network unless a `publish_*` function is called.
"""

from .model_repo import IncompleteFolderError, check_model_folder, publish_model
from .space import check_space_folder, publish_space

__all__ = ["IncompleteFolderError", "check_model_folder", "check_space_folder", "publish_model", "publish_space"]
