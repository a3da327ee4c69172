"""Project templates for ``wf init`` (package data, not code).

Each folder is one template. When ``wf init`` copies a template, it renames files that start with
``dot-`` to start with ``.``. It strips the ``.tmpl`` suffix and replaces ``${name}`` placeholders
in those files. The suffix keeps the templates' Python files away from the repository's own
linters, type checker and tests.
"""
