"""Out of the course: your data end to end, serving a trained run, exporting it and distilling it into a fast
student (chapters 07 and 09). Only ``tools`` imports it."""
