"""The lesion-class filter of stages 02-04 (``lesion_classes``) checked before any work, by the
rules :func:`mammo_lib.sources.lesion_classes.select_lesion_rows` applies to a patch store."""

import pandas as pd
import pytest

from mammo_lib.sources.lesion_classes import (
    LesionClassError,
    check_lesion_classes,
    select_lesion_rows,
)
from mammo_lib.sources.records import LESION_CLASSES


def _manifest() -> pd.DataFrame:
    return pd.DataFrame({"lesion_class": list(LESION_CLASSES) * 2})


@pytest.mark.parametrize("value", [None, ["mass"], "mass", [" Mass ", "calcification"], ("asymmetry",),
                                   list(LESION_CLASSES)])
def test_usable_values_pass_and_select_rows(value):
    assert check_lesion_classes(value) == []
    assert len(select_lesion_rows(_manifest(), value, "store")) > 0  # the stages accept them too


def test_unknown_classes_are_listed_with_the_known_ones():
    problems = check_lesion_classes(["Mass", "tumour", "calc"])
    assert problems == [
        "unknown lesion class 'calc', 'tumour' in lesion_classes=['calc', 'mass', 'tumour'] "
        "(known classes: mass, calcification, architectural_distortion, asymmetry, other); "
        "use those names, or None for every class"]
    with pytest.raises(LesionClassError, match="unknown lesion class 'calc', 'tumour'"):  # the stage's own verdict
        select_lesion_rows(_manifest(), ["Mass", "tumour", "calc"], "store")
    assert len(check_lesion_classes("masses")) == 1


def test_an_empty_list_is_the_stages_error():
    problems = check_lesion_classes([])
    assert len(problems) == 1 and "lesion_classes is an empty list" in problems[0]
    with pytest.raises(LesionClassError, match="empty list"):
        select_lesion_rows(_manifest(), [], "store")


@pytest.mark.parametrize("value", [5, {"mass": 1}, True])
def test_a_value_of_the_wrong_type(value):
    assert check_lesion_classes(value) == [
        f"lesion_classes={value!r}: must be a list of lesion class names such as ['mass'], or None for every "
        f"class, not {type(value).__name__}"]

