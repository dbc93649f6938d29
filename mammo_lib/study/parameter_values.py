"""The values a notebook parameter may take, declared beside it in its notebook's parameters
cell, and the check of given values against them (before any work).

A number's comment starts with its interval, ``n_per_group = 500  # [1, inf) ...`` (``[ ]``
include a bound, ``( )`` exclude it; for a list, each element); a text's comment may start with
its set, ``normalisation = "equalize_image"  # {equalize_image, equalize_patch, none} ...``.
:func:`parse_range` and :func:`parse_choices` read them, :func:`check_values` checks values.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any


class ParameterError(ValueError):
    """A parameter value does not fit the parameter's type, or the parameter is unknown."""


#: an interval at the start of a parameter's comment: a bracket, two bounds without spaces in
#: them, a bracket (what the bounds say is checked by :func:`parse_range`)
_INTERVAL = re.compile(r"^(?P<open>[\[(])\s*(?P<low>[^\s,\[\]()]+)\s*,\s*(?P<high>[^\s,\[\]()]+)\s*"
                       r"(?P<close>[\])])(?=\s|$)")
_NUMBER = re.compile(r"^[+-]?(?:inf|\d+(?:\.\d*)?(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?)$")
_INTEGER = re.compile(r"^[+-]?\d+$")


#: one value of a set of allowed values (see :func:`parse_choices`)
_CHOICE = re.compile(r"^[^\s,{}\[\]()'\"]+$")


def _bound_text(bound: int | float) -> str:
    if isinstance(bound, float) and math.isinf(bound):
        return "inf" if bound > 0 else "-inf"
    return repr(bound)


@dataclass(frozen=True)
class ValueRange:
    """An interval of allowed values, as written at the start of a parameter's comment.

    Attributes
    ----------
    low, high : int or float
        The bounds (``-inf``/``inf`` for none); ``low <= high``.
    low_inclusive, high_inclusive : bool
        Whether ``low`` / ``high`` itself is allowed (``[``/``]``) or not (``(``/``)``).
    """

    low: int | float
    high: int | float
    low_inclusive: bool = True
    high_inclusive: bool = True

    def __str__(self) -> str:
        return (("[" if self.low_inclusive else "(") + f"{_bound_text(self.low)}, {_bound_text(self.high)}"
                + ("]" if self.high_inclusive else ")"))

    def contains(self, value: int | float) -> bool:
        """Whether a number lies in the interval (NaN never does).

        Parameters
        ----------
        value : int or float

        Returns
        -------
        bool
        """
        if isinstance(value, float) and math.isnan(value):
            return False
        above = value >= self.low if self.low_inclusive else value > self.low
        below = value <= self.high if self.high_inclusive else value < self.high
        return bool(above and below)

    def describe(self, integer: bool = False) -> str:
        """The interval as a user reads it, e.g. ``'an integer in [1, inf)'``.

        Parameters
        ----------
        integer : bool
            Say "an integer" rather than "a number".

        Returns
        -------
        str
        """
        return f"{'an integer' if integer else 'a number'} in {self}"


def parse_range(help_text: str) -> tuple[ValueRange | None, str]:
    """Split a parameter's comment into its leading interval and the rest.

    Parameters
    ----------
    help_text : str
        The comment after the assignment, as papermill reports it (``'[1, inf) the paper: 500'``).

    Returns
    -------
    range : ValueRange or None
        The interval, or None when the comment does not start with one (a bracket, two bounds
        separated by a comma, a bracket, then a space or the end).
    help : str
        The comment after the interval (the whole comment when there is none).

    Raises
    ------
    ParameterError
        When the comment starts with an interval that is malformed: a bound that is not a plain
        number or ``inf``/``-inf`` (``[a, b)``, ``[0, 2**32)``), ``inf`` at an inclusive bracket,
        a lower bound above the upper one (``[5, 1]``), or an empty interval (``[1, 1)``).
    """
    text = (help_text or "").strip()
    match = _INTERVAL.match(text)
    if match is None:
        return None, text
    written = match.group(0)
    bounds = []
    for which in ("low", "high"):
        token = match.group(which)
        if not _NUMBER.match(token):
            raise ParameterError(f"range {written}: the {which} bound {token!r} is not a number "
                                 "(write plain numbers such as 1, 0.5, 4294967295, or inf / -inf)")
        bounds.append(int(token) if _INTEGER.match(token) else float(token))
    low, high = bounds
    low_inclusive, high_inclusive = match.group("open") == "[", match.group("close") == "]"
    if (math.isinf(low) and low_inclusive) or (math.isinf(high) and high_inclusive):
        raise ParameterError(f"range {written}: an infinite bound is never reached; write it with ( or )")
    if low > high or (low == high and not (low_inclusive and high_inclusive)):
        raise ParameterError(f"range {written}: no value lies in it (the lower bound must be below the upper one)")
    return ValueRange(low, high, low_inclusive, high_inclusive), text[match.end():].strip()


