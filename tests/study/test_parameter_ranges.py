"""Value ranges of the notebooks' numeric parameters, and sets of allowed values of their text
parameters: declared once, at the start of the parameter's comment in the cell tagged
``parameters`` (``n_per_group = 500  # [1, inf) ...``, ``large_lesion = "resize"  # {resize,
crop} ...``), read through papermill's inspection of the real notebooks, and checked by
:func:`mammo_lib.study.parameters.check_values` before a study starts."""

import ast
import math
import shutil

import nbformat
import pytest
from conftest import parameters_notebook

from mammo_lib.study.parameters import (
    ParameterError,
    ParameterSpec,
    ValueRange,
    check_values,
    convert_value,
    parameter_specs,
    parse_choices,
    parse_range,
)
from mammo_lib.study.runner import PROFILES, _profiles_table, discover_notebooks, profile_parameters

NOTEBOOKS = discover_notebooks()
STEMS = [nb.stem for nb in NOTEBOOKS]


@pytest.fixture(scope="module")
def specs():
    """{stem: specs} of the five committed notebooks, typed with their profiles as the runner does."""
    return {nb.stem: parameter_specs(nb, list(_profiles_table(nb).values())) for nb in NOTEBOOKS}


def _is_number(x) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)


def _numeric(value) -> bool:
    """A number, or a non-empty list of numbers."""
    if isinstance(value, list):
        return bool(value) and all(map(_is_number, value))
    return _is_number(value)


def _assigned(nb_path) -> dict:
    """Every name the parameters cell assigns, with its value (read by ast, not by papermill)."""
    nb = nbformat.read(nb_path, as_version=4)
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    out = {}
    for node in ast.parse(cell.source).body:
        if isinstance(node, ast.Assign | ast.AnnAssign):
            target = node.targets[0] if isinstance(node, ast.Assign) else node.target
            out[target.id] = ast.literal_eval(node.value)
    return out


def _copy_with(tmp_path, stem, old, new):
    """A copy of a committed notebook whose parameters cell has ``old`` replaced by ``new``."""
    src = next(nb for nb in NOTEBOOKS if nb.stem == stem)
    dst = tmp_path / src.name
    shutil.copy(src, dst)
    nb = nbformat.read(dst, as_version=4)
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    assert old in cell.source
    cell.source = cell.source.replace(old, new, 1)
    nbformat.write(nb, dst)
    return dst


# ----------------------------------------------------------------------------- the committed notebooks


def test_five_notebooks():
    assert STEMS == ["01_extract_patches", "02_train_dcgan", "03_feature_space", "04_reader_study",
                     "05_roc_analysis"]


@pytest.mark.parametrize("stem", STEMS)
def test_every_numeric_parameter_declares_a_range(specs, stem):
    path = next(nb for nb in NOTEBOOKS if nb.stem == stem)
    profiles = _profiles_table(path)
    assigned = _assigned(path)
    numeric = sorted(name for name, default in assigned.items()
                     if _numeric(default) or any(_numeric(p.get(name)) for p in profiles.values()))
    assert "seed" in numeric
    unseen = [name for name in assigned if name not in specs[stem]]
    assert not unseen, f"{stem}: papermill does not see {unseen} (a second '=' on the line?)"
    missing = [name for name in numeric if specs[stem][name].range is None]
    assert not missing, f"{stem}: no range at the start of the comment of {missing}"
    ranged = sorted(name for name, spec in specs[stem].items() if spec.range is not None)
    assert ranged == numeric, f"{stem}: a range on a parameter that is not a number: {set(ranged) - set(numeric)}"


@pytest.mark.parametrize("stem", STEMS)
def test_seed_is_numpys_seed_range_in_everyparameters_notebook(specs, stem):
    assert specs[stem]["seed"].range == ValueRange(0, 2**32 - 1, True, True)
    assert specs[stem]["seed"].describe_range() == "an integer in [0, 4294967295]"


@pytest.mark.parametrize("stem", STEMS)
def test_the_range_is_not_part_of_the_help_text(specs, stem):
    for spec in specs[stem].values():
        assert parse_range(spec.help)[0] is None, (spec.name, spec.help)
        assert parse_choices(spec.help)[0] is None, (spec.name, spec.help)
    if stem == "03_feature_space":
        assert specs[stem]["n_per_group"].help == "the paper: 500 patches per group"


