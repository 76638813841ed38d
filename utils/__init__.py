"""The toolkit's shared library and command-line tools.

At the top: the tools the tutorials call (``python utils/<tool>.py``). Below: the library in twelve
layered subpackages, lowest first — files, geometry, labels, run, archive, dataset, maskqc, review,
export, report, audit, diff — each importing only from itself and the ones before it
(``docs/architecture.md``; checked by ``tests/test_import_layers.py``).
"""

from utils.run.requirements_check import require_dependencies as _require_dependencies

_require_dependencies()  # one clear line instead of a ModuleNotFoundError traceback when run outside the environment
