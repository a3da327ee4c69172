"""The web dashboard served by ``wf dev`` at ``/``: server-rendered pages over the same
Controller as the REST API (``install(app)`` in ``wf.dashboard.routes``).

Nothing here is imported by ``import wf``: Jinja2 loads only with the dev server.
"""