@pytest.mark.parametrize("stem", STEMS)
def test_defaults_and_every_profile_lie_in_their_ranges(specs, stem):
    path = next(nb for nb in NOTEBOOKS if nb.stem == stem)
    defaults = {name: spec.default for name, spec in specs[stem].items()}
    assert check_values(specs[stem], defaults, path.name) == []
    checked = 0
    for profile in PROFILES:
        values = profile_parameters(path, profile)
        assert check_values(specs[stem], {**defaults, **values}, path.name) == []
        checked += sum(specs[stem][name].range is not None or specs[stem][name].choices is not None
                       for name in values)
    assert checked > 0, f"{stem}: no profile value has a range or set to be checked against"


def test_ranges_read_from_the_code_of_each_stage(specs):
    """A few ranges that the library's own checks fix (t-SNE's early exaggeration, the C2ST's
    cut-offs below Nyquist, stride 1 or 2, numpy's seed)."""
    want = {
        ("03_feature_space", "n_iter"): "[250, inf)",
        ("03_feature_space", "perplexity"): "(0, inf)",
        ("03_feature_space", "c2st_folds"): "[2, inf)",
        ("03_feature_space", "c2st_null_repeats"): "[1, inf)",
        ("03_feature_space", "c2st_first_stride"): "[1, 2]",
        ("03_feature_space", "c2st_sweep_lowpass"): "(0, 0.5)",
        ("02_train_dcgan", "label_smoothing"): "[0, 0.5)",
        ("02_train_dcgan", "ema_decay"): "[0, 1)",
        ("04_reader_study", "n_practice"): "[0, inf)",
        ("04_reader_study", "display_scale"): "[1, 16]",
        ("05_roc_analysis", "n_bootstrap"): "[1, inf)",
    }
    got = {key: str(specs[key[0]][key[1]].range) for key in want}
    assert got == want


# ----------------------------------------------------------------------------- out-of-range values


def test_a_negative_count_names_parameter_value_range_andparameters_notebook(specs):
    s = specs["03_feature_space"]
    value = convert_value(s["n_per_group"], "-5")  # as the runner converts -p n_per_group=-5
    assert check_values(s, {"n_per_group": value}, "03_feature_space.ipynb", origins={"n_per_group": "-p"}) == [
        "-p n_per_group=-5: n_per_group must be an integer in [1, inf) (03_feature_space.ipynb)"]
    assert check_values(s, {"n_per_group": value}, "03_feature_space.ipynb") == [  # origin not known
        "n_per_group=-5: n_per_group must be an integer in [1, inf) (03_feature_space.ipynb)"]
    assert check_values(s, {"n_per_group": 1}, "03_feature_space.ipynb") == []


@pytest.mark.parametrize("stem", STEMS)
def test_seed_out_of_numpys_range(specs, stem):
    s = specs[stem]
    assert check_values(s, {"seed": -1}, f"{stem}.ipynb", origins={"seed": "--seed"}) == [
        f"--seed seed=-1: seed must be an integer in [0, 4294967295] ({stem}.ipynb)"]
    assert len(check_values(s, {"seed": 2**32}, "")) == 1
    assert check_values(s, {"seed": 0}, "") == check_values(s, {"seed": 2**32 - 1}, "") == []


def test_zero_at_an_exclusive_bound(specs):
    s3, s2 = specs["03_feature_space"], specs["02_train_dcgan"]
    assert check_values(s3, {"perplexity": 0.0}, "03_feature_space.ipynb", {"perplexity": "profile smoke"}) == [
        "profile smoke perplexity=0.0: perplexity must be a number in (0, inf) (03_feature_space.ipynb)"]
    assert check_values(s2, {"lr_g": 0.0}, "02_train_dcgan.ipynb", {"lr_g": "-p"}) == [
        "-p lr_g=0.0: lr_g must be a number in (0, inf) (02_train_dcgan.ipynb)"]
    assert check_values(s2, {"time_budget_s": 0}, "") == [
        "time_budget_s=0: time_budget_s must be an integer in (0, inf), or None"]
    assert check_values(s2, {"time_budget_s": None, "lr_g": 1e-9}, "") == []  # None: by the type
    assert len(check_values(s2, {"label_smoothing": 0.5}, "")) == 1  # [0, 0.5)
    assert check_values(s2, {"label_smoothing": 0.0}, "") == []


