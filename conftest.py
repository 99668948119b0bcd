"""Test defaults: the tiny profile, no hub, no progress bars (also inherited by nbval's kernels)."""

import os

os.environ.setdefault("COURSE_PROFILE", "tiny")
os.environ.setdefault("COURSE_HIDE_PROGRESS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
