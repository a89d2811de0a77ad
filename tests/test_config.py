"""Configuration: schema validation, readable errors, documentation of every key."""

import copy
import re

import pytest
import yaml

from thermocg import config
from conftest import REPO, run_snakemake

DEFAULT = yaml.safe_load((REPO / "config" / "config.yaml").read_text())


def test_shipped_configs_are_valid():
    for name in ("config.yaml", "test.yaml"):
        checked = config.load(REPO / "config" / name)
        assert checked["fg"]["friction"] <= 0.1


def test_defaults_are_filled():
    minimal = {key: DEFAULT[key] for key in ("seed", "temperatures", "reference_temperature")}
    minimal.update(water={"n_molecules": 256, "density": 0.997}, fg={}, observables={})
    checked = config.check(minimal)
    assert checked["water"]["model"] == "spce" and checked["water"]["cutoff"] == 0.9
    assert checked["fg"]["timestep"] == 0.002


def test_nested_command_line_values_are_read_as_the_schema_types():
    # Snakemake passes a nested --config value as text ('cgmd={production: 20}' gives "20")
    text = changed(("fg", "production"), "25.0")
    text["temperatures"] = ["250", "300", "450"]
    text["cgmd"]["friction"] = "27"  # a number or "fit"
    text["models"]["trf1"]["r_loc"] = "0.4"
    text["sweep"] = {"table": "null"}
    checked = config.check(text)
    assert checked["fg"]["production"] == 25.0 and checked["temperatures"] == [250, 300, 450]
    assert checked["cgmd"]["friction"] == 27 and checked["models"]["trf1"]["r_loc"] == 0.4
    assert checked["sweep"]["table"] is None and checked["water"]["model"] == "spce"
    assert config.check(changed(("cgmd", "friction"), "fit"))["cgmd"]["friction"] == "fit"
    with pytest.raises(config.ConfigError, match="'fg.production' = 'abc': must be of type number"):
        config.check(changed(("fg", "production"), "abc"))


def test_numbers_in_exponent_notation_without_a_point_are_numbers():
    # YAML 1.1 (PyYAML, Snakemake's config files) reads 3e-4 as text, 3.0e-4 as a number
    assert yaml.safe_load("learning_rate: 3e-4") == {"learning_rate": "3e-4"}
    checked = config.check(changed(("training", "learning_rate"), "3e-4"))
    assert checked["training"]["learning_rate"] == pytest.approx(3e-4)
    assert config.check(changed(("fg", "production"), "1E2"))["fg"]["production"] == 100.0
    # only where the key takes a number; other text is still refused
    with pytest.raises(config.ConfigError, match="'water.n_molecules' = '2e2': must be of type integer"):
        config.check(changed(("water", "n_molecules"), "2e2"))
    with pytest.raises(config.ConfigError, match="'fg.production' = '3e': must be of type number"):
        config.check(changed(("fg", "production"), "3e"))


def test_nested_command_line_values_reach_the_workflow(tmp_path):
    result = run_snakemake(tmp_path, "--dry-run", "--config", "fg={production: 25.0}", "cgmd={production: 12}")
    assert re.search(r"^total\s+\d+$", result.stdout + result.stderr, flags=re.MULTILINE)
    # a nested value changes the plan (no model refined: no DiffSim job), the rest of its section kept
    assert "refine_diffsim" in result.stdout
    result = run_snakemake(tmp_path, "--dry-run", "--config", "diffsim={models: []}")
    assert "refine_diffsim" not in result.stdout and re.search(r"^total\s+\d+$", result.stdout, flags=re.MULTILINE)
    # and a bad one is refused with its key
    result = run_snakemake(tmp_path, "--dry-run", "--config", "cgmd={production: abc}", check=False)
    assert result.returncode != 0 and "'cgmd.production' = 'abc'" in result.stdout + result.stderr


def changed(path, value):
    result = copy.deepcopy(DEFAULT)
    node = result
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return result