def test_an_element_of_a_list_out_of_range(specs):
    s = specs["03_feature_space"]
    assert check_values(s, {"c2st_widths": [16, 0, 64]}, "03_feature_space.ipynb", {"c2st_widths": "-p"}) == [
        "-p c2st_widths=[16, 0, 64]: each element of c2st_widths must be an integer in [1, inf); 0 is not "
        "(03_feature_space.ipynb)"]
    assert check_values(s, {"c2st_sweep_lowpass": [0.1, 0.5, 0.0]}, "03_feature_space.ipynb") == [
        "c2st_sweep_lowpass=[0.1, 0.5, 0.0]: each element of c2st_sweep_lowpass must be a number in "
        "(0, 0.5); 0.5, 0.0 are not (03_feature_space.ipynb)"]
    assert len(check_values(s, {"c2st_widths": [16, 2.5]}, "")) == 1  # integers only
    assert len(check_values(s, {"c2st_widths": [16, True]}, "")) == 1
    assert check_values(s, {"c2st_sweep_highpass": [], "c2st_widths": [4, 8]}, "") == []


def test_booleans_nan_inf_and_fractions_are_out_of_range(specs):
    s3, s4 = specs["03_feature_space"], specs["04_reader_study"]
    assert len(check_values(s3, {"n_per_group": True}, "")) == 1  # a boolean is not a number
    assert len(check_values(s3, {"n_per_group": 2.5}, "")) == 1  # an integer parameter
    assert len(check_values(s3, {"perplexity": math.nan}, "")) == 1
    assert len(check_values(s3, {"perplexity": math.inf}, "")) == 1  # inf is never inside (.., inf)
    assert len(check_values(s3, {"perplexity": None}, "")) == 1  # the type does not allow None
    assert len(check_values(s4, {"display_scale": 17}, "")) == 1
    assert check_values(s4, {"display_scale": 16, "reader_id": "x", "unknown": -5}, "") == []


def test_every_problem_reported_together(specs):
    problems = check_values(specs["03_feature_space"],
                            {"n_per_group": -5, "c2st_folds": 1, "n_iter": 100, "k_prdc": 5}, "03_feature_space.ipynb")
    assert [p.split("=", 1)[0] for p in problems] == ["n_per_group", "c2st_folds", "n_iter"]


# ----------------------------------------------------------------------------- malformed intervals


@pytest.mark.parametrize("bad", ["[5, 1]", "[a, b)", "[0, 2**32]", "[0, inf]", "[-inf, 0)", "[1, 1)",
                                 "(0, nan)"])
def test_a_malformed_interval_names_notebook_and_parameter(tmp_path, bad):
    nb = _copy_with(tmp_path, "03_feature_space", "# [1, inf) the paper", f"# {bad} the paper")
    with pytest.raises(ParameterError, match=r"^03_feature_space\.ipynb: parameter n_per_group: range"):
        parameter_specs(nb)


def test_an_interval_on_a_string_parameter_is_a_mistake(tmp_path):
    nb = parameters_notebook(tmp_path / "01_x.ipynb", 'name = "a"  # [0, 1] text\n')
    with pytest.raises(ParameterError, match="01_x.ipynb: parameter name: range .0, 1. on a parameter of type str"):
        parameter_specs(nb)


def test_intervals_in_a_new_notebook(tmp_path):
    nb = parameters_notebook(tmp_path / "01_x.ipynb",
                   "a = 3  # [0,1] tight spelling\n"
                   "b = -2.0  # (-inf, 0] negative\n"
                   "c = [0.001]  # [1e-3, 0.5) each cut-off\n"
                   "d = 4  # [1, inf\n"  # not closed: no range (the numeric-parameter test catches it)
                   'e = "x"  # (e.g., x) words in brackets before a string parameter\n'
                   "f = 5  # no range\n")
    specs = parameter_specs(nb)
    assert specs["a"].range == ValueRange(0, 1, True, True) and specs["a"].help == "tight spelling"
    assert check_values(specs, {"a": 3}, "01_x.ipynb") == ["a=3: a must be an integer in [0, 1] (01_x.ipynb)"]
    assert specs["b"].range == ValueRange(-math.inf, 0, False, True) and specs["b"].help == "negative"
    assert specs["c"].range == ValueRange(0.001, 0.5, True, False) and specs["c"].item_types == {"float"}
    assert specs["d"].range is None and specs["d"].help == "[1, inf"
    assert specs["e"].range is None and specs["e"].help.startswith("(e.g., x)")
    assert specs["f"].range is None and check_values(specs, {"f": -1}, "") == []


