"""The README's Python example runs as written (in a scratch folder)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_python_example_runs(tmp_path):
    """In a fresh interpreter, as a user would run it (see tests/e2e/conftest.py for why not in this process)."""
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert len(blocks) == 1
    p = subprocess.run([sys.executable, "-c", blocks[0]], cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "out-tiny" in p.stdout
    assert (tmp_path / "out-tiny" / "report.md").is_file()
    assert (tmp_path / "out-tiny" / "tiny-random_main_int16_w8.tflite").is_file()


def test_readme_is_short():
    assert len(README.read_text().splitlines()) <= 200
