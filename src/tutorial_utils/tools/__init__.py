"""Commands and benchmarks: the command line, the cost benchmarks, the Colab stack rehearsal and the hub stand-ins.
Nothing in the package but ``__main__`` imports ``tools``; its lazy imports keep ``python -m tutorial_utils`` quick to start."""
