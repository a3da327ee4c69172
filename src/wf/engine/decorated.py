"""Cloudflare's Python forms of the step API, over wf's own.

Cloudflare's Python SDK writes a step as a decorated ``async def`` that is awaited later::

    @step.do("charge", config={"retries": {"limit": 3}})
    async def charge(ctx, cart):          # ctx: the step context; cart: the step named "cart"
        return await bill(cart)

    receipt = await charge()

``step.do`` called without a callback is a decorator factory (``@step.do()`` names the step after
the function). Each parameter of the function is filled by name: ``ctx`` gets the step's
``StepContext``, any other name the result of the decorated step of that name, run first if it
has not run yet (in parameter order, or all together with ``concurrent=True``). A dependency's
result is memoized per step name for the rest of the run, and one still running is shared,
while calling a decorated step directly runs it again (count 2), as Cloudflare does. A name that
is neither raises ``TypeError("Received unexpected parameter <name>")``.

A decorated step that failed for good raises ``StepError`` as ever; when its error was a
``TypeError``, ``ValueError`` or ``NonRetryableError``, the ``StepError`` is one of those too (and
``str()`` is the message), as Cloudflare's SDK re-creates exactly those three by type.

``step.wait_for_event(name, event_type)`` takes the type positionally, as Cloudflare's SDK does,
beside wf's ``type=`` keyword.

These wrap ``WorkflowStep`` and the test kit's replay step alike; each keeps its registry of
decorated steps in a ``_decorated`` slot, one per run.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections.abc import Awaitable, Callable, Generator
from typing import Any

from wf.errors import NonRetryableError, StepError, ValidationError

DoMethod = Callable[..., Awaitable[Any]]


class _Context:
    """Stands for the ``ctx`` parameter until the step context exists."""


_CTX = _Context()


class _Registry:
    """The decorated steps of one run, by step name, and what their dependencies returned."""

    __slots__ = ("in_flight", "memo", "steps")

    def __init__(self) -> None:
        self.steps: dict[str, DecoratedStep] = {}
        self.memo: dict[str, Any] = {}
        self.in_flight: dict[str, asyncio.Task[Any]] = {}

    async def resolve(self, dependency: DecoratedStep | _Context) -> Any:
        if isinstance(dependency, _Context):
            return dependency
        name = dependency.step_name
        if name in self.memo:
            return self.memo[name]
        running = self.in_flight.get(name)
        if running is not None:
            return await running
        return await dependency()


def _registry(step: Any) -> _Registry:
    registry: _Registry | None = getattr(step, "_decorated", None)
    if registry is None:
        registry = step._decorated = _Registry()
    return registry


def accepts_decorator_form(method: DoMethod) -> Callable[..., Any]:
    """Wraps ``do(self, name, *args, **keywords)``: with a callback it is that call (awaited as
    ever); without one, a decorator (``concurrent=`` and ``config=`` are Cloudflare's keywords,
    ``config=`` works beside a callback too)."""

    @functools.wraps(method)
    def do(
        self: Any,
        name: Any = None,
        *args: Any,
        config: Any = None,
        concurrent: bool = False,
        **keywords: Any,
    ) -> Any:
        if not args:
            if callable(name) and config is None and not concurrent and not keywords:
                return StepDecorator(self, method, None, None, False, {})(name)  # bare @step.do
            return StepDecorator(self, method, name, config, concurrent, keywords)
        if concurrent:
            raise ValidationError(
                f"step.do({name!r}, ...): concurrent=True is for the decorator form "
                "(@step.do(..., concurrent=True) on a function); a callback has no dependencies"
            )
        if config is not None:
            if len(args) != 1:
                raise ValidationError(
                    f"step.do({name!r}, ...) got a config twice: as an argument and as config="
                )
            args = (config, *args)
        return method(self, name, *args, **keywords)

    return do


class StepDecorator:
    """What ``step.do(name, config=...)`` returns without a callback: apply it to a function.
    Awaited instead, it raises the error a missing callback always raised."""

    __slots__ = ("_concurrent", "_config", "_keywords", "_method", "_name", "_step")

    def __init__(
        self,
        step: Any,
        method: DoMethod,
        name: str | None,
        config: Any,
        concurrent: bool,
        keywords: dict[str, Any],
    ) -> None:
        self._step = step
        self._method = method
        self._name = name
        self._config = config
        self._concurrent = concurrent
        self._keywords = keywords

    def __call__(self, function: Callable[..., Any]) -> DecoratedStep:
        if not callable(function):
            raise ValidationError(
                f"@step.do(...) decorates a function, got {type(function).__name__}"
            )
        name = self._name if self._name is not None else getattr(function, "__name__", None)
        if not isinstance(name, str):
            raise ValidationError("@step.do() needs a name for a callable that has no __name__")
        decorated = DecoratedStep(self, name, function)
        _registry(self._step).steps[name] = decorated
        return decorated

    def __await__(self) -> Generator[Any, None, Any]:
        args = () if self._config is None else (self._config,)
        return self._method(self._step, self._name, *args, **self._keywords).__await__()

    async def run(self, name: str, body: Callable[..., Any]) -> Any:
        args = () if self._config is None else (self._config,)
        return await self._method(self._step, name, *args, body, **self._keywords)


class DecoratedStep:
    """A decorated step function: ``await it()`` runs it as ``step.do`` (its dependencies
    first) and returns the step's result."""

    def __init__(self, decorator: StepDecorator, name: str, function: Callable[..., Any]) -> None:
        self._decorator = decorator
        self.step_name = name
        self.__wrapped__ = function
        functools.update_wrapper(self, function)

    async def __call__(self) -> Any:
        decorator = self._decorator
        registry = _registry(decorator._step)
        dependencies = self._dependencies(registry)
        if decorator._concurrent:
            values = list(await asyncio.gather(*(registry.resolve(d) for d in dependencies)))
        else:
            values = [await registry.resolve(d) for d in dependencies]
        body = _body(self.__wrapped__, values)
        task = asyncio.ensure_future(decorator.run(self.step_name, body))
        registry.in_flight[self.step_name] = task
        try:
            result = await task
            registry.memo[self.step_name] = result
        except StepError as failed:
            raise _as_cloudflare_raises(failed) from None
        finally:
            if registry.in_flight.get(self.step_name) is task:
                del registry.in_flight[self.step_name]
        return result

    def _dependencies(self, registry: _Registry) -> list[DecoratedStep | _Context]:
        found: list[DecoratedStep | _Context] = []
        for parameter in inspect.signature(self.__wrapped__).parameters.values():
            if parameter.name in registry.steps:
                found.append(registry.steps[parameter.name])
            elif parameter.name == "ctx":
                found.append(_CTX)
            else:
                raise TypeError(f"Received unexpected parameter {parameter.name}")
        return found


