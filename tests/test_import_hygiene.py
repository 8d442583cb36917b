"""The library must not pull in the CLI stack: notebooks and other tools import it."""

import subprocess
import sys


def test_library_import_loads_neither_click_nor_rich():
    code = (
        "import sys, tokentrail, tokentrail.case.ingest, tokentrail.output;"
        "bad = [m for m in ('click', 'rich') if m in sys.modules];"
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
