"""GR00T N1.7 (``Gr00tN1d7``): the Cosmos-Reason2 / Qwen3-VL backbone and the N1.7 action head, beside N1.6.

Importing registers ``Gr00tN1d7`` with ``AutoConfig`` / ``AutoModel`` (``model_type`` ``Gr00tN1d7``), so a released
checkpoint directory's ``config.json`` and safetensors load through ``Gr00tN1d7.from_pretrained``. Not yet here: the
N1.7 processor / collator, the workflow switch, the LeRobot parity test, the gated backbone fetch (docs/model.md).
"""

from transformers import AutoConfig, AutoModel

from .action_head import Gr00tN1d7ActionHead, rtc_velocity_weights
from .backbone import Qwen3VLBackbone, images_to_patches
from .configuration import COSMOS_REASON2_2B, Gr00tN1d7Config
from .modeling import Gr00tN1d7, Gr00tN1d7Output
from .presets import N17_PRESETS, RELEASED_3B_PARAMETERS, n17_preset

# exist_ok: re-importing re-registers the current class objects instead of raising.
AutoConfig.register(Gr00tN1d7Config.model_type, Gr00tN1d7Config, exist_ok=True)
AutoModel.register(Gr00tN1d7Config, Gr00tN1d7, exist_ok=True)

__all__ = [
    "COSMOS_REASON2_2B",
    "Gr00tN1d7",
    "Gr00tN1d7ActionHead",
    "Gr00tN1d7Config",
    "Gr00tN1d7Output",
    "N17_PRESETS",
    "Qwen3VLBackbone",
    "RELEASED_3B_PARAMETERS",
    "images_to_patches",
    "n17_preset",
    "rtc_velocity_weights",
]
