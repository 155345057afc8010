"""The worked examples of docs/from-notes-to-code.md and of the classic modules' docstrings run as doctests."""

from __future__ import annotations

import doctest
from pathlib import Path

import pytest

import numcnn.functional.subsampling
import numcnn.layers.connections
import numcnn.models
import numcnn.optim
import numcnn.reference

DOCS = Path(__file__).resolve().parents[1] / "docs"
OPTIONS = doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS


def test_from_notes_to_code_examples():
    result = doctest.testfile(str(DOCS / "from-notes-to-code.md"), module_relative=False, optionflags=OPTIONS)
    assert result.attempted > 40
    assert result.failed == 0


@pytest.mark.parametrize(
    "module",
    [numcnn.reference, numcnn.functional.subsampling, numcnn.layers.connections, numcnn.optim, numcnn.models],
    ids=repr,
)
def test_module_docstring_examples(module):
    result = doctest.testmod(module, optionflags=OPTIONS)
    assert result.attempted > 0 and result.failed == 0


def test_readme_python_examples_run(tmp_path, monkeypatch):
    """The README's Python blocks run in order, in one namespace, as a reader would paste them
    (in an empty folder: they write files such as mine.npz)."""
    import re

    monkeypatch.chdir(tmp_path)
    readme = (DOCS.parent / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", readme, re.S)
    assert len(blocks) >= 2
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, "README.md", "exec"), namespace)
    assert namespace["report"].passed
    assert [name for name, *_ in namespace["block"].named_parameters()][:1] == ["conv1.weight"]