@pytest.mark.parametrize(
    "path, value, expected",
    [
        (("temperatures",), [-5, 300], "'temperatures[0]' = -5: must be > 0"),
        (("water", "n_molecules"), "many", "'water.n_molecules' = 'many': must be of type integer"),
        (("water", "model"), "tip5p", "'water.model' = 'tip5p': must be one of"),
        (("fg", "friction"), 1.0, "'fg.friction' = 1.0: must be <= 0.1"),
        (("water", "density"), -1.0, "'water.density' = -1.0: must be > 0.1"),
        (("water", "n_molecules"), 100, "must exceed twice 'water.cutoff' = 0.9 nm"),
        (("reference_temperature",), 310, "'reference_temperature' = 310: must be one of"),
        (("fg", "frame_interval"), 0.003, "whole multiple of 'fg.timestep'"),
        (("fg", "production"), 30.05, "'fg.production' = 30.05 ps: must be a whole multiple of 'fg.frame_interval' = 0.1 ps"),
        (("dynamics", "fine_frame_interval"), 0.003, "'dynamics.fine_frame_interval' = 0.003 ps: must be a whole multiple"),
        (("cgmd", "production"), 10.04, "'cgmd.production' = 10.04 ps: must be a whole multiple of 'cgmd.frame_interval'"),
        (("training",), {"validation_fraction": 0.5, "test_fraction": 0.5}, "leave no frame to train on"),
        # repeats: one training temperature twice gives mtfm no temperature change to learn from
        (("models", "mtfm", "temperatures"), [300, 300.0], "'models.mtfm.temperatures' = [300, 300.0]: must be a list without repeats"),
        (("diffsim", "temperatures"), [250, 250], "'diffsim.temperatures' = [250, 250]: must be a list without repeats"),
        (("cgmd", "friction_trials"), [5.0, 5.0], "'cgmd.friction_trials' = [5.0, 5.0]: must be a list without repeats"),
        # limits that depend on other keys, which a job would otherwise meet after the FG sampling and the fits
        (("network", "cutoff"), 0.9, "'network.cutoff' = 0.9 nm and 'cgmd.skin' = 0.15 nm: the CG neighbour list"),
        (("network", "prior"), {"onset_radius": 0.65}, "'network.prior.onset_radius' = 0.65 nm: must be <= 'network.cutoff'"),
        (("models", "trf1"), {"kind": "trf1", "response": "radial", "r_min": 0.7}, "'models.trf1.r_min' = 0.7 nm: must be below"),
        (("fg", "reference_production"), 5.0, "'observables.msd_fit_end' = 10.0 ps: need start < end <= 'fg.reference_production'"),
        (("fg", "score_production"), 0.1, "'fg.score_production' = 0.1 ps: must hold at least 2 frames"),
        (("dynamics", "models"), ["trf9"], "'dynamics.models' names 'trf9': must be one of the simulated models"),
    ],
)
def test_bad_values_name_the_key_and_the_allowed_range(path, value, expected):
    with pytest.raises(config.ConfigError, match=None) as error:
        config.check(changed(path, value))
    assert expected in str(error.value)


NAME_RULE = "the name must be a letter, then letters, digits or _, not ending in _diffsim"


@pytest.mark.parametrize("name", ["../../../escape", "trf1/global", "a|b", "trf2_diffsim", "2fast", "fm ref", ""])
def test_bad_model_names_are_rejected(name):
    # names become paths and wildcards: no folders, no regex, no clash with <model>_diffsim
    bad = copy.deepcopy(DEFAULT)
    bad["models"][name] = {"kind": "trf2"}
    with pytest.raises(config.ConfigError) as error:
        config.check(bad)
    assert f"config key 'models.{name}': {NAME_RULE}" in str(error.value)


@pytest.mark.parametrize("name", ["../../../escape", "trf2_diffsim"])
def test_a_bad_model_name_stops_snakemake_before_any_job(tmp_path, name):
    bad = yaml.safe_load((REPO / "config" / "test.yaml").read_text())
    bad["models"][name] = {"kind": "trf2"}  # test.yaml refines trf2: trf2_diffsim would be made twice
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(bad))
    result = run_snakemake(tmp_path, "--cores", "1", "--configfile", str(tmp_path / "bad.yaml"), check=False)
    assert result.returncode != 0
    assert f"config key 'models.{name}': {NAME_RULE}" in result.stdout + result.stderr
    assert not (tmp_path / "results").exists() and not (tmp_path / "logs").exists()


