"""groot-ft: fine-tune GR00T N1.6-style vision-language-action policies on LeRobot datasets.

Importing the package registers the ``Gr00tN1d6`` architecture with transformers' ``AutoConfig``/``AutoModel``, so
``import groot_ft; AutoModel.from_pretrained(output_dir)`` loads a fine-tuned run as upstream promises.
"""

__version__ = "0.1.0"

from groot_ft import model as _model  # noqa: E402,F401 - registration side effect
