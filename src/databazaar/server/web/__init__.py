"""The market's web pages for buyers, sellers and admins (Jinja2, server-rendered).

``mount_web(app)`` attaches the pages and their static files to an app built by
:func:`databazaar.server.app.create_app`; ``router`` is the pages' route group.
"""

from databazaar.server.web.router import mount_web, router

__all__ = ["mount_web", "router"]
