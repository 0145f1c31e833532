"""Command-line options generated from a config dataclass: one flag per field (its type, its default and its help
come from the dataclass, so no default is written twice), and `--set KEY=VALUE` for every setting, flagged or not.

A field says how it appears with `metadata=option("help text", flag="--timeout")`; without a `flag` it is
`--field-name`; with `positional=True` it is an argument without a flag; a field without a default is required.
A command adds a config's options with `add_options(parser, Config)` and builds the config with
`from_args(Config, args, inputs=..., output=...)`, which validates it like a recipe table (errors name the key).
A `Command` names a config and the library call that takes it; `add_command` gives a parser its options and `call`
runs it on what was parsed.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import tomllib
import types
import typing
from typing import Any

_DEST = "config."  # argparse destination prefix of generated options: never clashes with a command's own
_SET = "--set"  # the destination of a config's --set items, after its table's prefix


def resolve(spec: str) -> type:
    """The config class named "module:Class" (imported only when its command runs)."""
    import importlib

    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(module), name)


def option(help: str, *, flag: str | None = None, positional: bool = False, **argparse_keywords: Any) -> dict:
    """Field metadata for the command line: its help text; its flag when not `--field-name` (spellings separated by
    a space: "--output -o"), or `positional`; and argparse keywords where the type's own do not fit (`metavar`,
    `action="append"` for one value a flag, `type`, `nargs`)."""
    return {"help": help, **({"flag": flag} if flag else {}), **({"positional": True} if positional else {}),
            **({"argparse": argparse_keywords} if argparse_keywords else {})}


def setting(default: Any, help: str, **option_keywords: Any) -> Any:
    """A config field: its default (a list or dict default is copied for each instance) and its command-line help
    (and flag..., as `option`)."""
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda: type(default)(default),
                                 metadata=option(help, **option_keywords))
    return dataclasses.field(default=default, metadata=option(help, **option_keywords))


def like(cls: type, name: str) -> Any:
    """A field with the default and command-line metadata of `cls`'s field `name`, for a command's config that
    offers one of another config's settings (so its default is written once)."""
    field = cls.__dataclass_fields__[name]
    return dataclasses.field(default=field.default, default_factory=field.default_factory, metadata=field.metadata)


def narrow(config: Any, cls: type) -> Any:
    """The `cls` (a base class of `config`'s, or one with a subset of its fields) with `config`'s values."""
    return cls(**{f.name: getattr(config, f.name) for f in dataclasses.fields(cls)})


def positive_int(text: str) -> int:
    """An argparse type: an integer of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def add_options(parser: argparse.ArgumentParser, cls: type, *, skip: tuple[str, ...] = ("inputs", "output"),
                only: tuple[str, ...] | None = None, set_option: bool = True, prefix: str = "",
                flags: dict[str, str] | None = None) -> None:
    """A flag for every field of `cls` (or those named in `only`) with a plain type (str, int, float, bool, a
    Literal, a list of those (repeatable: `--x a b --x c`), a dict of them (`--x KEY=VALUE`, repeatable); fields
    holding tables are reached with --set), defaulting to None so that only what the user gives overrides the
    dataclass's defaults; and, with `set_option`, `--set KEY=VALUE`. `prefix` ("table.") puts the fields under a
    table of the command's config (a nested dataclass's fields); `flags` respells some fields' flags where two
    configs of one command would clash."""
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        if field.name in skip or (only is not None and field.name not in only):
            continue
        kwargs = _argument(hints[field.name])
        if kwargs is None:
            continue
        kwargs.update(field.metadata.get("argparse", {}))
        if kwargs.get("action") in ("append", "store_true"):  # one value a flag, or none
            kwargs.pop("nargs", None)
        required = field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING
        help_text = field.metadata.get("help", "")
        shown = "" if required or "default" in help_text else f" (default: {_shown(field, kwargs)})"
        kwargs["help"] = (help_text + shown).lstrip()
        dest = _DEST + prefix + field.name
        if field.metadata.get("positional"):
            nargs = ("+" if required else "*") if typing.get_origin(hints[field.name]) is list else None
            parser.add_argument(dest, **{"metavar": field.name, **kwargs, "nargs": nargs, "action": None})
            continue
        if "metavar" not in kwargs and "choices" not in kwargs and kwargs.get("action") not in (_BOOL, "store_true"):
            kwargs["metavar"] = field.name.upper()
        flag = (flags or {}).get(field.name) or field.metadata.get("flag") or "--" + field.name.replace("_", "-")
        parser.add_argument(*flag.split(), dest=dest, default=None, required=required, **kwargs)
    if not set_option:
        return
    parser.add_argument("--set", action="append", metavar="KEY=VALUE", dest=_DEST + prefix + _SET,
                        help=f"any {cls.__name__} setting, a TOML value (repeatable; dotted keys reach tables, "
                             "e.g. --set heuristics.thresholds.gopher_min_words=100)")


def _shown(field: dataclasses.Field, kwargs: dict[str, Any]) -> Any:
    """A field's default as its help shows it: "off" for a flag that is off, "none" for nothing."""
    default = _default(field)
    if kwargs.get("action") == "store_true":
        return "on" if default else "off"
    if default in (None, [], {}):
        return "none"
    return " ".join(map(str, default)) if isinstance(default, list) else default


