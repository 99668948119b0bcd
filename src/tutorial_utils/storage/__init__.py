"""Keeping results: the run record and its key, the results store under ``results/`` and the chapters' run cache
(chapter 08). Imports only the folders below it: ``setup``, ``modeling``, ``data``, ``evaluation``."""