# The errors Cloudflare's Python SDK re-creates by type when a step fails (others arrive as a
# plain Exception): a StepError is made one of them too, so ``except ValueError`` still catches.
_RECREATED: dict[str, type[Exception]] = {
    "TypeError": TypeError,
    "ValueError": ValueError,
    "NonRetryableError": NonRetryableError,
}
_RECREATED_CLASSES: dict[str, type[StepError]] = {}


class _CloudflareStepError(StepError):
    def __str__(self) -> str:
        return self.message


def _as_cloudflare_raises(error: StepError) -> StepError:
    base = _RECREATED.get(error.error_name)
    if base is None or isinstance(error, base):
        return error
    cls = _RECREATED_CLASSES.get(error.error_name)
    if cls is None:
        cls = _RECREATED_CLASSES[error.error_name] = type(
            error.error_name, (_CloudflareStepError, base), {"__module__": __name__}
        )
    return cls(error.step_name, error.error_name, error.message, error.attempts)


def _body(function: Callable[..., Any], values: list[Any]) -> Callable[[Any], Any]:
    """The callback ``step.do`` runs: the function with its dependencies' results, and the step
    context where it takes ``ctx``. A plain ``def`` stays one (it runs in a worker thread)."""

    def arguments(ctx: Any) -> list[Any]:
        return [ctx if isinstance(value, _Context) else value for value in values]

    if inspect.iscoroutinefunction(function):

        async def async_body(ctx: Any) -> Any:
            return await function(*arguments(ctx))

        return async_body

    def body(ctx: Any) -> Any:
        return function(*arguments(ctx))

    return body


def accepts_positional_event_type(method: DoMethod) -> Callable[..., Awaitable[Any]]:
    """Wraps ``wait_for_event(self, name, *, type, timeout)`` so that Cloudflare's
    ``wait_for_event(name, event_type, timeout)`` works too."""

    @functools.wraps(method)
    async def wait_for_event(
        self: Any,
        name: str,
        event_type: str | None = None,
        timeout: Any = None,
        **keywords: Any,
    ) -> Any:
        if event_type is not None:
            if "type" in keywords:
                raise ValidationError(
                    f"wait_for_event({name!r}, ...) got the event type twice: "
                    f"{event_type!r} and type={keywords['type']!r}"
                )
            keywords["type"] = event_type
        if timeout is not None:
            keywords["timeout"] = timeout
        return await method(self, name, **keywords)

    return wait_for_event
