"""Build-time generators for the reference pages of the documentation site (docs/reference).

``hook.py`` is the MkDocs hook (mkdocs.yml ``hooks:``): it replaces each
``<!-- generated: NAME -->`` marker of a page with the Markdown that ``GENERATORS[NAME]`` builds
from the code itself (the Typer app, the OpenAPI document, wf.toml's annotated example, the error
and limit constants), so the reference cannot drift from what wf does. Each generator is a plain
function, tested in tests/docs/test_reference.py.
"""
