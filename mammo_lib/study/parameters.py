"""Typed notebook parameters: what each notebook declares, and ``-p key=value`` converted to it.

A notebook declares its parameters in the cell tagged ``parameters`` (papermill's convention).
Their types come, in this order, from

1. an annotation in that cell (``stop_early: bool = False``, ``vendor_filter: Optional[list] =
   None``), as papermill's notebook inspection reports it (papermill does not read the
   ``list | None`` spelling: such a line is not seen as a parameter at all); else
2. the literal values the parameter takes: its default in the cell and its value in every
   profile of ``notebooks/params/<stem>.json`` (``vendor_filter`` is ``None`` in ``default`` and
   a list in ``paper``: a list or None).

A value given on the command line is converted by that type: Python and JSON spellings both
work (``True``/``true``, ``None``/``null``, ``[1, 2]``/``['a']``), a string-typed parameter keeps
the text as typed (a folder named ``2016`` stays the string ``"2016"``), an ``int`` is accepted
where a ``float`` is declared, and a value that fits none of the declared types is a
:class:`ParameterError` naming the parameter, the types and the value.

A number's allowed values are declared once, next to it: the comment of a numeric parameter
starts with an interval in mathematical notation, then its help text::

    n_per_group = 500  # [1, inf) the paper: 500 patches per group
    lr_g = 0.0002  # (0, inf)
    time_budget_s = 900  # (0, inf) stop cleanly ... (None: no limit)
    c2st_sweep_lowpass = [0.03, 0.1]  # (0, 0.5) frequency sweep: low-pass cut-offs

``[``/``]`` include a bound, ``(``/``)`` exclude it; bounds are plain numbers (``1``, ``0.5``,
``1e-3``, ``4294967295``) or ``inf``/``-inf`` (always with an exclusive bracket). Whether a value
must be an integer comes from the parameter's type; the interval only gives bounds, to every
element of a list of numbers. None, where the type allows it, is not checked against the
interval. :func:`check_values` reports every value outside its interval; a malformed interval
(``[5, 1]``, ``[a, b)``, ``[0, inf]``) is a :class:`ParameterError` from :func:`parameter_specs`
naming the notebook and the parameter.

A text parameter's allowed values, where they are a fixed set, are declared the same way: its
comment starts with the set in braces, then its help text; for a list of texts the set holds
every element::

    normalisation = "equalize_image"  # {equalize_image, equalize_patch, none}
    feature_spaces = ['pixels', 'cnn', 'random-cnn']  # {pixels, cnn, random-cnn} raw pixels (...)

The values are separated by commas and written without quotes (each one word: no spaces,
quotes, commas, braces or brackets in it); a value is allowed when it is spelled exactly as in
the set. None, where the type allows it, is not checked against the set. :func:`check_values`
reports every value outside its set; a malformed set (``{}``, ``{a, , b}``, ``{a b}``,
``{"a", "b"}``, ``{a, a}``, no closing brace) or a set before a parameter that is neither text
nor a list of texts is a :class:`ParameterError` from :func:`parameter_specs` naming the
notebook and the parameter. Free-form text (a device, a path, an address) has no set.
"""

from __future__ import annotations

import ast
import json
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mammo_lib.study.parameter_values import (  # noqa: F401 (re-exported: the declared values)
    ParameterError,
    ValueRange,
    check_values,
    parse_choices,
    parse_range,
)

#: type names a parameter can have, as they are spelled in annotations
TYPE_NAMES = ("bool", "int", "float", "str", "list", "dict", "None")
_PY_TYPES: dict[str, tuple[type, ...]] = {
    "bool": (bool,), "int": (int,), "float": (float, int), "str": (str,), "list": (list, tuple),
    "dict": (dict,), "None": (type(None),),
}
_ALIASES = {"NoneType": "None", "Optional": "None", "List": "list", "Dict": "dict", "tuple": "list",
            "Tuple": "list", "Sequence": "list", "Path": "str", "PathLike": "str"}


