"""Bounds on every template render: output size, format widths, loop iterations, wall time.

jinja2's sandbox keeps templates away from Python's internals but not from the machine: a
template can ask for a billion-character string (``'%999999999s'|format('x')``), loop over two
nested ``range(100000)``, or double a string forty times. :class:`BoundedSandbox` renders every
template (body or subject) under a :class:`RenderLimits` budget:

- **output size**: the text a render writes (and, apart, the text written into macros and
  ``set``, ``filter`` and ``call`` blocks), and every string, list or mapping a filter, a
  call, an operator or ``~`` builds, hold at most ``max_output_chars`` items; numbers at most
  ``MAX_INT_BITS`` bits;
- **format widths**: widths and precisions in ``%`` formats (the ``format`` filter, ``%``),
  ``str.format`` / ``format_map`` fields and ``t()`` strings, and the widths given to ``center``,
  ``ljust``, ``rjust``, ``zfill``, ``indent``, ``batch``, ``slice``... are at most
  ``max_format_width``; ``replace``, ``join``, ``wordwrap`` and ``expandtabs`` are refused when
  what they would build is longer than ``max_output_chars``, before they build it;
- **loop iterations**: the iterations of every ``{% for %}`` of the render, nested or not, and of
  the calls of ``loop(...)`` in recursive loops, count against one total, ``max_loop_iterations``;
- **wall time**: a render running longer than ``max_seconds`` stops at its next loop iteration,
  call or filter, or within the next 32 pieces of output it writes (in between, a template
  runs straight-line code, no longer than its source: attributes and items are not timed).

Going past a limit raises :class:`RenderLimitError` (a ``SecurityError``) naming the limit and
its setting; the renderer turns it into a ``TemplateError`` naming the template and line. The
budget is per render, kept in a context variable, so threads rendering at the same time do not
share one.
"""

from __future__ import annotations

import contextvars
import re
import time
import types
from collections.abc import Callable, Iterable, Iterator, Mapping, Sized
from contextlib import contextmanager
from dataclasses import dataclass
from functools import wraps
from string import Formatter
from typing import TYPE_CHECKING, Any

import jinja2
from jinja2 import nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.exceptions import SecurityError
from jinja2.runtime import LoopContext
from jinja2.sandbox import ImmutableSandboxedEnvironment, SandboxedFormatter
from jinja2.utils import _PassArg
from markupsafe import EscapeFormatter, Markup

if TYPE_CHECKING:
    from nurture.settings import Settings

__all__ = [
    "DEFAULT_RENDER_LIMITS",
    "MAX_INT_BITS",
    "BoundedFormatter",
    "BoundedSandbox",
    "RenderLimitError",
    "RenderLimits",
]

MAX_INT_BITS = 8192
"""Largest integer a template may build, in bits (``**`` alone is held to fewer)."""

_CLOCK_STRIDE = 32
"""Chunks of output written between two readings of the clock (see ``BoundedSandbox.concat``)."""

_LOOP_FILTER = "nurture_counted_loop"
"""The filter every ``{% for %}`` iterable goes through (registered on the environment)."""


@dataclass(frozen=True)
class RenderLimits:
    """The bounds of one render (see the module docstring).

    Attributes:
        max_output_chars: Longest output of a render, and longest string (or largest list or
            mapping) a template may build.
        max_format_width: Largest width or precision in a format, or width given to a filter.
        max_loop_iterations: Iterations of all the loops of one render together.
        max_seconds: Longest wall time of one render.
    """

    max_output_chars: int = 1_000_000
    max_format_width: int = 1_000
    max_loop_iterations: int = 100_000
    max_seconds: float = 5.0

    @classmethod
    def of(cls, settings: Settings) -> RenderLimits:
        """The limits the settings give (``render_max_*``)."""
        return cls(
            max_output_chars=settings.render_max_output_chars,
            max_format_width=settings.render_max_format_width,
            max_loop_iterations=settings.render_max_loop_iterations,
            max_seconds=settings.render_max_seconds,
        )


