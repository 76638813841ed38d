"""Start-up cost: ``--help`` of every script answers without importing the heavy libraries.

pandas, scipy, openpyxl, scikit-image and nibabel take over a second to import together; they are
imported at first use (:mod:`utils.files.lazy_import`), so ``--help`` and a wrong option answer at once.
The check counts modules, not seconds, so it does not depend on the machine's load.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from tests.conftest import REPO

HEAVY = ("pandas", "scipy", "openpyxl", "skimage", "nibabel")
SCRIPTS = sorted(
    str(p.relative_to(REPO))
    for pattern in ("verse/[0-9]*.py", "nme/[0-9]*.py", "eso/[0-9]*.py", "utils/*.py")
    for p in REPO.glob(pattern)
    if 'if __name__ == "__main__":' in p.read_text()
)


def test_every_script_answers_help_without_heavy_imports():
    assert len(SCRIPTS) >= 24, SCRIPTS  # 20 numbered routines and the 4 mask-QC tools
    code = textwrap.dedent(
        f"""
        import contextlib, importlib.util, io, json, sys
        sys.path.insert(0, {str(REPO)!r})
        found = {{}}
        for rel in {SCRIPTS!r}:
            spec = importlib.util.spec_from_file_location("s" + str(len(found)), {str(REPO)!r} + "/" + rel)
            module = importlib.util.module_from_spec(spec)
            sys.modules[spec.name] = module
            spec.loader.exec_module(module)
            with contextlib.redirect_stdout(io.StringIO()) as out:
                try:
                    module.main(["--help"])
                except SystemExit:
                    pass
            heavy = sorted({{m.split(".")[0] for m in sys.modules}} & set({HEAVY!r}))
            found[rel] = {{"heavy": heavy, "help": len(out.getvalue())}}
        print(json.dumps(found))
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd="/", timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    found = json.loads(proc.stdout.strip().splitlines()[-1])
    first_heavy = next(((rel, r["heavy"]) for rel, r in found.items() if r["heavy"]), None)
    assert first_heavy is None, f"{first_heavy[0]} --help imports {first_heavy[1]}"
    assert all(r["help"] > 100 for r in found.values()), {rel: r["help"] for rel, r in found.items()}