def parse_choices(help_text: str) -> tuple[tuple[str, ...] | None, str]:
    """Split a parameter's comment into its leading set of allowed values and the rest.

    Parameters
    ----------
    help_text : str
        The comment after the assignment, as papermill reports it
        (``'{equalize_image, equalize_patch, none} how grey levels are mapped'``).

    Returns
    -------
    choices : tuple of str or None
        The values in the set, in the order written, or None when the comment does not start
        with ``{``.
    help : str
        The comment after the set (the whole comment when there is none).

    Raises
    ------
    ParameterError
        When the comment starts with ``{`` but not with a well-formed set: no closing brace, the
        closing brace not followed by a space or the end, no values (``{}``), an empty value
        (``{a, , b}``, ``{a,}``), a value with a space, quote, brace or bracket in it (``{a b}``,
        ``{"a", "b"}``), or a value listed twice.
    """
    text = (help_text or "").strip()
    if not text.startswith("{"):
        return None, text
    end = text.find("}")
    if end < 0:
        shown = text if len(text) <= 40 else text[:40] + "..."
        raise ParameterError(f"set {shown}: no closing brace (write the allowed values as {{a, b, c}})")
    written, rest = text[:end + 1], text[end + 1:]
    if rest and not rest[0].isspace():
        raise ParameterError(f"set {written}: a space must follow the closing brace, before the help text")
    body = written[1:-1]
    if not body.strip():
        raise ParameterError(f"set {written}: no values in it")
    choices = [part.strip() for part in body.split(",")]
    if "" in choices:
        raise ParameterError(f"set {written}: an empty value (two commas in a row, or a comma at an end)")
    for choice in choices:
        if not _CHOICE.match(choice):
            raise ParameterError(f"set {written}: {choice!r} is not one plain value (separate the values by "
                                 "commas; write each without spaces, quotes, braces or brackets)")
    twice = sorted({c for c in choices if choices.count(c) > 1})
    if twice:
        raise ParameterError(f"set {written}: {', '.join(twice)} listed twice")
    return tuple(choices), rest.strip()


def _show(value: Any) -> str:
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _range_problem(spec: Any, value: Any) -> str | None:
    """Why a value is outside the spec's range (None: it is inside, or nothing is declared)."""
    rng = spec.range
    if rng is None or (value is None and ("None" in spec.types or not spec.types)):
        return None  # None is the type's business (no types: a default that is not a literal)
    if spec._is_list():
        if not isinstance(value, list | tuple):
            return f"{spec.name} must be {spec.describe_range()}, not {type(value).__name__}"
        integer = spec.item_types == {"int"}
        bad = [x for x in value
               if not _is_number(x) or (integer and not isinstance(x, int)) or not rng.contains(x)]
        if bad:
            return (f"each element of {spec.name} must be {rng.describe(integer)}; "
                    f"{', '.join(_show(x) for x in bad)} {'is' if len(bad) == 1 else 'are'} not")
        return None
    if not _is_number(value) or (spec._integer_only() and not isinstance(value, int)) \
            or not rng.contains(value):
        return f"{spec.name} must be {spec.describe_range()}"
    return None


def _choice_problem(spec: Any, value: Any) -> str | None:
    """Why a value is outside the spec's set (None: it is inside, or nothing is declared)."""
    choices = spec.choices
    if choices is None or (value is None and ("None" in spec.types or not spec.types)):
        return None
    if isinstance(value, list | tuple) and ("list" in spec.types or not spec.types):
        bad = [x for x in value if not isinstance(x, str) or x not in choices]
        if bad:
            return (f"each element of {spec.name} must be one of {', '.join(choices)}; "
                    f"{', '.join(_show(x) for x in bad)} {'is' if len(bad) == 1 else 'are'} not")
        return None
    if spec._is_text_list():
        return f"{spec.name} must be {spec.describe_choices()}, not {type(value).__name__}"
    if not isinstance(value, str) or value not in choices:
        return f"{spec.name} must be {spec.describe_choices()}"
    return None


def check_values(specs: dict[str, Any], values: dict, where: str,
                 origins: dict[str, str] | None = None) -> list[str]:
    """Every value outside its parameter's declared range or set, as one sentence each.

    Parameters
    ----------
    specs : dict of str to ParameterSpec
        One notebook's parameters (:func:`parameter_specs`).
    values : dict
        ``{name: value}``, values already typed (after :func:`convert_value`, or from a profile or
        a ``--params-file``), e.g. every value a notebook will use. Names the notebook does not
        declare, and parameters with neither a range nor a set, are not checked here.
    where : str
        Where the values go or come from, in parentheses at the end of each sentence: the
        notebook's file name (``'03_feature_space.ipynb'``); "" for none.
    origins : dict of str to str, optional
        How each value was given, at the start of its sentence: ``{"n_per_group": "-p"}``,
        ``"profile smoke"``, ``"--params-file x.json"``; names left out start with the name.

    Returns
    -------
    list of str
        One sentence per value out of range or set, in the order of ``values``, naming the
        parameter, the value (the text of a parameter with a set as typed, anything else in
        JSON, so ``"5"`` given for a number reads as text), the allowed values and
        where from, e.g. ``'-p n_per_group=-5: n_per_group must be an integer in [1, inf)
        (03_feature_space.ipynb)'``, ``'normalisation=bogus: normalisation must be one of
        equalize_image, equalize_patch, none (01_extract_patches.ipynb)'``; empty when every value
        is allowed. NaN is never in range, a boolean is not a number, a float where the parameter
        is an integer, or None where its type does not allow it, is out of range too; a text
        must match a value of the set exactly (case included).
    """
    problems = []
    for name, value in values.items():
        spec = specs.get(name)
        problem = (_range_problem(spec, value) or _choice_problem(spec, value)) if spec is not None else None
        if problem:
            origin = (origins or {}).get(name)
            shown = value if isinstance(value, str) and spec.choices is not None else _show(value)
            problems.append(f"{origin + ' ' if origin else ''}{name}={shown}: {problem}"
                            + (f" ({where})" if where else ""))
    return problems
