"""``wf serve``: the long-running, token-authenticated server that runs deployed versions.

The server process owns the database and the HTTP API; each version that still has unfinished
instances runs in a worker process of its own (``wf.server.worker``), so an in-flight instance
always runs the code it started on.
"""
