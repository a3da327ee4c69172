"""wf.testing: test workflows in pytest, in-process, with time control, mocks and replay."""