def test_model_names_of_letters_digits_and_underscores_are_accepted():
    good = copy.deepcopy(DEFAULT)
    good["models"] = {"Trf2_local_05": {"kind": "trf2"}, "oracle": {"kind": "fm_oracle"}, "fm_oracle": {"kind": "fm_ref"}}
    good["diffsim"]["models"] = ["Trf2_local_05"]
    good["dynamics"]["models"] = ["Trf2_local_05_diffsim"]
    assert list(config.check(good)["models"]) == ["Trf2_local_05", "oracle", "fm_oracle"]


def test_one_fm_oracle_entry_at_most():
    bad = copy.deepcopy(DEFAULT)
    bad["models"].update(oracle_a={"kind": "fm_oracle"}, oracle_b={"kind": "fm_oracle"})
    with pytest.raises(config.ConfigError, match=r"config key 'models': entries \[.*'oracle_a', 'oracle_b'\] have kind "
                                                 r"fm_oracle; at most one may"):
        config.check(bad)


@pytest.mark.parametrize("references", [{}, {"fm_a": {"kind": "fm_ref"}, "fm_b": {"kind": "fm_ref"}}])
def test_models_on_a_shared_w0_need_exactly_one_fm_ref(references):
    bad = copy.deepcopy(DEFAULT)
    bad["models"] = {"trf1": {"kind": "trf1"}, "em": {"kind": "em"}, **references}
    bad["diffsim"]["models"] = []
    with pytest.raises(config.ConfigError, match=r"\['trf1', 'em'\] are fitted on the W0 of the fm_ref model, so "
                                                 r"exactly one entry must have kind fm_ref"):
        config.check(bad)
    good = copy.deepcopy(bad)
    good["models"] = {"trf1": {"kind": "trf1"}, "fm_a": {"kind": "fm_ref"}}
    assert config.check(good)["models"]["trf1"]["response"] == "radial"


def test_unknown_key_is_rejected():
    bad = copy.deepcopy(DEFAULT)
    bad["fg"]["thermostat"] = "berendsen"
    with pytest.raises(config.ConfigError, match="'thermostat' was unexpected"):
        config.check(bad)


def test_small_box_message_suggests_a_size():
    with pytest.raises(config.ConfigError, match="use at least 195 molecules"):
        config.check(changed(("water", "n_molecules"), 50))
    assert config.box_length(changed(("water", "n_molecules"), 195)) > 1.8


def test_every_schema_key_is_documented_with_its_readme():
    readme = (REPO / "config" / "README.md").read_text()
    schema = config.load_schema()

    def keys(node, prefix=""):
        for name, sub in node.get("properties", {}).items():
            if sub.get("type") != "object":
                yield prefix + name
            elif isinstance(sub.get("additionalProperties"), dict):
                yield from keys(sub["additionalProperties"], prefix + name + ".<name>.")
            else:
                yield from keys(sub, prefix + name + ".")

    missing = [key for key in keys(schema) if f"`{key}`" not in readme]
    assert not missing, f"config/README.md lacks {missing}"
    assert config.schema_markdown() in readme, "regenerate: python -m thermocg.config"


def test_temperature_labels():
    assert config.temperature_label(300) == "300"
    assert config.temperature_label(300.0) == "300"
    assert config.temperature_label(298.15) == "298.15"


def test_diffsim_learning_rates_that_match_no_refined_pattern_are_rejected_at_load():
    # what a second --configfile that refines only W0 but writes its rate as a mapping gives:
    # Snakemake merges it into the default's mapping, whose W1 and W2 rates then select nothing
    bad = copy.deepcopy(DEFAULT)
    bad["diffsim"]["parameters"] = ["heads.W0.*"]
    bad["diffsim"]["learning_rate"] = {"heads.W0.*": 2e-3, "heads.W1.*": 0.05, "heads.W2.*": 0.05}
    with pytest.raises(config.ConfigError, match=r"'diffsim.learning_rate' gives rates for \['heads.W1.\*', "
                                                 r"'heads.W2.\*'\], which match none of 'diffsim.parameters'"):
        config.check(bad)
    good = copy.deepcopy(bad)
    good["diffsim"]["learning_rate"] = {"heads.W0.readouts.0.weight": 1e-3, "heads.*": 2e-3}  # narrower and wider
    assert config.check(good)["diffsim"]["learning_rate"]["heads.*"] == 2e-3
    good["diffsim"]["learning_rate"] = 2e-3
    assert config.check(good)["diffsim"]["learning_rate"] == 2e-3