class DefaultsHelpFormatter(argparse.HelpFormatter):
    """argparse's help with every option's default where its help text does not say it already (generated options
    say theirs; a flag's default is "off", an option without one "none")."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if ("default" in text or action.required or not action.option_strings or action.default is argparse.SUPPRESS
                or isinstance(action, (argparse._HelpAction, argparse._VersionAction))
                or (action.default is None and isinstance(action, argparse._AppendAction))):  # --set, repeatable
            return text
        value = action.default
        shown = ("none" if value is None else "off" if value is False else " ".join(map(str, value))
                 if isinstance(value, list) else str(value))
        return f"{text} (default: {shown.replace('%', '%%')})".lstrip()

    def _format_action(self, action: argparse.Action) -> str:
        if not action.help and action.option_strings:  # argparse shows no line for an option without help
            action.help = self._get_help_string(action) or None
        return super()._format_action(action)


def dest(name: str) -> str:
    """The argparse destination of field `name`, for a command that spells a field's flag itself."""
    return _DEST + name


def from_args(cls: type, args: argparse.Namespace, **fixed: Any) -> Any:
    """`cls` from its --set items, then its flags the user gave, then `fixed` (the command's own arguments; dotted
    keys reach tables), validated like a recipe table (RecipeError naming the key)."""
    from corpusforge import recipe

    values = settings(args)
    for key, value in fixed.items():
        _put(values, key, value)
    return recipe.from_dict(cls, values, f"{cls.__name__}")


def settings(args: argparse.Namespace) -> dict[str, Any]:
    """The settings the user gave: its --set items, then its flags (dotted keys as nested tables)."""
    from corpusforge import recipe

    values: dict[str, Any] = {}
    for name, items in vars(args).items():
        if not (name.startswith(_DEST) and name.endswith(_SET)):
            continue
        for item in items or []:
            key, sep, raw = item.partition("=")
            if not sep:
                raise recipe.RecipeError(f"--set {item!r}: expected KEY=VALUE")
            _put(values, name.removeprefix(_DEST).removesuffix(_SET) + key.strip(), parse_value(raw))
    for key, value in given(args).items():
        _put(values, key, value)
    return values


def take(args: argparse.Namespace, table: str) -> dict[str, Any]:
    """{field: value} of the flags the user gave under `table` ("extract."), removed from `args`: the settings of a
    second config a command passes on as a table, apart from its own config."""
    names = [name for name in vars(args) if name.startswith(_DEST + table)]
    values = {name.removeprefix(_DEST + table): vars(args).pop(name) for name in names}
    return {key: value for key, value in values.items() if value is not None}


def _put(values: dict[str, Any], key: str, value: Any) -> None:
    """Set dotted `key` ("heuristics.thresholds") in nested tables."""
    *tables, last = key.split(".")
    for name in tables:
        values = values.setdefault(name, {})
    values[last] = value


def given(args: argparse.Namespace) -> dict[str, Any]:
    """{field: value} of the generated flags the user gave (not --set)."""
    return {name.removeprefix(_DEST): value for name, value in vars(args).items()
            if name.startswith(_DEST) and not name.endswith(_SET) and value is not None}


def parse_value(raw: str) -> Any:
    """A --set value: a TOML value (number, true/false, "string", [list], {table}), else the bare word as text."""
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


def _default(field: dataclasses.Field) -> Any:
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return None if field.default is dataclasses.MISSING else field.default


