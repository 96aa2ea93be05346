"""Each command's --help opens with what it does and examples, not Hydra's stock header."""
from __future__ import annotations

import pytest

from helpers import output_of, run_command


@pytest.mark.parametrize("command,example", [("frcnn-train", "frcnn-train experiment=shapes"),
                                             ("frcnn-eval", "frcnn-eval checkpoint="),
                                             ("frcnn-predict", "frcnn-predict checkpoint="),
                                             ("frcnn-export", "frcnn-export checkpoint=")])
def test_help_says_what_the_command_does(tmp_path, command, example):
    proc = run_command(command, "--help", cwd=tmp_path)
    assert proc.returncode == 0, output_of(proc)
    assert proc.stdout.startswith(f"{command}: "), proc.stdout[:200]
    assert example in proc.stdout and "== Configuration groups ==" in proc.stdout
    assert "powered by Hydra" not in proc.stdout