def test_parse_range():
    assert parse_range("[1, inf) the paper: 500") == (ValueRange(1, math.inf, True, False), "the paper: 500")
    assert parse_range("(0, 0.5)") == (ValueRange(0, 0.5, False, False), "")
    assert parse_range("the paper: [1, 2]") == (None, "the paper: [1, 2]")
    assert parse_range("") == (None, "")
    assert str(ValueRange(0, math.inf, False, False)) == "(0, inf)"
    assert ValueRange(0, 1, True, False).describe() == "a number in [0, 1)"
    assert ParameterSpec("p", frozenset({"list"}), [1], range=ValueRange(1, 2), item_types=frozenset({"int"})
                         ).describe_range() == "a list of integers, each in [1, 2]"
    with pytest.raises(ParameterError, match=r"range \[5, 1\]: no value"):
        parse_range("[5, 1] backwards")


# ----------------------------------------------------------------------------- sets of allowed values

#: every parameter of the committed notebooks whose allowed values are a fixed set
CHOICE_PARAMETERS = {
    "01_extract_patches": {"source_kind", "normalisation", "large_lesion"},
    "02_train_dcgan": {"upsampling", "network", "g_padding"},
    "03_feature_space": {"backend", "perplexity_policy", "feature_spaces"},
    "04_reader_study": {"machine_observers"},
    "05_roc_analysis": {"mrmc_covariance"},
}


@pytest.mark.parametrize("stem", STEMS)
def test_which_parameters_declare_a_set(specs, stem):
    got = {name for name, spec in specs[stem].items() if spec.choices is not None}
    assert got == CHOICE_PARAMETERS[stem]
    for name in got:  # a set never comes with a range, and never on a number
        assert specs[stem][name].range is None
        assert specs[stem][name].types & {"str", "list"}


def test_the_sets_are_the_librarys_own():
    """Each declared set is the tuple the code that takes the parameter checks against, in its
    order (so a new kind or backend added to the library shows up here)."""
    from mammo_lib.extract.rules import LARGE_LESION_POLICIES, NORMALISATIONS
    from mammo_lib.feature_space.sampling import FEATURE_SPACES
    from mammo_lib.feature_space.tsne.run import BACKENDS
    from mammo_lib.generate.model import G_PADDING, NETWORKS, UPSAMPLING
    from mammo_lib.reader_study.machine_observers import MACHINE_OBSERVERS
    from mammo_lib.roc.mrmc import COVARIANCE_METHODS
    from mammo_lib.sources.collection import COLLECTION_KINDS

    s = {nb.stem: parameter_specs(nb) for nb in NOTEBOOKS}
    assert s["01_extract_patches"]["source_kind"].choices == COLLECTION_KINDS
    assert s["01_extract_patches"]["normalisation"].choices == NORMALISATIONS
    assert s["01_extract_patches"]["large_lesion"].choices == LARGE_LESION_POLICIES
    assert s["02_train_dcgan"]["upsampling"].choices == UPSAMPLING
    assert s["02_train_dcgan"]["network"].choices == NETWORKS
    assert s["02_train_dcgan"]["g_padding"].choices == G_PADDING
    assert s["03_feature_space"]["backend"].choices == BACKENDS
    assert s["03_feature_space"]["feature_spaces"].choices == FEATURE_SPACES
    assert s["04_reader_study"]["machine_observers"].choices == MACHINE_OBSERVERS
    assert s["05_roc_analysis"]["mrmc_covariance"].choices == COVARIANCE_METHODS
    assert s["03_feature_space"]["perplexity_policy"].choices == ("clamp", "raise")


