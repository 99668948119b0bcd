"""Test defaults for every test and for chapters given to pytest directly: the tiny profile, no hub, no progress bars
(also inherited by nbval's kernels). It sits at the repository root so that `pytest chapters/04_instruction_tuning.ipynb`
runs on tiny too, not on the default cpu profile."""

import os

os.environ.setdefault("COURSE_PROFILE", "tiny")
os.environ.setdefault("COURSE_HIDE_PROGRESS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
