"""tutorial_utils: the package behind the course "Fine-tuning causal LLMs for text classification".

Notebooks teach the ideas; this package does the plumbing. Start a chapter with::

    from tutorial_utils.setup import session
    profile = session.start()      # COURSE_PROFILE=tiny|cpu|gpu|paper picks the run size

The folders, each importing only those before it (``tests/test_architecture.py`` checks it): ``setup``,
``modeling``, ``data``, ``evaluation``, ``storage``, ``methods``, ``study``, ``production``, ``tools``.
"""

__version__ = "0.1.0"