@dataclass(frozen=True)
class ParameterSpec:
    """One declared parameter of one notebook.

    Attributes
    ----------
    name : str
        The variable name in the ``parameters`` cell.
    types : frozenset of str
        Allowed type names, a subset of :data:`TYPE_NAMES`; empty when nothing could be inferred
        (any JSON value is accepted then).
    default : Any
        The value in the notebook's ``parameters`` cell (``None`` when it is not a literal).
    help : str
        The comment after the assignment, without its leading interval or set.
    range : ValueRange or None
        The allowed values of a number, or of each element of a list of numbers: the interval
        the comment starts with (None: no range declared).
    item_types : frozenset of str
        For a list parameter: the type names (``int``, ``float``) of the elements its default and
        profiles hold; ``{"int"}`` makes :func:`check_values` require integer elements.
    choices : tuple of str or None
        The allowed values of a text, or of each element of a list of texts: the set the comment
        starts with (None: no set declared).
    """

    name: str
    types: frozenset[str]
    default: Any
    help: str = ""
    range: ValueRange | None = None
    item_types: frozenset[str] = frozenset()
    choices: tuple[str, ...] | None = None

    def describe(self) -> str:
        """The types as a user reads them, e.g. ``'list or None'``."""
        if not self.types:
            return "any JSON value"
        return " or ".join(sorted(self.types, key=lambda t: (t == "None", t)))

    def describe_range(self) -> str:
        """The allowed values as a user reads them, e.g. ``'an integer in [1, inf)'``,
        ``'a number in (0, inf), or None'``, ``'a list of numbers, each in (0, 0.5)'``;
        "" when no range is declared."""
        if self.range is None:
            return ""
        if self._is_list():
            kind = "integers" if self.item_types == {"int"} else "numbers"
            text = f"a list of {kind}, each in {self.range}"
        else:
            text = self.range.describe(integer=self._integer_only())
        return text + (", or None" if "None" in self.types else "")

    def describe_choices(self) -> str:
        """The allowed values as a user reads them, e.g. ``'one of resize, crop'``,
        ``'a list of values, each one of pixels, cnn, random-cnn'``; "" when no set is declared."""
        if self.choices is None:
            return ""
        text = f"one of {', '.join(self.choices)}"
        if self._is_text_list():
            text = f"a list of values, each {text}"
        return text + (", or None" if "None" in self.types else "")

    def _is_text_list(self) -> bool:
        return "list" in self.types and "str" not in self.types

    def _is_list(self) -> bool:
        return "list" in self.types and not self.types & {"int", "float"}

    def _integer_only(self) -> bool:
        return "int" in self.types and "float" not in self.types


def type_names_of_annotation(annotation: str) -> frozenset[str]:
    """Type names in an annotation string such as ``'list[str] | None'`` or ``'Optional[int]'``.

    Parameters
    ----------
    annotation : str
        The annotation as written in the parameters cell (papermill's ``inferred_type_name``);
        ``'None'`` on its own means papermill found no annotation.

    Returns
    -------
    frozenset of str
        Names from :data:`TYPE_NAMES`; empty for no annotation or an unknown one.
    """
    if not annotation or annotation.strip() == "None":
        return frozenset()
    names = set()
    # the outer names of each union member: 'list[str] | None' -> list, None
    for word in re.findall(r"[A-Za-z_][A-Za-z_0-9]*", annotation):
        name = _ALIASES.get(word, word)
        if name in TYPE_NAMES:
            names.add(name)
        if word == "Optional":
            names.add("None")
    if "Optional" in annotation or "|" in annotation or "Union" in annotation:
        return frozenset(names)
    # a generic like list[str]: only the outer name counts
    outer = _ALIASES.get(annotation.split("[", 1)[0].strip(), annotation.split("[", 1)[0].strip())
    return frozenset({outer}) if outer in TYPE_NAMES else frozenset(names)


