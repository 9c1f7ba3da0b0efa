"""The Python examples in README.md and docs/ run as written."""

from __future__ import annotations

import shutil
from pathlib import Path

ROOT = Path(__file__).parents[2]


def python_blocks(text: str) -> list[str]:
    blocks, inside, current = [], False, []
    for line in text.splitlines():
        if line.strip() == "```python":
            inside, current = True, []
        elif inside and line.strip() == "```":
            inside = False
            blocks.append("\n".join(current))
        elif inside:
            current.append(line)
    return blocks


def test_docs_python_examples_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    pages = sorted((ROOT / "docs").glob("*.md"))
    blocks = [(page.name, block) for page in pages for block in python_blocks(page.read_text())]
    assert blocks
    for name, block in blocks:
        exec(compile(block, name, "exec"), {})


def test_readme_python_example_runs(tmp_path, monkeypatch, capsys):
    shutil.copytree(ROOT / "configs", tmp_path / "configs")
    monkeypatch.chdir(tmp_path)
    blocks = python_blocks((ROOT / "README.md").read_text())
    assert blocks
    for block in blocks:
        exec(compile(block, "README.md", "exec"), {})
    assert (tmp_path / "outputs" / "demo-digits" / "checkpoints" / "best.ckpt").is_file()
    assert "accuracy" in capsys.readouterr().out
