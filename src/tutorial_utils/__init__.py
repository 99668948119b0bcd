"""tutorial_utils: the package behind the course "Fine-tuning causal LLMs for text classification".

Notebooks teach the ideas; this package does the plumbing. Start a chapter with::

    from tutorial_utils import session
    profile = session.start()      # COURSE_PROFILE=tiny|cpu|gpu|paper picks the run size
"""

__version__ = "0.1.0"
