"""wf.testing: test workflows in pytest, in-process, with time control, mocks and replay of
recorded histories.

``WorkflowTestEnv`` runs a whole engine inside a test on a throwaway database; ``replay`` runs a
workflow's ``run()`` against a recorded ``History`` (``wf instances export``). The pytest
plugin (loaded automatically) gives each test a ``wf_env`` fixture. Nothing here is imported by
``import wf``, and pytest only by the plugin.
"""

from wf.errors import NonDeterminismError as NonDeterminismError
from wf.testing.env import WorkflowTestEnv as WorkflowTestEnv
from wf.testing.errors import InstanceFailed as InstanceFailed
from wf.testing.errors import StatusUnreachable as StatusUnreachable
from wf.testing.errors import TestKitError as TestKitError
from wf.testing.errors import WaitTimedOut as WaitTimedOut
from wf.testing.history import History as History
from wf.testing.history import HistoryStep as HistoryStep
from wf.testing.instance import TestInstance as TestInstance
from wf.testing.replay import replay as replay

__all__ = [
    "History",
    "HistoryStep",
    "InstanceFailed",
    "NonDeterminismError",
    "StatusUnreachable",
    "TestInstance",
    "TestKitError",
    "WaitTimedOut",
    "WorkflowTestEnv",
    "replay",
]
