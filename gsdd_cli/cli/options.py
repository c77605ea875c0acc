"""Typer commands built from pydantic models: each option is declared once, as a model field.

:func:`command` turns one or more option models into a command's signature (flags, metavars,
``--help`` text with the default) and hands the function validated model instances, or, for a
*layered* model whose defaults depend on other inputs (``gsdd distill``: per dataset and IPC), the
dict of the values the user gave. Every value arrives as text and is validated by pydantic alone,
so a wrong type, a non-finite number or an out-of-range value is one ``error:`` line with exit
code 3 for every command (click's own type errors would exit 2 with a usage box).
"""

from __future__ import annotations

import functools
import inspect
import types
import typing
from pathlib import Path
from typing import Any, Callable, Literal, Optional, Union

import typer
from pydantic import BaseModel, TypeAdapter, ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from gsdd_cli.cli.common import handles_errors
from gsdd_cli.core.errors import ConfigError
from gsdd_cli.core.options import build, cli_spec, display_name, flag_names

def _strip_optional(tp: Any) -> Any:
    if typing.get_origin(tp) in (Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp


def _choices(tp: Any) -> list[str] | None:
    tp = _strip_optional(tp)
    if typing.get_origin(tp) is Literal:
        return [str(a) for a in typing.get_args(tp)]
    return None


def _metavar(tp: Any) -> str:
    choices = _choices(tp)
    if choices:
        return "[" + "|".join(choices) + "]"
    base = _strip_optional(tp)
    return {int: "INT", float: "FLOAT", Path: "PATH"}.get(base, "TEXT")


def is_bool(field: FieldInfo) -> bool:
    return _strip_optional(field.annotation) is bool


def help_text(field: FieldInfo) -> str:
    """The field's description plus its default, as --help shows it."""
    text = (field.description or "").rstrip()
    spec = cli_spec(field)
    if spec.default_text is not None:
        shown = spec.default_text
    elif field.default is PydanticUndefined or field.default is None or (is_bool(field) and field.default is False
                                                                          and "/" not in "".join(spec.flags)):
        shown = ""
    elif is_bool(field):
        shown = "on" if field.default else "off"
    else:
        shown = str(field.default)
    if shown and "default" not in text.lower():
        text = f"{text} (default: {shown})"  # not [..]: rich would read brackets as markup
    return text


def _parameter(name: str, field: FieldInfo, layered: bool) -> inspect.Parameter:
    spec = cli_spec(field)
    # click reports a missing one (exit 2); a layered model's options may still come from a config file
    required = field.default is PydanticUndefined and (spec.argument or not layered)
    if spec.argument:
        info = typer.Argument(... if required else None, help=help_text(field), metavar=name.upper(),
                              show_default=False)
        return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=info, annotation=Optional[str])
    flags = flag_names(name, field)
    if is_bool(field):
        if len(flags) == 1 and "/" not in flags[0] and field.default is not False:
            flags = (f"{flags[0]}/--no-{flags[0][2:]}",)
        info = typer.Option(None, *flags, help=help_text(field), hidden=spec.hidden, show_default=False)
        return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=info, annotation=Optional[bool])
    info = typer.Option(... if required else None, *flags, help=help_text(field), metavar=_metavar(field.annotation),
                        hidden=spec.hidden,
                        show_default=False)
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=info, annotation=Optional[str])


def cli_fields(model: type[BaseModel]) -> dict[str, FieldInfo]:
    """The fields of ``model`` that the command line offers."""
    return {n: f for n, f in model.model_fields.items() if cli_spec(f).cli}


def parse_value(model: type[BaseModel], name: str, raw: Any) -> Any:
    """A number flag's text as the field's type (lax: "3" → 3, "inf" → inf); constraints come later."""
    field = model.model_fields[name]
    if isinstance(raw, bool) or _strip_optional(field.annotation) not in (int, float):
        return raw  # text stays text: choices and names are checked (and normalised) by the model
    try:
        return TypeAdapter(field.annotation).validate_python(raw)
    except ValidationError as e:
        msg = str(e.errors()[0].get("msg", "invalid")).removeprefix("Value error, ")
        raise ConfigError(f"invalid value for {display_name(model, name)}: {msg} (got {str(raw)[:60]})") from None


def command(*models: type[BaseModel], layered: tuple[type[BaseModel], ...] = ()) -> Callable:
    """Build a typer command's parameters from ``models``; call the function with one value per model.

    A model in ``layered`` is passed as the dict of the flags the user gave (parsed to their types);
    every other model as a validated instance. Field names must be unique across the models.
    """

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        owners: dict[str, type[BaseModel]] = {}
        params: list[inspect.Parameter] = []
        for model in models:
            for name, field in cli_fields(model).items():
                if name in owners:
                    raise TypeError(f"option {name!r} is declared by both {owners[name].__name__} and {model.__name__}")
                owners[name] = model
                params.append(_parameter(name, field, model in layered))
        # typer wants positional arguments in declaration order; keep arguments first
        params.sort(key=lambda p: not isinstance(p.default, typer.models.ArgumentInfo))

        @functools.wraps(fn)
        @handles_errors
        def run(**given: Any) -> Any:
            values: list[Any] = []
            for model in models:
                mine = {n: v for n, v in given.items() if owners.get(n) is model and v is not None}
                if model in layered:
                    values.append({n: parse_value(model, n, v) for n, v in mine.items()})
                else:
                    values.append(build(model, mine))
            return fn(*values)

        run.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
        run.__annotations__ = {p.name: p.annotation for p in params}
        del run.__wrapped__  # typer must read the built signature, not the function's
        return run

    return decorate


__all__ = ["cli_fields", "command", "help_text", "is_bool", "parse_value"]
