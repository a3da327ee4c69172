"""The ``wf`` command line."""
