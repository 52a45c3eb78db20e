"""`import groot_ft` is cheap, and still makes transformers' Auto classes know the architecture."""

import subprocess
import sys


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)


def test_import_does_not_load_torch():
    proc = _run("import groot_ft, groot_ft.cli, groot_ft.stats, groot_ft.data.validate, sys; "
                "print('torch' in sys.modules, 'transformers' in sys.modules)")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["False", "False"]


def test_auto_classes_know_the_architecture_after_import():
    for code in (
        # groot_ft first, transformers later: registered by the import hook
        "import groot_ft\nfrom transformers import AutoConfig, AutoModel\n"
        "from transformers.models.auto.modeling_auto import MODEL_MAPPING\n"
        "cfg = AutoConfig.for_model('Gr00tN1d6')\nprint(type(cfg).__name__, MODEL_MAPPING[type(cfg)].__name__)",
        # transformers first: registered at once
        "import transformers\nimport groot_ft\nfrom transformers import AutoConfig\n"
        "from transformers.models.auto.modeling_auto import MODEL_MAPPING\n"
        "cfg = AutoConfig.for_model('Gr00tN1d6')\nprint(type(cfg).__name__, MODEL_MAPPING[type(cfg)].__name__)",
    ):
        proc = _run(code)
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert proc.stdout.split() == ["Gr00tN1d6Config", "Gr00tN1d6"]
