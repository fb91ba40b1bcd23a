"""Publishing to the Hugging Face Hub: a model folder as a model repo (`model_repo`) with its card
(`model_card`), the built instruction data as a dataset repo (`dataset_repo`), the Gradio demo in
`space/` as a Space (`space`). `python -m publish --help` is the command line.

Each checks what it is about to upload before it creates anything, so a folder that would not load
on the Hub is refused with the list of what is missing; nothing touches the network unless a
`publish_*` function is called.
"""

from .dataset_repo import check_dataset_folder, export_instruction_data, publish_instruction_data
from .model_card import rewrite_with_results, write_model_card
from .model_repo import IncompleteFolderError, check_model_folder, publish_model
from .space import check_space_folder, publish_space

__all__ = [
    "IncompleteFolderError",
    "check_dataset_folder",
    "check_model_folder",
    "check_space_folder",
    "export_instruction_data",
    "publish_instruction_data",
    "publish_model",
    "publish_space",
    "rewrite_with_results",
    "write_model_card",
]
