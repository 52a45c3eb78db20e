"""The suite runs two test files at a time (`make test`: pytest-xdist, `--dist loadfile`), and every distributed
training it starts listens on a fixed rendezvous port. Two files naming one port can collide when their runs overlap:
a failure that comes and goes with the order the workers pick files in."""

from __future__ import annotations

import re
from collections import defaultdict

from tests.conftest import PROJECT_ROOT

# torch's rendezvous ports as the tests write them (main_process_port=29533, _run(..., 29541)), and the SLURM daemons'
PORT = re.compile(r"(?<![\w.])(29[4-9]\d\d|168\d\d)(?![\w.])")


def test_no_two_test_files_share_a_port():
    files_by_port: dict[str, set[str]] = defaultdict(set)
    for path in sorted((PROJECT_ROOT / "tests").rglob("*.py")):
        if path.name == "test_suite_ports.py":
            continue
        for port in PORT.findall(path.read_text(encoding="utf-8")):
            files_by_port[port].add(path.relative_to(PROJECT_ROOT).as_posix())
    assert files_by_port, "no ports found: the pattern no longer matches how the tests name them"
    shared = {port: sorted(files) for port, files in files_by_port.items() if len(files) > 1}
    assert not shared, f"ports named by more than one test file: {shared}"
