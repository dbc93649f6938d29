"""Typed notebook parameters: types from annotations or from the values a parameter takes, and
``-p key=value`` converted by them (Python and JSON spellings, paths kept as text)."""

import pytest
from conftest import parameters_notebook

from mammo_lib.study.parameters import (
    ParameterError,
    ParameterSpec,
    convert_value,
    parameter_specs,
    split_override,
    type_names_of_annotation,
)


def _spec(*types, default=None):
    return ParameterSpec("p", frozenset(types), default)


def test_booleans_none_and_lists_in_python_and_json_spelling():
    flag = _spec("bool", default=False)
    assert convert_value(flag, "False") is False and convert_value(flag, "false") is False
    assert convert_value(flag, "True") is True and convert_value(flag, "true") is True
    classes = _spec("list", "None")
    assert convert_value(classes, "None") is None and convert_value(classes, "null") is None
    assert convert_value(classes, '["mass"]') == ["mass"]
    assert convert_value(classes, "['mass', 'calcification']") == ["mass", "calcification"]


def test_a_path_parameter_stays_the_text_typed():
    path = _spec("str", default="")
    assert convert_value(path, "2016") == "2016"
    assert convert_value(path, "true") == "true"
    assert convert_value(path, "/data/omi-db") == "/data/omi-db"


def test_numbers_and_mismatches_name_the_parameter():
    count = _spec("int", default=500)
    assert convert_value(count, "250") == 250
    with pytest.raises(ParameterError, match=r"-p p=many: p is int"):
        convert_value(count, "many")
    with pytest.raises(ParameterError, match="p is int"):
        convert_value(count, "2.5")
    with pytest.raises(ParameterError, match="p is bool"):
        convert_value(_spec("bool"), "yes")
    assert convert_value(_spec("float"), "30") == 30.0 and isinstance(convert_value(_spec("float"), "30"), float)
    with pytest.raises(ParameterError, match="declares p as int, not list"):
        convert_value(count, ["a"])
    assert convert_value(_spec("bool"), True) is True  # typed values from Python code pass through


def test_types_from_annotations_and_from_profile_values(tmp_path):
    nb = parameters_notebook(tmp_path / "01_x.ipynb",
                   'run_dir = "../runs/default"\nseed = 0\nstop_early = False\nperplexity = 250.0\n'
                   'vendor_filter = None  # list of names or None\nwidth: int = 16\n'
                   'lesion_classes: Optional[list] = None\nanything = None\n')
    specs = parameter_specs(nb, [{"vendor_filter": None}, {"vendor_filter": ["Selenia Dimensions"]}])
    assert specs["run_dir"].types == {"str"} and specs["seed"].types == {"int"}
    assert specs["stop_early"].types == {"bool"} and specs["perplexity"].types == {"float"}
    assert specs["vendor_filter"].types == {"list", "None"}
    assert specs["width"].types == {"int"} and specs["lesion_classes"].types == {"list", "None"}
    assert specs["anything"].types == frozenset()  # only ever None: any JSON value
    assert convert_value(specs["anything"], "[1, 2]") == [1, 2]
    assert type_names_of_annotation("Optional[int]") == {"int", "None"}
    assert type_names_of_annotation("None") == frozenset()


def test_split_override():
    assert split_override("a=b=c") == ("a", "b=c")
    with pytest.raises(ParameterError, match="key=value"):
        split_override("novalue")
    with pytest.raises(ParameterError, match="no name"):
        split_override("=3")
