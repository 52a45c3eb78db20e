"""groot-ft: fine-tune GR00T N1.6-style vision-language-action policies on LeRobot datasets.

``import groot_ft`` makes ``AutoModel.from_pretrained(output_dir)`` load a fine-tuned run, as upstream promises,
without importing torch itself: the ``Gr00tN1d6`` architecture is registered with transformers' ``AutoConfig`` and
``AutoModel`` as soon as transformers is imported (at once if it already is). The data stages (validate, stats,
shards) never import transformers, so they start in well under a second and stay small.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import sys

__version__ = "0.1.0"


def _register_architecture() -> None:
    import groot_ft.model  # noqa: F401 - registration side effect


class _RegisterAfterTransformers(importlib.abc.MetaPathFinder):
    """Runs the registration right after ``transformers`` finishes importing."""

    def find_spec(self, fullname, path, target=None):
        if fullname != "transformers":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None:
            return spec
        run_module = spec.loader.exec_module

        def exec_module(module):
            run_module(module)
            _register_architecture()

        spec.loader.exec_module = exec_module
        return spec


if "transformers" in sys.modules:
    _register_architecture()
elif not any(isinstance(f, _RegisterAfterTransformers) for f in sys.meta_path):
    sys.meta_path.insert(0, _RegisterAfterTransformers())