def type_name_of_value(value: Any) -> str | None:
    """The :data:`TYPE_NAMES` entry of a literal value (bool before int), or None if unknown."""
    for name in ("None", "bool", "int", "float", "str", "list", "dict"):
        if name == "int" and isinstance(value, bool):
            continue
        if name == "float" and not isinstance(value, float):
            continue
        if isinstance(value, _PY_TYPES[name]):
            return name
    return None


def _literal(text: str) -> tuple[bool, Any]:
    try:
        return True, ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return False, None


def inspect_parameters(notebook: str | Path) -> dict[str, dict]:
    """papermill's inspection of a notebook's ``parameters`` cell.

    Parameters
    ----------
    notebook : str or pathlib.Path
        An ``.ipynb`` file with a cell tagged ``parameters``.

    Returns
    -------
    dict
        ``{name: {"name", "inferred_type_name", "default", "help"}}`` as papermill reports it
        (``default`` is the source text of the value).

    Raises
    ------
    ParameterError
        When the file is not a readable notebook.
    """
    import nbformat
    import papermill as pm

    notebook = Path(notebook)
    try:
        nb = nbformat.read(notebook, as_version=4)
    except (OSError, ValueError) as exc:
        raise ParameterError(f"{notebook}: not a readable notebook ({exc})") from exc
    if "kernelspec" not in nb.metadata:  # papermill's inspection needs one to pick a translator
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / notebook.name
        nbformat.write(nb, copy)
        return dict(pm.inspect_notebook(str(copy)))


def parameter_specs(notebook: str | Path, profile_values: list[dict] | None = None) -> dict[str, ParameterSpec]:
    """The typed parameters a notebook declares.

    Parameters
    ----------
    notebook : str or pathlib.Path
        The notebook.
    profile_values : list of dict, optional
        The notebook's parameters in each profile (``notebooks/params/<stem>.json``); their
        values widen the inferred types of parameters that have no annotation.

    Returns
    -------
    dict of str to ParameterSpec
        One spec per declared parameter, in the cell's order.

    Raises
    ------
    ParameterError
        As :func:`inspect_parameters`; or when a comment starts with a malformed interval or set,
        an interval stands before a parameter that is neither a number nor a list, or a set
        before one that is neither text nor a list of texts (the message names the notebook and
        the parameter).
    """
    specs = {}
    where = Path(notebook).name
    for name, info in inspect_parameters(notebook).items():
        ok, default = _literal(info.get("default") or "")
        values = ([default] if ok else []) + [p[name] for p in profile_values or [] if name in p]
        types = set(type_names_of_annotation(info.get("inferred_type_name") or ""))
        if not types:
            types = {t for t in map(type_name_of_value, values) if t is not None}
            if types == {"None"}:
                types = set()  # only ever None: nothing to say about the type
        items = {type_name_of_value(x) for v in values if isinstance(v, list | tuple) for x in v}
        try:
            choices, help_text = _declared_choices(info.get("help") or "", types, items)
            value_range = None
            if choices is None:
                value_range, help_text = _declared_range(help_text, types)
        except ParameterError as exc:
            raise ParameterError(f"{where}: parameter {name}: {exc}") from None
        specs[name] = ParameterSpec(name, frozenset(types), default if ok else None, help_text,
                                    range=value_range,
                                    item_types=frozenset(items) if items <= {"int", "float"} else frozenset(),
                                    choices=choices)
    return specs


def _declared_range(help_text: str, types: set[str]) -> tuple[ValueRange | None, str]:
    """:func:`parse_range` of a parameter's comment, for a parameter of these types. A parameter
    that is no number (a string, a flag) may start its comment with bracketed words, but not with
    a well-formed interval: that is a mistake."""
    numeric = not types or bool(types & {"int", "float", "list"})
    try:
        value_range, rest = parse_range(help_text)
    except ParameterError:
        if numeric:
            raise
        return None, help_text.strip()
    if value_range is not None and not numeric:
        raise ParameterError(f"range {value_range} on a parameter of type {' or '.join(sorted(types))}: "
                             "only numbers and lists of numbers take a range")
    return value_range, rest


