"""``python -m tutorial_utils ...``: the course's command line (see ``tutorial_utils.cli``; book page "Scaling out")."""

from .cli import main

raise SystemExit(main())
