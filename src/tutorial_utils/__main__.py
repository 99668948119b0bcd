"""``python -m tutorial_utils ...``: the course's command line (see ``tutorial_utils.tools.cli``; book page "Scaling out")."""

from .tools.cli import main

raise SystemExit(main())
