"""Keeping results: the run record and its key, the results store under ``results/`` and the run cache, where the
chapters keep the same records under a second root (chapters 02, 08). Imports only the folders below it: ``setup``, ``modeling``, ``data``, ``evaluation``."""
