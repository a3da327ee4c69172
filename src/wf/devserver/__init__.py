"""The dev server: the aiohttp app (REST API) and the reloading supervisor. No typer, no rich."""