DEFAULT_RENDER_LIMITS = RenderLimits()
"""The limits of ``Settings``' defaults."""


class RenderLimitError(SecurityError):
    """A template went past one of the render limits."""


class _Budget:
    """What one render has used of its limits."""

    def __init__(self, limits: RenderLimits) -> None:
        self.limits = limits
        self.deadline = time.monotonic() + limits.max_seconds
        self.output = 0
        self.buffered = 0
        self.iterations = 0

    def time_error(self) -> RenderLimitError | None:
        """The error to raise when the wall time is spent, else None."""
        if time.monotonic() > self.deadline:
            return RenderLimitError(
                f"rendering took longer than {self.limits.max_seconds:g} s "
                "(setting render_max_seconds)"
            )
        return None

    def tick(self) -> None:
        """Refuse to go on once the wall time is spent."""
        if time.monotonic() > self.deadline:
            error = self.time_error()
            if error is not None:
                raise error

    def output_error(self, size: int) -> RenderLimitError | None:
        """Count ``size`` more characters of output; the error when that is too many."""
        self.output += size
        if self.output > self.limits.max_output_chars:
            return RenderLimitError(
                f"output longer than {self.limits.max_output_chars} characters "
                "(setting render_max_output_chars)"
            )
        return None

    def count_buffered(self, size: int) -> None:
        """Count text written into macros and blocks (joined when they end) against the limit.

        It is counted apart from the output: what a macro returns is output again where it is
        called.
        """
        self.buffered += size
        if self.buffered > self.limits.max_output_chars:
            raise RenderLimitError(
                f"more than {self.limits.max_output_chars} characters written in macros and "
                "blocks (setting render_max_output_chars)"
            )
        self.tick()

    def count_iteration(self) -> None:
        """Count one loop iteration against the total."""
        self.iterations += 1
        if self.iterations > self.limits.max_loop_iterations:
            raise RenderLimitError(
                f"more than {self.limits.max_loop_iterations} loop iterations in one render "
                "(setting render_max_loop_iterations)"
            )
        self.tick()

    def check_size(self, size: int, what: str) -> None:
        """Refuse to build ``what`` of ``size`` items when that is over the output limit."""
        if size > self.limits.max_output_chars:
            raise RenderLimitError(
                f"{what} would hold {size} items, more than {self.limits.max_output_chars} "
                "(setting render_max_output_chars)"
            )

    def check_width(self, width: Any, what: str) -> None:
        """Refuse a width or count larger than the format width limit."""
        if isinstance(width, int) and width > self.limits.max_format_width:
            raise RenderLimitError(
                f"{what} {width} is larger than {self.limits.max_format_width} "
                "(setting render_max_format_width)"
            )

    def check_value(self, value: Any) -> Any:
        """``value``, when its size is within the limits."""
        if isinstance(value, _SIZED):
            size = len(value)
            if size > self.limits.max_output_chars:  # the name is only built for the error
                self.check_size(size, f"a {type(value).__name__}")
        elif isinstance(value, int) and value.bit_length() > MAX_INT_BITS:
            raise RenderLimitError(f"a number larger than {MAX_INT_BITS} bits")
        return value


_SIZED = (str, bytes, list, tuple, dict, set, frozenset)
"""The values ``check_value`` measures by their length."""


_BUDGET: contextvars.ContextVar[_Budget | None] = contextvars.ContextVar(
    "nurture_render_budget", default=None
)


@contextmanager
def _budget_for(limits: RenderLimits) -> Iterator[_Budget]:
    """The budget of the render in progress, or a new one for a render that starts."""
    current = _BUDGET.get()
    if current is not None:
        yield current
        return
    budget = _Budget(limits)
    token = _BUDGET.set(budget)
    try:
        yield budget
    finally:
        _BUDGET.reset(token)


# --- format widths ---------------------------------------------------------------------------

