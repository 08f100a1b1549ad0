"""Importing the package stays light, and the registry entry points at the reproduce callable."""

from __future__ import annotations

import subprocess
import sys


def test_import_is_light():
    code = (
        "import sys, paperzoo_dynamic_llava, paperzoo_dynamic_llava.paper, paperzoo_dynamic_llava.configuration;"
        "heavy = [m for m in ('torch', 'transformers', 'deepspeed', 'triton') if m in sys.modules];"
        "print(','.join(heavy))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == ""


def test_registry_entry():
    from paperzoo_shared.registry import get_paper

    paper = get_paper("dynamic_llava")
    assert paper.package == "paperzoo_dynamic_llava"
    assert callable(paper.load_reproduce())
