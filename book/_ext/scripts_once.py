"""Sphinx extension: each inline script once per page.

With Sphinx 7, an inline script an extension adds at build start (sphinx-thebe's
``const THEBE_JS_URL = ...``, sphinx-togglebutton's selector) lands twice in every page's head; the
second ``const`` is a SyntaxError in the reader's browser (.ci/book_in_browser.py caught it).
"""

from __future__ import annotations


def setup(app):
    def once(app, pagename, templatename, context, doctree):
        seen, kept = set(), []
        for script in context.get("script_files", []):
            # the two copies differ only in how they spell "no file": None and ""
            key = (str(getattr(script, "filename", script) or ""),
                   tuple(sorted(getattr(script, "attributes", {}).items())))
            if key not in seen:
                seen.add(key)
                kept.append(script)
        context["script_files"] = kept

    app.connect("html-page-context", once, priority=900)
    return {"parallel_read_safe": True}