_PERCENT_SPEC = re.compile(r"%(?:\([^)]*\))?([#0 +\-]*(?:\*|\d+)?(?:\.(?:\*|\d+))?)")
_DIGITS = re.compile(r"\d+")


def _check_spec(budget: _Budget, spec: str, what: str) -> None:
    """Refuse a format spec whose width or precision is over the limit.

    Every run of digits in a spec is a width, a precision or a one-digit fill character, so
    checking each run is enough.
    """
    if "*" in spec:
        raise RenderLimitError(f"{what}: a width or precision taken from the arguments ('*')")
    for digits in _DIGITS.findall(spec):
        budget.check_width(int(digits), f"{what}: width or precision")


def _check_percent_format(budget: _Budget, text: Any) -> None:
    if isinstance(text, str):
        for spec in _PERCENT_SPEC.findall(text):
            _check_spec(budget, spec, "% format")


class _BoundedFormatting:
    """``format_field`` of a formatter, checking the spec's widths first."""

    def format_field(self, value: Any, format_spec: str) -> Any:
        budget = _BUDGET.get()
        if budget is not None:
            budget.tick()
            _check_spec(budget, format_spec, "format field")
        return super().format_field(value, format_spec)  # type: ignore[misc]


class BoundedFormatter(_BoundedFormatting, SandboxedFormatter):
    """The sandbox's ``str.format``, with widths and precisions bounded."""


class _BoundedEscapeFormatter(_BoundedFormatting, SandboxedFormatter, EscapeFormatter):
    """The sandbox's ``Markup.format``, with widths and precisions bounded."""


# --- filters and calls that build large values from small ones -------------------------------


def _length(value: Any) -> int:
    return len(value) if isinstance(value, Sized) else len(str(value))


def _check_join(budget: _Budget, separator: Any, items: Any) -> None:
    """Refuse to join ``items`` (a list: see ``_listed``) into a string over the limit."""
    if not isinstance(items, Iterable):
        return
    listed = list(items)
    budget.check_size(len(listed), "a joined list")
    total = sum(_length(item) for item in listed) + _length(separator) * max(len(listed) - 1, 0)
    budget.check_size(total, "a joined string")


def _listed(args: tuple[Any, ...], index: int) -> tuple[Any, ...]:
    """``args`` with the iterator at ``index`` (what a join joins) made a list, to be measured."""
    if len(args) > index:
        value = args[index]
        if isinstance(value, Iterator):
            return (*args[:index], list(value), *args[index + 1 :])
    return args


def _check_replace(budget: _Budget, text: Any, old: Any, new: Any, count: Any = -1) -> None:
    text, old, new = str(text), str(old), str(new)
    times = text.count(old) if old else len(text) + 1
    if isinstance(count, int) and count >= 0:
        times = min(times, count)
    budget.check_size(len(text) + times * max(len(new) - len(old), 0), "a replaced string")


def _check_indent(budget: _Budget, text: Any, width: Any = 4, *args: Any, **kwargs: Any) -> None:
    budget.check_width(width, "indent width")
    prefix = len(width) if isinstance(width, str) else width if isinstance(width, int) else 0
    lines = str(text).count("\n") + 1
    budget.check_size(len(str(text)) + lines * prefix, "an indented string")


