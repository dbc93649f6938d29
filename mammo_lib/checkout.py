"""Where this checkout keeps what the library finds beside it: the notebooks and the runs."""

from __future__ import annotations

from pathlib import Path

#: the checkout mammo_lib sits in (an installed package has no notebooks/ beside it)
REPO_ROOT = Path(__file__).resolve().parent.parent
#: the numbered notebooks and their params/
NOTEBOOK_DIR = REPO_ROOT / "notebooks"
#: the default folder of run folders
RUNS_DIR = REPO_ROOT / "runs"
