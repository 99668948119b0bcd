"""The fair comparison: which runs each study needs, running them into the store, its tables, the claims ledger
and the T4 estimate (chapters 06 and 08). Imports the folders below it, never ``production`` or ``tools``."""