def test_perplexity_policy_set_is_what_resolve_perplexity_accepts(specs):
    """No constant names the policies: resolve_perplexity's behaviour does."""
    from mammo_lib.feature_space.tsne.affinity import FeatureSpaceError, resolve_perplexity

    with pytest.warns(Warning):
        assert resolve_perplexity(50.0, 31, "clamp")[0] == 10.0
    with pytest.raises(FeatureSpaceError, match="too large"):
        resolve_perplexity(50.0, 31, "raise")
    with pytest.raises(FeatureSpaceError, match="unknown perplexity policy"):
        resolve_perplexity(50.0, 31, "bogus")
    assert check_values(specs["03_feature_space"], {"perplexity_policy": "bogus"}, "") == [
        "perplexity_policy=bogus: perplexity_policy must be one of clamp, raise"]


@pytest.mark.parametrize("stem", STEMS)
def test_defaults_and_profile_values_lie_in_their_sets(specs, stem):
    path = next(nb for nb in NOTEBOOKS if nb.stem == stem)
    assigned = _assigned(path)
    seen = 0
    for name in CHOICE_PARAMETERS[stem]:
        choices = specs[stem][name].choices
        values = [assigned[name]] + [profile_parameters(path, p)[name] for p in PROFILES
                                     if name in profile_parameters(path, p)]
        for value in values:
            items = value if isinstance(value, list) else [value]
            assert items and all(x in choices for x in items), (stem, name, value, choices)
            seen += 1
    assert seen >= len(CHOICE_PARAMETERS[stem])


def test_a_value_outside_its_set_names_parameter_value_set_andparameters_notebook(specs):
    s1 = specs["01_extract_patches"]
    assert check_values(s1, {"normalisation": "bogus"}, "01_extract_patches.ipynb") == [
        "normalisation=bogus: normalisation must be one of equalize_image, equalize_patch, none "
        "(01_extract_patches.ipynb)"]
    value = convert_value(s1["large_lesion"], "Resize")  # as the runner converts -p large_lesion=Resize
    assert check_values(s1, {"large_lesion": value}, "01_extract_patches.ipynb", {"large_lesion": "-p"}) == [
        "-p large_lesion=Resize: large_lesion must be one of resize, crop (01_extract_patches.ipynb)"]  # exact case
    assert check_values(s1, {"source_kind": "omidb", "normalisation": "none", "large_lesion": "crop"}, "") == []
    assert len(check_values(s1, {"normalisation": None}, "")) == 1  # the type does not allow None
    assert len(check_values(s1, {"normalisation": 3}, "")) == 1


def test_an_element_of_a_list_outside_its_set(specs):
    s3, s4 = specs["03_feature_space"], specs["04_reader_study"]
    assert check_values(s3, {"feature_spaces": ["pixels", "bogus", "CNN"]}, "03_feature_space.ipynb",
                        {"feature_spaces": "profile smoke"}) == [
        'profile smoke feature_spaces=["pixels", "bogus", "CNN"]: each element of feature_spaces must be one of '
        'pixels, cnn, random-cnn; "bogus", "CNN" are not (03_feature_space.ipynb)']
    assert check_values(s4, {"machine_observers": ["machine-svm"]}, "") == [
        'machine_observers=["machine-svm"]: each element of machine_observers must be one of machine-pixels, '
        'machine-spectrum, machine-cnn; "machine-svm" is not']
    assert check_values(s3, {"feature_spaces": "pixels"}, "") == [
        "feature_spaces=pixels: feature_spaces must be a list of values, each one of pixels, cnn, random-cnn, "
        "not str"]
    assert check_values(s4, {"machine_observers": []}, "") == []
    assert check_values(s3, {"feature_spaces": ["cnn"]}, "") == []


def test_ranges_and_sets_reported_together(specs):
    problems = check_values(specs["03_feature_space"],
                            {"n_per_group": -5, "backend": "tsnecuda", "perplexity_policy": "clamp",
                             "feature_spaces": ["pixel"]}, "03_feature_space.ipynb")
    assert [p.split("=", 1)[0] for p in problems] == ["n_per_group", "backend", "feature_spaces"]


