"""Setting up a run: the run-size profiles, the session every chapter opens with, where models live, input checks,
safe file writes, timing and the parameter budgets (chapters 00-01). Imports nothing else of the package."""