def _check_wordwrap(budget: _Budget, text: Any, *args: Any, **kwargs: Any) -> None:
    text = str(text)
    width = kwargs.get("width", args[0] if args else 79)
    wrapstring = kwargs.get("wrapstring", args[2] if len(args) > 2 else None)
    separator = len(str(wrapstring)) if wrapstring is not None else 2
    per_line = width if isinstance(width, int) and width > 0 else 1
    breaks = min(len(text), text.count(" ") + text.count("\n") + len(text) // per_line + 1)
    budget.check_size(len(text) + breaks * separator, "a wrapped string")


def _check_first_width(what: str, name: str) -> Callable[..., None]:
    """A check of the filter's first argument after its value, named ``name``."""

    def check(budget: _Budget, value: Any, *args: Any, **kwargs: Any) -> None:
        budget.check_width(kwargs.get(name, args[0] if args else 0), what)

    return check


def _check_format_filter(budget: _Budget, value: Any, *args: Any, **kwargs: Any) -> None:
    _check_percent_format(budget, value)


def _check_join_filter(budget: _Budget, value: Any, d: Any = "", *args: Any, **kw: Any) -> None:
    _check_join(budget, d, value)


def _check_lipsum(
    budget: _Budget, n: Any = 5, html: Any = True, min: Any = 20, max: Any = 100
) -> None:
    budget.check_width(n, "lipsum paragraphs")
    budget.check_width(max, "lipsum words")


_FILTER_CHECKS: dict[str, Callable[..., None]] = {
    "center": _check_first_width("center width", "width"),
    "indent": _check_indent,
    "batch": _check_first_width("batch size", "linecount"),
    "slice": _check_first_width("slice count", "slices"),
    "wordwrap": _check_wordwrap,
    "tojson": _check_first_width("tojson indent", "indent"),
    "format": _check_format_filter,
    "join": _check_join_filter,
    "replace": _check_replace,
}
"""Checks run before the filters that can build a value much larger than their input."""

_STR_METHOD_CHECKS: dict[str, Callable[..., None]] = {
    "center": _check_first_width("center width", "width"),
    "ljust": _check_first_width("ljust width", "width"),
    "rjust": _check_first_width("rjust width", "width"),
    "zfill": _check_first_width("zfill width", "width"),
    "expandtabs": lambda budget, text, tabsize=8: budget.check_size(
        len(text) + text.count("\t") * (tabsize if isinstance(tabsize, int) else 8),
        "expanded tabs",
    ),
    "replace": _check_replace,
    "join": lambda budget, separator, items: _check_join(budget, separator, items),
}
"""Checks run before the string methods that can build a large string from a small one."""


def _bounded_filter(
    name: str, function: Callable[..., Any], limits: RenderLimits
) -> Callable[..., Any]:
    """``function`` (the filter ``name``) run within the budget of the render.

    Outside a render (jinja2 calls filters on constants while compiling) it gets a budget of
    its own: a constant bomb is refused there too, and left for the render to report.
    """
    check = _FILTER_CHECKS.get(name)
    skip = 1 if _PassArg.from_obj(function) is not None else 0

    is_join = name == "join"

    def run(budget: _Budget, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        budget.tick()
        if check is not None:
            if is_join:
                args = _listed(args, skip)
            check(budget, *args[skip:], **kwargs)
        return budget.check_value(function(*args, **kwargs))

    @wraps(function)  # keeps ``jinja_pass_arg``
    def bounded(*args: Any, **kwargs: Any) -> Any:
        budget = _BUDGET.get()
        if budget is None:  # outside a render: a budget of its own
            with _budget_for(limits) as budget:
                return run(budget, args, kwargs)
        return run(budget, args, kwargs)

    return bounded


class _BoundedFilters(dict[str, Callable[..., Any]]):
    """The filters of an environment, each added run within the budget of the render."""

    def __init__(self, limits: RenderLimits) -> None:
        super().__init__()
        self.limits = limits

    def __setitem__(self, name: str, function: Callable[..., Any]) -> None:
        super().__setitem__(name, _bounded_filter(name, function, self.limits))


def _counted_loop(iterable: Any) -> Any:
    """``iterable``, each item counted against the render's loop iterations."""
    budget = _BUDGET.get()
    if budget is None or isinstance(iterable, jinja2.Undefined):
        return iterable
    return _count(budget, iterable)


def _count(budget: _Budget, iterable: Iterable[Any]) -> Iterator[Any]:
    for item in iterable:
        budget.count_iteration()
        yield item


class _BoundedCodeGenerator(CodeGenerator):
    """jinja2's code generator, with the hooks the limits need.

    Loop iterables are counted, ``~``'s results checked, and the text written into macros and
    ``set``, ``filter`` and ``call`` blocks counted as it is written.
    """

    _in_buffer = False

    def visit_Template(self, node: nodes.Template, frame: Frame | None = None) -> None:
        # Before any code is written: the filters a template uses are looked up first.
        for loop in node.find_all(nodes.For):
            if not (isinstance(loop.iter, nodes.Filter) and loop.iter.name == _LOOP_FILTER):
                loop.iter = nodes.Filter(
                    loop.iter, _LOOP_FILTER, [], [], None, None, lineno=loop.iter.lineno
                )
        super().visit_Template(node, frame)

    def visit_Output(self, node: nodes.Output, frame: Frame) -> None:
        # Output into a buffer is joined only when the block ends: count it as it is written.
        self._in_buffer = frame.buffer is not None
        try:
            super().visit_Output(node, frame)
        finally:
            self._in_buffer = False

    def _output_const_repr(self, group: Iterable[Any]) -> str:
        value = super()._output_const_repr(group)
        return f"environment.count_buffered({value})" if self._in_buffer else value

    def _output_child_pre(self, node: nodes.Expr, frame: Frame, finalize: Any) -> None:
        if self._in_buffer:
            self.write("environment.count_buffered(")
        super()._output_child_pre(node, frame, finalize)

    def _output_child_post(self, node: nodes.Expr, frame: Frame, finalize: Any) -> None:
        super()._output_child_post(node, frame, finalize)
        if self._in_buffer:
            self.write(")")

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        self.write("environment.check_value(")
        super().visit_Concat(node, frame)
        self.write(")")


class _BoundedTemplate(jinja2.Template):
    """A template whose every render runs under its environment's limits."""

    def render(self, *args: Any, **kwargs: Any) -> str:
        environment = self.environment
        assert isinstance(environment, BoundedSandbox)
        with _budget_for(environment.limits):
            return super().render(*args, **kwargs)


class BoundedSandbox(ImmutableSandboxedEnvironment):
    """jinja2's immutable sandbox, every render bounded by ``limits`` (module docstring).

    Args:
        limits: The bounds of each render.
        **options: As for ``jinja2.Environment``.
    """

    code_generator_class = _BoundedCodeGenerator
    template_class = _BoundedTemplate
    intercepted_binops = frozenset({"+", "%"})

    def __init__(self, limits: RenderLimits = DEFAULT_RENDER_LIMITS, **options: Any) -> None:
        super().__init__(**options)
        self.limits = limits
        filters = _BoundedFilters(limits)
        for name, function in self.filters.items():
            filters[name] = function
        filters[_LOOP_FILTER] = _counted_loop
        self.filters = filters

    def formatter(self) -> SandboxedFormatter:
        """A ``string.Formatter`` for strings formatted outside templates (``t()``), bounded."""
        return BoundedFormatter(self)

    def concat(self, chunks: Iterable[str]) -> str:
        """The output of a render, refused past the output limit."""
        budget = _BUDGET.get()
        if budget is None:
            return "".join(chunks)
        parts: list[str] = []
        append = parts.append
        # Counted here, not in ``budget.output``: nothing else writes to it during a render.
        written, limit, deadline = budget.output, budget.limits.max_output_chars, budget.deadline
        for count, chunk in enumerate(chunks, 1):
            written += len(chunk)
            # The clock is read every _CLOCK_STRIDE chunks: a chunk is built by calls, filters
            # and lookups that read it too.
            if written > limit or (not count % _CLOCK_STRIDE and time.monotonic() > deadline):
                budget.output = written - len(chunk)
                error = budget.output_error(len(chunk)) or budget.time_error()
                if error is not None:
                    throw = getattr(chunks, "throw", None)
                    if throw is not None:
                        throw(error)  # raised where the template wrote it: the line is known
                    raise error
            append(chunk)
        budget.output = written
        return "".join(parts)

    def count_buffered(self, text: str) -> str:
        """``text``, written into a macro or block, counted against the output limit."""
        budget = _BUDGET.get()
        if budget is not None:
            budget.count_buffered(len(text))
        return text

    def check_value(self, value: Any) -> Any:
        """``value``, when its size is within the limits of the render in progress."""
        budget = _BUDGET.get()
        return value if budget is None else budget.check_value(value)

    def call_binop(
        self, context: jinja2.runtime.Context, operator: str, left: Any, right: Any
    ) -> Any:
        """``left operator right`` within the limits (``%`` formats' widths, result sizes)."""
        budget = _BUDGET.get()
        if budget is not None:
            budget.tick()
            if operator == "%":
                _check_percent_format(budget, left)
        return self.check_value(super().call_binop(context, operator, left, right))

    def call(
        __self, __context: jinja2.runtime.Context, __obj: Any, *args: Any, **kwargs: Any
    ) -> Any:
        """Call ``__obj`` from a template, within the limits."""
        budget = _BUDGET.get()
        if budget is not None:
            budget.tick()
            if isinstance(__obj, LoopContext) and args:  # loop(children) in a recursive loop
                args = (_count(budget, args[0]), *args[1:])
            check = _call_check(__self, __obj)
            if check is not None:
                if getattr(__obj, "__name__", None) == "join":
                    args = _listed(args, 0)
                named = {k: v for k, v in kwargs.items() if k not in _CONTEXT_ARGS}
                check(budget, *args, **named)
        return __self.check_value(super().call(__context, __obj, *args, **kwargs))

    def getattr(self, obj: Any, attribute: str) -> Any:
        """``obj.attribute`` from a template.

        The clock is not read here: between two loop iterations, calls, filters or 32 pieces
        of output (which read it) a template runs straight-line code, as long as its source.
        """
        if type(obj) is dict and attribute not in _DICT_ATTRIBUTES:
            # What the sandbox does, without raising and catching an AttributeError first: a
            # plain dict has no attribute of that name, so ``obj.name`` is ``obj["name"]``.
            try:
                return obj[attribute]
            except KeyError:
                return self.undefined(obj=obj, name=attribute)
        return super().getattr(obj, attribute)

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        """``str.format`` / ``format_map`` of a template string, its widths bounded."""
        if not isinstance(value, types.MethodType | types.BuiltinMethodType) or (
            value.__name__ not in ("format", "format_map")
        ):
            return None
        text = value.__self__
        if not isinstance(text, str):
            return None
        formatter: Formatter = (
            _BoundedEscapeFormatter(self, escape=text.escape)
            if isinstance(text, Markup)
            else BoundedFormatter(self)
        )
        str_type = type(text)
        is_format_map = value.__name__ == "format_map"

        def wrapper(*args: Any, **kwargs: Any) -> str:
            if is_format_map:
                if kwargs or len(args) != 1:
                    raise TypeError("format_map() takes exactly one argument")
                mapping: Mapping[str, Any] = args[0]
                return str_type(formatter.vformat(text, (), mapping))
            return str_type(formatter.vformat(text, args, kwargs))

        return wrapper


_DICT_ATTRIBUTES = frozenset(dir(dict))
"""The attributes of a plain dict (its methods...): ``getattr`` leaves them to the sandbox."""

_CONTEXT_ARGS = frozenset({"_block_vars", "_loop_vars"})
"""Keyword arguments jinja2 adds to calls in blocks and loops (``Context.call`` drops them)."""


def _call_check(environment: BoundedSandbox, obj: Any) -> Callable[..., None] | None:
    """The check to run before calling ``obj`` from a template, if any."""
    if isinstance(obj, types.BuiltinMethodType | types.MethodType) and isinstance(
        obj.__self__, str
    ):
        check = _STR_METHOD_CHECKS.get(obj.__name__)
        if check is None:
            return None
        text = obj.__self__
        return lambda budget, *args, **kwargs: check(budget, text, *args, **kwargs)
    if obj is environment.globals.get("lipsum"):
        return _check_lipsum
    return None