def _declared_choices(help_text: str, types: set[str], items: set[str | None]
                      ) -> tuple[tuple[str, ...] | None, str]:
    """:func:`parse_choices` of a parameter's comment, for a parameter of these types whose
    list values (default and profiles) hold elements of the types ``items``. Only text, and lists
    whose elements are all text, take a set."""
    choices, rest = parse_choices(help_text)
    if choices is None:
        return None, rest
    textual = not types or "str" in types or ("list" in types and items <= {"str"})
    if not textual:
        kind = " or ".join(sorted(types))
        if "list" in types:
            kind += " of " + " and ".join(sorted(str(t) for t in items))
        raise ParameterError(f"set {{{', '.join(choices)}}} on a parameter of type {kind}: "
                             "only text and lists of text take a set of values")
    return choices, rest


def _fits(value: Any, types: frozenset[str]) -> bool:
    if not types:
        return True
    for name in types:
        if name in ("int", "float") and isinstance(value, bool):
            continue
        if isinstance(value, _PY_TYPES[name]):
            return True
    return False


def _parse_text(text: str) -> tuple[bool, Any]:
    """JSON first, then a Python literal; (False, None) when the text is neither."""
    try:
        return True, json.loads(text)
    except json.JSONDecodeError:
        return _literal(text)


def convert_value(spec: ParameterSpec, raw: Any, where: str = "-p") -> Any:
    """Convert one override to the parameter's type.

    Parameters
    ----------
    spec : ParameterSpec
        The declared parameter.
    raw : Any
        The text typed after ``key=`` (``str``), or an already typed value from Python code.
    where : str
        How the value was given, for the error message (``'-p'``).

    Returns
    -------
    Any
        The typed value.

    Raises
    ------
    ParameterError
        When the value fits none of the parameter's types; the message names the parameter,
        its types and the value.
    """
    if not isinstance(raw, str):
        value = list(raw) if isinstance(raw, tuple) else raw
        if _fits(value, spec.types):
            return float(value) if spec.types == {"float"} and isinstance(value, int) else value
        raise ParameterError(f"{where} {spec.name}={raw!r}: the notebook declares {spec.name} as "
                             f"{spec.describe()}, not {type(raw).__name__}")
    ok, parsed = _parse_text(raw.strip())
    if ok and parsed is None and "None" in spec.types:
        return None
    if "str" in spec.types:
        return raw  # a path or a name stays as typed, even "2016" or "true"
    if ok and isinstance(parsed, tuple):
        parsed = list(parsed)
    if ok and _fits(parsed, spec.types):
        if isinstance(parsed, int) and not isinstance(parsed, bool) and "float" in spec.types \
                and "int" not in spec.types:
            return float(parsed)
        return parsed
    if not spec.types:
        return parsed if ok else raw
    raise ParameterError(
        f"{where} {spec.name}={raw}: {spec.name} is {spec.describe()} in the notebook"
        + (f" (e.g. {json.dumps(spec.default)})" if spec.default is not None else "")
        + "; write booleans as true/false, nothing as null, lists as [\"a\", \"b\"]"
    )


def split_override(item: str) -> tuple[str, str]:
    """``'key=value'`` -> ``('key', 'value')``, the value left as text.

    Raises
    ------
    ParameterError
        When there is no ``=`` or no key.
    """
    if "=" not in item:
        raise ParameterError(f"parameter override {item!r} must look like key=value")
    key, raw = item.split("=", 1)
    if not key.strip():
        raise ParameterError(f"parameter override {item!r} has no name before '='")
    return key.strip(), raw
