"""One registry for every ``{type, kwargs}`` component (mechanisms, engines, entry policies, report
strategies, observation networks): configs name a registered class, never code to eval.

    POLICIES = Registry("policy", base=EntryPolicy, injected=("rng",), plugins=True)

    @POLICIES.register("threshold")
    class ThresholdPolicy(EntryPolicy): ...

    checked = POLICIES.check({"type": "threshold", "kwargs": {"cost": 0.3}})  # nothing is built
    policy = POLICIES.build({"type": "threshold", "kwargs": {"cost": 0.3}}, rng)

A registry maps a name to a class or, with ``lazy=True``, to a function that imports and returns
the class, so that a heavy module is imported only when its component is used. ``check`` validates
a spec without building anything: the type (did-you-mean on a typo), every kwarg against the
constructor's signature, then the class's own pure validator ``check_settings(settings)``, given
every setting with the defaults filled in. With ``plugins=True`` a type may also be an import path,
``"package.module:ClassName"``: the class is imported with importlib and must subclass ``base``.

Problems raise ``SpecError`` (a ValueError) with ``field`` (``"type"``, ``"kwargs"``,
``"kwargs.<name>"``, or ``""`` for the spec itself), ``problem`` and ``fix``: callers that know the
file (the scenario loader) turn them into one line ``file: field: problem — fix``. Validators
raise ``SettingError`` to name the kwarg at fault; ``CheckedSettings`` and the check factories
below write such validators declaratively.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import math
import numbers
from collections.abc import Callable, Iterator, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

__all__ = [
    "Check",
    "Checked",
    "CheckedSettings",
    "Registry",
    "SettingError",
    "SpecError",
    "finite",
    "integer",
    "nonnegative",
    "one_of",
    "positive",
    "probability",
    "read_spec",
]


class SpecError(ValueError):
    """A ``{type, kwargs}`` spec that cannot be built; ``str(err)`` is ``problem — fix``."""

    def __init__(self, field: str, problem: str, fix: str = "") -> None:
        self.field = field
        self.problem = problem
        self.fix = fix
        super().__init__(f"{problem} — {fix}" if fix else problem)


class SettingError(ValueError):
    """One bad setting, raised by a validator: ``name`` is the kwarg, ``str(err)`` the problem."""

    def __init__(self, name: str, problem: str, fix: str = "") -> None:
        self.name = name
        self.problem = problem
        self.fix = fix
        super().__init__(problem)


def read_spec(
    spec: Any, what: str, error: type[SpecError] = SpecError, known: Sequence[str] = ()
) -> tuple[str, dict[str, Any]]:
    """``(type, kwargs)`` of a ``{type, kwargs}`` mapping or of an object with ``.type`` and
    ``.kwargs`` (a pydantic ``ComponentSpec``); kwargs may be absent or None. ``known`` (the
    registered types) is listed when the type is missing."""
    if isinstance(spec, Mapping):
        unknown = sorted(str(key) for key in set(spec) - {"type", "kwargs"})
        if unknown:
            raise error(
                unknown[0],
                f"{what} spec has unknown field(s) {unknown}: it takes only 'type' and 'kwargs'",
                "put settings under kwargs",
            )
        kind, kwargs = spec.get("type"), spec.get("kwargs")
    elif hasattr(spec, "type"):
        kind, kwargs = spec.type, getattr(spec, "kwargs", None)
    else:
        raise error(
            "",
            f"{what} spec must be a mapping {{type, kwargs}} or an object with .type and "
            f".kwargs, got {type(spec).__name__}",
            f"write {{type: <{what} type>, kwargs: {{...}}}}",
        )
    if not isinstance(kind, str) or not kind:
        raise error(
            "type",
            f"{what} spec needs a 'type' naming the {what}, got {kind!r}",
            f"known types: {', '.join(sorted(known))}" if known else "",
        )
    if kwargs is None:
        kwargs = {}
    if not isinstance(kwargs, Mapping):
        raise error(
            "kwargs",
            f"{what} spec 'kwargs' must be a mapping of keyword arguments, "
            f"got {type(kwargs).__name__}",
            "write kwargs: {name: value}",
        )
    return kind, dict(kwargs)


@dataclass(frozen=True)
class Checked:
    """A validated spec: the class, its own kwargs as given, every setting with defaults filled
    in, and the ``extra`` kwargs the caller handles itself (``check(spec, extra=...)``)."""

    type: str
    cls: type
    kwargs: Mapping[str, Any]
    settings: Mapping[str, Any]
    extra: Mapping[str, Any] = field(default_factory=dict)


class Registry(MutableMapping[str, Any]):
    """Name -> class (or, ``lazy``, name -> function returning the class); see the module doc.

    ``what`` names the component in messages ("policy"); ``base``: registered and plug-in classes
    must subclass it; ``injected``: constructor parameters the caller passes itself (an rng, a
    catalog), never kwargs; ``base_name``: how messages name ``base`` (default its module path);
    ``guide``: where a plug-in author reads how to write one.
    """

    def __init__(
        self,
        what: str,
        *,
        base: type | None = None,
        base_name: str = "",
        lazy: bool = False,
        injected: Sequence[str] = (),
        plugins: bool = False,
        guide: str = "",
        error: type[SpecError] = SpecError,
    ) -> None:
        self.what = what
        self.base = base
        self.base_name = base_name or (f"{base.__module__}.{base.__qualname__}" if base else "")
        self.lazy = lazy
        self.injected = tuple(injected)
        self.plugins = plugins
        self.guide = guide
        self.error = error
        self._signatures: dict[Any, tuple[tuple[str, ...], dict[str, Any], bool]] = {}
        self._entries: dict[str, Any] = {}

    # --- the mapping: name -> registered entry ------------------------------------------------

    def __getitem__(self, name: str) -> Any:
        return self._entries[name]

    def __setitem__(self, name: str, entry: Any) -> None:
        self._entries[name] = entry

    def __delitem__(self, name: str) -> None:
        del self._entries[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.what!r}: {', '.join(self._entries)})"

    def register(self, name: str, entry: Any = None) -> Any:
        """Add ``entry`` under ``name``; without ``entry``, a class decorator. A registered class
        gets ``cls.name = name``."""

        def add(entry: Any) -> Any:
            if not name or ":" in name:
                raise ValueError(f"{self.what} type {name!r} must be a non-empty name without ':'")
            if name in self._entries:
                raise ValueError(
                    f"{self.what} type {name!r} is already registered; pick another name"
                )
            if not self.lazy:
                self._check_base(entry, name)
                entry.name = name
            self._entries[name] = entry
            return entry

        return add if entry is None else add(entry)

    # --- reading, loading, checking, building -------------------------------------------------

    def read(self, spec: Any) -> tuple[str, dict[str, Any]]:
        """``(type, kwargs)`` of a spec (see ``read_spec``)."""
        return read_spec(spec, self.what, self.error, known=list(self._entries))

    def load(self, kind: str) -> type:
        """The class a type names: registered (imported now when lazy) or a plug-in path."""
        if kind in self._entries:
            entry = self._entries[kind]
            return entry() if self.lazy else entry
        if self.plugins and ":" in kind:
            return self._import(kind)
        close = difflib.get_close_matches(kind, list(self._entries), n=1)
        fix = (f"did you mean {close[0]!r}? " if close else "") + (
            f"known types: {', '.join(sorted(self._entries))}"
        )
        if self.plugins:
            fix += "; or a plug-in class as 'package.module:ClassName'"
        raise self.error("type", f"unknown {self.what} type {kind!r}", fix)

    def check(self, spec: Any, *, extra: Sequence[str] = ()) -> Checked:
        """Validate a spec without building it: type, kwarg names, required kwargs, then the
        class's ``check_settings`` (if any). ``extra`` names kwargs the caller handles itself."""
        kind, kwargs = self.read(spec)
        cls = self.load(kind)
        accepted, defaults, takes_any = self._parameters(cls)
        for key in kwargs:
            if key in self.injected:
                raise self.error(
                    f"kwargs.{key}",
                    f"{self.what} {kind!r}: {key!r} is passed by the caller, not in kwargs",
                    f"pass it to the builder as {key}=...",
                )
            if key not in accepted and key not in extra and not takes_any:
                valid = [*accepted, *extra]
                close = difflib.get_close_matches(str(key), valid, n=1)
                raise self.error(
                    f"kwargs.{key}",
                    f"{self.what} {kind!r} has no kwarg {key!r}",
                    (f"did you mean {close[0]!r}? " if close else "")
                    + f"it accepts {', '.join(valid) or 'no kwargs'}",
                )
        missing = [name for name in accepted if name not in defaults and name not in kwargs]
        if missing:
            raise self.error(
                "kwargs",
                f"{self.what} {kind!r} needs the kwarg {missing[0]!r}",
                f"add it: kwargs: {{{missing[0]}: ...}}",
            )
        own = {k: v for k, v in kwargs.items() if k not in extra}
        settings = {**defaults, **own}
        validate = getattr(cls, "check_settings", None)
        if validate is not None:
            self._guard(kind, validate, settings)
        return Checked(kind, cls, own, settings, {k: kwargs[k] for k in extra if k in kwargs})

    def construct(self, checked: Checked, *args: Any, **injected: Any) -> Any:
        """Build a checked spec: ``cls(*args, **kwargs, **injected)``; a ValueError the
        constructor raises becomes a SpecError naming the component."""
        return self._guard(checked.type, checked.cls, *args, **checked.kwargs, **injected)

    def build(self, spec: Any, *args: Any, **injected: Any) -> Any:
        """``construct(check(spec), *args, **injected)``."""
        return self.construct(self.check(spec), *args, **injected)

    # --- helpers ---------------------------------------------------------------------------------

    def _guard(self, kind: str, call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        try:
            return call(*args, **kwargs)
        except SpecError:
            raise
        except SettingError as err:
            raise self.error(
                f"kwargs.{err.name}", f"{self.what} {kind!r}: {err.problem}", err.fix
            ) from err
        except ValueError as err:
            raise self.error("kwargs", f"{self.what} {kind!r}: {err}", "") from err

    def _parameters(self, cls: type) -> tuple[tuple[str, ...], dict[str, Any], bool]:
        """(accepted kwargs, their defaults, whether it takes **kwargs) from the signature, read
        once per class (a scenario's validation checks every advertiser's specs)."""
        known = self._signatures.get(cls)
        if known is None:
            known = self._signatures[cls] = self._read_parameters(cls)
        return known

    def _read_parameters(self, cls: type) -> tuple[tuple[str, ...], dict[str, Any], bool]:
        try:
            parameters = inspect.signature(cls).parameters
        except (TypeError, ValueError):  # a signature Python cannot read: accept what is given
            return (), {}, True
        named = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        accepted = tuple(
            name for name, p in parameters.items() if p.kind in named and name not in self.injected
        )
        defaults = {
            name: parameters[name].default
            for name in accepted
            if parameters[name].default is not inspect.Parameter.empty
        }
        takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
        return accepted, defaults, takes_any

    def _check_base(self, entry: Any, name: str) -> None:
        if self.base is not None and not (isinstance(entry, type) and issubclass(entry, self.base)):
            raise TypeError(f"{self.what} {name!r} must be a subclass of {self.base_name}")

    def _import(self, path: str) -> type:
        """The plug-in class at ``package.module:ClassName`` (importlib; nothing is evaluated)."""
        module_name, _, qualname = path.partition(":")
        parts = module_name.split(".") + qualname.split(".")
        if not all(part.isidentifier() for part in parts):
            raise self.error(
                "type",
                f"{self.what} type {path!r} is not an import path",
                "write 'package.module:ClassName'",
            )
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as err:
            if err.name is not None and (module_name + ".").startswith(err.name + "."):
                raise self.error(
                    "type",
                    f"cannot import {module_name!r} for {self.what} {path!r}: no module named "
                    f"{err.name!r}",
                    "install the package, or put its folder on the path "
                    "(PYTHONPATH=FOLDER admarket ...)",
                ) from err
            raise self.error(
                "type",
                f"importing {module_name!r} for {self.what} {path!r} failed: it imports "
                f"{err.name!r}, which is not installed",
                f"install {err.name}",
            ) from err
        except Exception as err:  # the plug-in's own code failed: name the error, not the stack
            raise self.error(
                "type",
                f"importing {module_name!r} for {self.what} {path!r} failed: "
                f"{type(err).__name__}: {err}",
                f"fix the module (python -c 'import {module_name}' shows the traceback)",
            ) from err
        found: Any = module
        for attr in qualname.split("."):
            if not hasattr(found, attr):
                names = [n for n in dir(module) if not n.startswith("_")]
                close = difflib.get_close_matches(qualname, names, n=1)
                raise self.error(
                    "type",
                    f"module {module_name!r} has no {qualname!r}",
                    f"did you mean {module_name}:{close[0]}?" if close else "check the class name",
                )
            found = getattr(found, attr)
        guide = f" (see {self.guide})" if self.guide else ""
        if self.base is not None and not (isinstance(found, type) and issubclass(found, self.base)):
            kind = f"class {found.__name__}" if isinstance(found, type) else type(found).__name__
            raise self.error(
                "type",
                f"{path!r} is a {kind}, not a subclass of {self.base_name}",
                f"subclass {self.base_name}{guide}",
            )
        if inspect.isabstract(found):
            missing = ", ".join(sorted(found.__abstractmethods__))
            raise self.error(
                "type",
                f"{path!r} is abstract: it does not implement {missing}",
                f"implement it{guide}",
            )
        return found


# --- declarative validators ----------------------------------------------------------------------

Check = Callable[[str, Any], Any]


class CheckedSettings:
    """Per-kwarg validation, pure and declarative: ``checks`` maps a kwarg to its check (a
    function ``(name, value) -> value`` that raises ``SettingError``). ``check_settings`` runs
    them without building (what ``Registry.check`` calls); ``__init__`` uses ``checked``.
    Subclasses extend the parent's table: ``checks = {**Parent.checks, "cost": finite()}``."""

    checks: ClassVar[Mapping[str, Check]] = {}

    @classmethod
    def check_settings(cls, settings: Mapping[str, Any]) -> None:
        """Raise SettingError for the first bad setting; build nothing."""
        for name, value in settings.items():
            cls.checked(name, value)

    @classmethod
    def checked(cls, name: str, value: Any) -> Any:
        """``value`` through the check of ``name`` (normalized, e.g. an int becomes a float)."""
        check = cls.checks.get(name)
        return value if check is None else check(name, value)


def _real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _number_check(test: Callable[[float], bool], wanted: str, fix: str) -> Check:
    def check(name: str, value: Any) -> float:
        if not (_real(value) and math.isfinite(value) and test(value)):
            raise SettingError(name, f"{name} must be {wanted}, got {value!r}", fix)
        return float(value)

    return check


def finite(fix: str = "") -> Check:
    """Any finite real number."""
    return _number_check(lambda x: True, "a finite number", fix)


def positive(fix: str = "") -> Check:
    """A finite number > 0."""
    return _number_check(lambda x: x > 0, "a finite number > 0", fix)


def nonnegative(fix: str = "") -> Check:
    """A finite number >= 0."""
    return _number_check(lambda x: x >= 0, "a finite number >= 0", fix)


def probability(*, open_low: bool = False, fix: str = "") -> Check:
    """A probability in [0, 1], or in (0, 1] with ``open_low``."""
    if open_low:
        return _number_check(lambda x: 0 < x <= 1, "a probability in (0, 1]", fix)
    return _number_check(lambda x: 0 <= x <= 1, "a probability in [0, 1]", fix)


def integer(
    minimum: int = 1, maximum: int | None = None, *, allow_none: bool = False, fix: str = ""
) -> Check:
    """An integer (not a bool, not a float) in [minimum, maximum]; None too with ``allow_none``."""
    wanted = (
        f"an integer >= {minimum}" if maximum is None else f"an integer in [{minimum}, {maximum}]"
    )
    if allow_none:
        wanted = f"null or {wanted}"

    def check(name: str, value: Any) -> int | None:
        if value is None and allow_none:
            return None
        ok = isinstance(value, numbers.Integral) and not isinstance(value, bool)
        if not (ok and minimum <= value and (maximum is None or value <= maximum)):
            raise SettingError(name, f"{name} must be {wanted}, got {value!r}", fix)
        return int(value)

    return check


def one_of(choices: Sequence[Any], fix: str = "") -> Check:
    """One of ``choices``."""
    listed = ", ".join(repr(c) for c in choices)

    def check(name: str, value: Any) -> Any:
        if value not in choices:
            raise SettingError(name, f"{name} must be one of {listed}, got {value!r}", fix)
        return value

    return check
