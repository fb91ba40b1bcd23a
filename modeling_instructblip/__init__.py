"""InstructBLIP, Hub-native: config, model and processor classes.

The files in this folder that a saved model's `config.json` names in `auto_map` (and their sibling
imports) are copied into every saved model folder, so `trust_remote_code=True` loads them.
"""

from .configuration_instructblip import (
    InstructBlipConfig,
    InstructBlipQFormerConfig,
    InstructBlipVisionConfig,
    paper_generation_config,
)
from .modeling_instructblip import InstructBlipForConditionalGeneration
from .processing_instructblip import InstructBlipImageProcessor, InstructBlipProcessor

__all__ = [
    "InstructBlipConfig",
    "InstructBlipForConditionalGeneration",
    "InstructBlipImageProcessor",
    "InstructBlipProcessor",
    "InstructBlipQFormerConfig",
    "InstructBlipVisionConfig",
    "paper_generation_config",
]
