"""wf: durable workflows for Python, in the spirit of Cloudflare Workflows.

A user's workflow module imports from here; importing ``wf`` loads only the engine's model and
step API (never the server, CLI or terminal-rendering libraries).
"""

from wf.engine.bindings import Env as Env
from wf.engine.bindings import WorkflowBinding as WorkflowBinding
from wf.engine.bindings import WorkflowInstance as WorkflowInstance
from wf.engine.entrypoint import WorkflowEntrypoint as WorkflowEntrypoint
from wf.engine.model import RetryConfig as RetryConfig
from wf.engine.model import StepConfig as StepConfig
from wf.engine.model import StepContext as StepContext
from wf.engine.model import WorkflowEvent as WorkflowEvent
from wf.engine.model import WorkflowSchedule as WorkflowSchedule
from wf.engine.model import WorkflowStepEvent as WorkflowStepEvent
from wf.engine.rollback import RollbackContext as RollbackContext
from wf.engine.step import WorkflowStep as WorkflowStep
from wf.errors import InstanceAlreadyExists as InstanceAlreadyExists
from wf.errors import InstanceError as InstanceError
from wf.errors import InstanceNotFound as InstanceNotFound
from wf.errors import InvalidTransition as InvalidTransition
from wf.errors import NonDeterminismError as NonDeterminismError
from wf.errors import NonRetryableError as NonRetryableError
from wf.errors import StepError as StepError
from wf.errors import WfError as WfError
from wf.errors import WorkflowFatalError as WorkflowFatalError

__version__ = "0.1.0"

__all__ = [
    "Env",
    "InstanceAlreadyExists",
    "InstanceError",
    "InstanceNotFound",
    "InvalidTransition",
    "NonDeterminismError",
    "NonRetryableError",
    "RetryConfig",
    "RollbackContext",
    "StepConfig",
    "StepContext",
    "StepError",
    "WfError",
    "WorkflowBinding",
    "WorkflowEntrypoint",
    "WorkflowEvent",
    "WorkflowFatalError",
    "WorkflowInstance",
    "WorkflowSchedule",
    "WorkflowStep",
    "WorkflowStepEvent",
    "__version__",
]