def test_the_t0_diffsim_override_validates_on_top_of_the_default():
    override = yaml.safe_load((REPO / "config" / "diffsim_t0.yaml").read_text())
    merged = copy.deepcopy(DEFAULT)
    merged["diffsim"].update(override["diffsim"])  # as Snakemake merges a second config file
    checked = config.check(merged)
    assert checked["diffsim"]["models"] == ["fm_ref", "trf1"] and checked["diffsim"]["temperatures"] == [300]


def test_diffsim_cannot_average_more_iterations_than_it_makes():
    bad = copy.deepcopy(DEFAULT)
    bad["diffsim"]["average_last"] = bad["diffsim"]["iterations"] + 1
    with pytest.raises(config.ConfigError, match="'diffsim.average_last' = .* averages more iterations than "
                                                 "'diffsim.iterations'"):
        config.check(bad)
    bad["diffsim"]["average_last"] -= 1
    assert config.check(bad)["diffsim"]["average_last"] == bad["diffsim"]["iterations"]


def test_a_partial_mapping_keeps_the_defaults_of_its_other_keys():
    partial = changed(("network", "prior"), {"strength": 2.0})
    partial["network"]["head_scales"] = {"W1": 50.0}
    checked = config.check(partial)["network"]
    assert checked["prior"] == {"strength": 2.0, "onset_radius": 0.27, "decay_length": 0.014}
    assert checked["head_scales"] == {"W1": 50.0, "W2": 100.0, "e": 10.0}


def test_whole_numbers_written_as_floats_become_integers_where_the_key_is_an_integer():
    """JSON schema counts 7.0 as an integer; seeds, box sizes and epoch counts need Python ints."""
    checked = config.check(changed(("seed",), 7.0) | {"water": dict(DEFAULT["water"], n_molecules=256.0)})
    assert checked["seed"] == 7 and isinstance(checked["seed"], int)
    assert isinstance(checked["water"]["n_molecules"], int)
    assert isinstance(config.check(changed(("fg", "production"), 30))["fg"]["production"], int)  # a number stays as given
    with pytest.raises(config.ConfigError, match="'seed' = 7.5: must be of type integer"):
        config.check(changed(("seed",), 7.5))


def test_the_shipped_sweep_tables_are_valid():
    for name in ("sweep.tsv", "sweep_test.tsv"):
        table = config.read_sweep_table(REPO / "config" / name, config.load(REPO / "config" / "config.yaml"))
        assert list(table.columns) == list(config.SWEEP_COLUMNS) and len(table)


def test_a_bad_sweep_table_names_each_bad_row(tmp_path):
    """Rows that a fit would reject late, or read wrongly without a word ("Local" as the global estimator,
    a stride of 1.5 as 1, a repeated row as one job and two table rows), stop the workflow at load."""
    path = tmp_path / "sweep.tsv"
    path.write_text("order\testimator\tr_loc\tframe_stride\n1\tlocal\t0.35\t3\n3\tLocal\t-0.1\t1.5\n1\tlocal\t0.350\t3\n")
    with pytest.raises(config.ConfigError) as error:
        config.read_sweep_table(path, DEFAULT)
    for expected in ("line 3: order = 3: must be 1 or 2", "line 3: estimator = 'Local': must be local or global",
                     "line 3: r_loc = -0.1: must be a length in nm between 0 and half the box",
                     "line 3: frame_stride = 1.5: must be a whole number >= 1", "lines [4] repeat an earlier combination"):
        assert expected in str(error.value)
    path.write_text("order,estimator,r_loc,frame_stride\n1,local,0.35,3\n")  # commas, not tabs
    with pytest.raises(config.ConfigError, match="the columns must be .* separated by tabs"):
        config.read_sweep_table(path, DEFAULT)