class _KeyValue(argparse.Action):
    """`--flag KEY=VALUE`, repeatable: one entry of a dict field, its value of `value_type`."""

    def __init__(self, *args: Any, value_type: type = str, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.value_type = value_type

    def __call__(self, parser, namespace, text, option_string=None):
        from corpusforge.errors import UserError

        key, sep, raw = text.partition("=")
        try:
            value = self.value_type(raw.strip()) if raw.strip() else None
        except ValueError:
            value = None
        if not sep or not key.strip() or value is None:  # a UserError, so `main` says it in one line
            kind = "" if self.value_type is str else f" (the value a {self.value_type.__name__})"
            raise UserError(f"{option_string} {text!r}: expected {self.metavar}{kind}")
        setattr(namespace, self.dest, {**(getattr(namespace, self.dest) or {}), key.strip(): value})


def key_value(value_type: type) -> Any:
    """The argparse action of a repeatable `--flag KEY=VALUE` whose values are `value_type`, for a command that
    spells a dict field's flag itself."""
    return functools.partial(_KeyValue, value_type=value_type)


_BOOL = argparse.BooleanOptionalAction


def _argument(hint: Any) -> dict[str, Any] | None:
    """argparse keywords for a field of type `hint`, or None when the command line cannot spell it (--set can)."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return _argument(args[0]) if len(args) == 1 else None
    if origin is typing.Literal:
        return {"choices": list(typing.get_args(hint))}
    if origin is list:
        (item,) = typing.get_args(hint) or (str,)
        one = _argument(item)
        return {**one, "nargs": "*", "action": "extend"} if one is not None and "action" not in one else None
    if origin is dict:
        _key, value = typing.get_args(hint) or (str, str)
        if value not in (int, float, str):
            return None
        return {"action": key_value(value), "metavar": "KEY=VALUE"}
    if hint is bool:
        return {"action": _BOOL}
    if hint in (int, float, str):
        return {"type": hint}
    return None


@dataclasses.dataclass
class Command:
    """A command: its words after `corpusforge`, its help line, the config its options are generated from
    ("module:Class") and the library call given that config ("module:function"); without them, a group of commands.

    `ctx`: RunContext fields offered as options (the call then also gets the context); `tables`: options of tables
    of the config, as (config class, add_options keywords); `fixed`: config values the command sets itself; `extra`:
    a class of more options whose `settings()` are config values; `inputs`: a stage command's INPUT help (`nargs`
    of them), with --output; `description`: the first line of its --help."""

    name: str
    help: str
    config: str = ""
    call: str = ""
    ctx: tuple[str, ...] = ()
    tables: tuple[tuple[str, dict[str, Any]], ...] = ()
    fixed: dict[str, Any] = dataclasses.field(default_factory=dict)
    extra: str = ""
    inputs: str = ""
    nargs: str = "+"
    description: str | None = None


def add_command(parser: argparse.ArgumentParser, command: Command) -> None:
    """The options of `command`: a stage's INPUT... and --output, its config's (with --set, unless one of its tables
    takes it), its tables', its extra class's and its RunContext's."""
    if command.inputs:
        parser.add_argument(dest("inputs"), metavar="inputs", nargs=command.nargs, help=command.inputs)
        parser.add_argument("--output", "-o", dest=dest("output"), metavar="OUTPUT", required=True)
    skip = ("inputs", "output") if command.inputs else ()
    add_options(parser, resolve(command.config), skip=skip + tuple(command.fixed),
                set_option=not any(kw.get("set_option") for _, kw in command.tables))
    for spec, kw in command.tables:
        add_options(parser, resolve(spec), **{"set_option": False, **kw})
    if command.extra:
        add_options(parser, resolve(command.extra), prefix="extra.", set_option=False)
    if command.ctx:
        add_options(parser, resolve("corpusforge.runtime:RunContext"), only=command.ctx, prefix="ctx.",
                    set_option=False)


def call(command: Command, args: argparse.Namespace) -> tuple[Any, Any]:
    """Run `command` on its parsed `args`: its config (and run context) from them, given to its library call.
    Returns what the call returned, and the run context (None for a command without one)."""
    from corpusforge import recipe

    ctx = None
    if command.ctx:
        ctx = recipe.from_dict(resolve("corpusforge.runtime:RunContext"), take(args, "ctx."), command.name)
    fixed = dict(command.fixed)
    if command.extra:
        fixed.update(recipe.from_dict(resolve(command.extra), take(args, "extra."), command.name).settings())
    config = from_args(resolve(command.config), args, **fixed)
    return resolve(command.call)(config, *([ctx] if ctx else [])), ctx