@pytest.mark.parametrize("bad", ["{}", "{ }", "{resize, , crop}", "{resize,}", "{resize crop}",
                                 '{"resize", "crop"}', "{resize, resize}", "{resize, crop",
                                 "{resize, crop}text", "{resize, {crop}}", "{[resize], crop}"])
def test_a_malformed_set_names_notebook_and_parameter(tmp_path, bad):
    nb = _copy_with(tmp_path, "01_extract_patches", "# {resize, crop} a lesion", f"# {bad} a lesion")
    with pytest.raises(ParameterError, match=r"^01_extract_patches\.ipynb: parameter large_lesion: set "):
        parameter_specs(nb)


@pytest.mark.parametrize(("line", "kind"), [("n = 3  # {1, 2} a number", "int"),
                                            ("x = 0.5  # {a, b} a number", "float"),
                                            ("f = False  # {yes, no} a flag", "bool"),
                                            ("c = [1, 2]  # {a, b} numbers", "list of int")])
def test_a_set_on_a_parameter_that_is_not_text_is_a_mistake(tmp_path, line, kind):
    nb = parameters_notebook(tmp_path / "01_x.ipynb", line + "\n")
    with pytest.raises(ParameterError, match=rf"^01_x\.ipynb: parameter \w: set {{.*}} on a parameter of type {kind}: "
                                             "only text and lists of text"):
        parameter_specs(nb)


def test_sets_in_a_new_notebook(tmp_path):
    nb = parameters_notebook(tmp_path / "01_x.ipynb",
                   'a = "x"  # {x,y,  z-1} tight and loose spelling\n'
                   "b = ['x']  # {x, y} each element\n"
                   "c: Optional[str] = None  # {x, y} or None\n"
                   "d = []  # {x, y}\n"
                   'e = "x"  # (e.g. {x}) braces later in the comment are help\n'
                   "f = 3  # [1, inf) {not a set}\n"
                   'g = "x"  # {x}\n')
    specs = parameter_specs(nb)
    assert specs["a"].choices == ("x", "y", "z-1") and specs["a"].help == "tight and loose spelling"
    assert specs["a"].range is None and specs["a"].describe_choices() == "one of x, y, z-1"
    assert specs["b"].choices == ("x", "y") and specs["b"].help == "each element"
    assert specs["b"].describe_choices() == "a list of values, each one of x, y"
    assert specs["c"].choices == ("x", "y") and specs["c"].describe_choices() == "one of x, y, or None"
    assert specs["d"].choices == ("x", "y")
    assert specs["e"].choices is None and specs["e"].help == "(e.g. {x}) braces later in the comment are help"
    assert specs["f"].range == ValueRange(1, math.inf, True, False) and specs["f"].choices is None
    assert specs["f"].help == "{not a set}"
    assert specs["g"].choices == ("x",) and specs["g"].help == ""
    assert check_values(specs, {"a": "z-1", "b": ["y", "x"], "c": None, "d": [], "g": "x"}, "") == []
    assert check_values(specs, {"a": "z", "c": "z", "d": ["z"]}, "01_x.ipynb") == [
        "a=z: a must be one of x, y, z-1 (01_x.ipynb)",
        "c=z: c must be one of x, y, or None (01_x.ipynb)",
        'd=["z"]: each element of d must be one of x, y; "z" is not (01_x.ipynb)']


def test_parse_choices():
    assert parse_choices("{resize, crop} a lesion") == (("resize", "crop"), "a lesion")
    assert parse_choices("  {a}") == (("a",), "")
    assert parse_choices("resize or crop {a, b}") == (None, "resize or crop {a, b}")
    assert parse_choices("") == (None, "")
    assert parse_range("{1, 2} not an interval") == (None, "{1, 2} not an interval")
    with pytest.raises(ParameterError, match=r"^set \{a, a\}: a listed twice$"):
        parse_choices("{a, a} twice")
    with pytest.raises(ParameterError, match=r"^set \{a, b: no closing brace"):
        parse_choices("{a, b")
    with pytest.raises(ParameterError, match=r"^set \{a b\}: 'a b' is not one plain value"):
        parse_choices("{a b}")


def test_text_given_for_a_number_is_shown_as_text(specs):
    assert check_values(specs["03_feature_space"], {"n_per_group": "5"}, "") == [
        'n_per_group="5": n_per_group must be an integer in [1, inf)']
