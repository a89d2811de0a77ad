"""Configuration: schema validation with readable errors, cross-key checks, derived quantities.

The schema (``config.schema.yaml`` beside this file) is the single definition of every key. The
Snakefile validates with it through ``snakemake.utils.validate``; :func:`check` gives the same
verdict from plain Python with messages that name the key and the allowed range, and adds the
checks a JSON schema cannot express (box versus cutoff, T0 among the temperatures, ...).
"""

import copy
import fnmatch
import numbers
import re
from pathlib import Path

import jsonschema
import yaml

from thermocg import kinds, units

SCHEMA_PATH = Path(__file__).with_name("config.schema.yaml")


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the key and what is allowed."""


def load_schema():
    return yaml.safe_load(SCHEMA_PATH.read_text())


def _key_path(error):
    parts = []
    for part in error.absolute_path:
        parts.append(f"[{part}]" if isinstance(part, int) else ("." if parts else "") + str(part))
    return "".join(parts) or "<top level>"


def _explain(error):
    """One line per schema violation: key, offending value, allowed range or values."""
    key = _key_path(error)
    rule, limit = error.validator, error.validator_value
    allowed = {
        "minimum": f">= {limit}",
        "maximum": f"<= {limit}",
        "exclusiveMinimum": f"> {limit}",
        "exclusiveMaximum": f"< {limit}",
        "enum": f"one of {limit}",
        "type": f"of type {limit}",
        "minItems": f"a list of at least {limit} item(s)",
        "uniqueItems": "a list without repeats",
    }.get(rule)
    if "propertyNames" in error.relative_schema_path:  # a bad entry name, e.g. of a model
        return f"config key '{key}.{error.instance}': the name must be {error.schema['description']}"
    if rule == "additionalProperties":
        return f"config key '{key}': {error.message} (see config/README.md for the keys)"
    if rule == "required":
        return f"config key '{key}': {error.message}"
    if allowed:
        return f"config key '{key}' = {error.instance!r}: must be {allowed}"
    return f"config key '{key}': {error.message}"


def _fill_defaults(config, schema):
    """Insert schema defaults for missing keys (recursively), like snakemake's validate does."""
    for key, sub in schema.get("properties", {}).items():
        if key not in config and "default" in sub:
            config[key] = copy.deepcopy(sub["default"])
        if sub.get("type") == "object":
            config.setdefault(key, {})
            if isinstance(config[key], dict):
                _fill_defaults(config[key], sub)
    entries = schema.get("additionalProperties")
    if isinstance(entries, dict) and entries.get("type") == "object":
        for value in config.values():
            if isinstance(value, dict):
                _fill_defaults(value, entries)


#: JSON-schema types and the Python values that have them.
_IS_TYPE = {
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
    "array": lambda v: isinstance(v, list),
    "object": lambda v: isinstance(v, dict),
}


def _schema_types(schema):
    """The types a schema node allows, its alternatives' (oneOf, anyOf) included."""
    types = schema.get("type", [])
    types = [types] if isinstance(types, str) else list(types)
    for alternative in schema.get("oneOf", []) + schema.get("anyOf", []):
        types += _schema_types(alternative)
    return types


#: a number in exponent notation without a decimal point, such as 3e-4: YAML 1.1 (PyYAML, hence
#: Snakemake's config files) reads it as text
_EXPONENT_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+")


def _read_command_line_text(value, schema):
    """``value`` with text read as YAML where the schema wants another type.

    Snakemake reads a nested ``--config`` value with YAML's BaseLoader, which keeps every scalar as
    text: ``--config 'cgmd={production: 20}'`` gives the string "20"; and YAML 1.1 reads 3e-4 as
    text even in a config file. Text that reads as a value of a type the key allows becomes that
    value; any other text stays, for the schema to refuse.
    """
    if isinstance(value, dict):
        properties, entries = schema.get("properties", {}), schema.get("additionalProperties")
        for key in value:
            sub = properties.get(key, entries if isinstance(entries, dict) else None)
            if sub is not None:
                value[key] = _read_command_line_text(value[key], sub)
        return value
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [_read_command_line_text(item, schema["items"]) for item in value]
    if isinstance(value, float) and value.is_integer() and "integer" in _schema_types(schema) \
            and "number" not in _schema_types(schema):
        return int(value)  # 128.0 for an integer key: JSON schema counts it as one, range() and seeds do not
    if isinstance(value, str):
        if "number" in _schema_types(schema) and _EXPONENT_NUMBER.fullmatch(value.strip()):
            return float(value)
        try:
            parsed = yaml.safe_load(value)
        except yaml.YAMLError:
            return value
        if not isinstance(parsed, str) and any(_IS_TYPE[t](parsed) for t in _schema_types(schema) if t in _IS_TYPE):
            return _read_command_line_text(parsed, schema)
    return value


def model_spec_with_defaults(spec):
    """A model entry (e.g. {"kind": "trf1"}) with the schema's defaults filled in."""
    spec = copy.deepcopy(spec)
    _fill_defaults(spec, load_schema()["properties"]["models"]["additionalProperties"])
    return spec


def check(config):
    """Validate a config dict; return a copy with defaults filled. Raise ConfigError on any problem."""
    config = copy.deepcopy(config)
    schema = load_schema()
    config = _read_command_line_text(config, schema)
    _fill_defaults(config, schema)
    errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(config), key=_key_path)
    if errors:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(_explain(e) for e in errors))
    problems = _physics_problems(config)
    if problems:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(problems))
    return config


def _physics_problems(config):
    water, fg, obs = config["water"], config["fg"], config["observables"]
    problems = []
    box = box_length(config)
    if box <= 2 * water["cutoff"]:
        problems.append(
            f"config keys 'water.n_molecules' = {water['n_molecules']} and 'water.density' = "
            f"{water['density']} g/cm^3 give a {box:.3f} nm box, which must exceed twice "
            f"'water.cutoff' = {water['cutoff']} nm: use at least "
            f"{minimum_molecules(water['density'], water['cutoff'])} molecules or a shorter cutoff"
        )
    if config["reference_temperature"] not in config["temperatures"]:
        problems.append(
            f"config key 'reference_temperature' = {config['reference_temperature']}: must be one of "
            f"'temperatures' = {config['temperatures']}"
        )
    cg, dynamics = config["cgmd"], config["dynamics"]
    # times that the code counts in whole steps or frames (a remainder would be rounded away unsaid)
    for key, value, unit, unit_key in [
        ("fg.frame_interval", fg["frame_interval"], fg["timestep"], "fg.timestep"),
        *[(f"fg.{key}", fg[key], fg["frame_interval"], "fg.frame_interval")
          for key in ("production", "reference_production", "score_production") if fg[key] is not None],
        ("dynamics.fine_frame_interval", dynamics["fine_frame_interval"], fg["timestep"], "fg.timestep"),
        ("dynamics.fine_production", dynamics["fine_production"], dynamics["fine_frame_interval"], "dynamics.fine_frame_interval"),
        ("cgmd.frame_interval", cg["frame_interval"], cg["timestep"], "cgmd.timestep"),
        ("cgmd.production", cg["production"], cg["frame_interval"], "cgmd.frame_interval"),
    ]:
        if not _whole_multiple(value, unit):
            problems.append(f"config key '{key}' = {value} ps: must be a whole multiple of '{unit_key}' = {unit} ps")
    for key in ("production", "reference_production", "score_production"):
        if fg[key] is not None and fg[key] < 2 * fg["frame_interval"]:
            problems.append(f"config key 'fg.{key}' = {fg[key]} ps: must hold at least 2 frames")
    for key in ("production", "reference_production"):  # the FG diffusion is fitted on these runs
        if fg[key] is not None and not obs["msd_fit_start"] < obs["msd_fit_end"] <= fg[key]:
            problems.append(
                f"config keys 'observables.msd_fit_start' = {obs['msd_fit_start']} ps and "
                f"'observables.msd_fit_end' = {obs['msd_fit_end']} ps: need start < end <= "
                f"'fg.{key}' = {fg[key]} ps"
            )
    network = config["network"]
    if box <= 2 * network["cutoff"]:
        problems.append(f"config key 'network.cutoff' = {network['cutoff']} nm: must be below half the box, {box / 2:.3f} nm")
    skin = config["cgmd"]["skin"]
    if 2 * network["cutoff"] < box <= 2 * (network["cutoff"] + skin):
        problems.append(f"config keys 'network.cutoff' = {network['cutoff']} nm and 'cgmd.skin' = {skin} nm: the CG "
                        f"neighbour list needs cutoff + skin below half the box, {box / 2:.3f} nm")
    if network["prior"]["onset_radius"] > network["cutoff"]:
        problems.append(f"config key 'network.prior.onset_radius' = {network['prior']['onset_radius']} nm: must be "
                        f"<= 'network.cutoff' = {network['cutoff']} nm")
    if not network["sensitivity_soft_min"] < network["sensitivity_soft_max"] < network["cutoff"]:
        problems.append(
            "config keys 'network.sensitivity_soft_min' < 'network.sensitivity_soft_max' < 'network.cutoff' must hold"
        )
    for name, spec in config["models"].items():
        if spec["kind"] == "mtfm":
            unknown = [t for t in spec.get("temperatures", []) if t not in config["temperatures"]]
            if len(spec.get("temperatures", [])) < 2 or unknown:
                problems.append(
                    f"config key 'models.{name}.temperatures': an mtfm model needs at least two of "
                    f"'temperatures' = {config['temperatures']}"
                )
        if spec["kind"] in kinds.RESPONSE_KINDS and spec["estimator"] == "local" and box <= 2 * spec["r_loc"]:
            problems.append(f"config key 'models.{name}.r_loc' = {spec['r_loc']} nm: must be below half the box")
        if spec["kind"] in kinds.RESPONSE_KINDS and spec["response"] == "radial" and spec["r_min"] >= network["cutoff"]:
            problems.append(f"config key 'models.{name}.r_min' = {spec['r_min']} nm: must be below 'network.cutoff' = "
                            f"{network['cutoff']} nm (the radial terms end there)")
    if obs["msd_fit_end"] > cg["production"]:
        problems.append(
            f"config key 'observables.msd_fit_end' = {obs['msd_fit_end']} ps: must be <= 'cgmd.production' = "
            f"{cg['production']} ps (CG diffusion uses the same window)"
        )
    if not cg["friction_fit_start"] < cg["friction_fit_end"] <= cg["friction_fit_time"]:
        problems.append("config keys 'cgmd.friction_fit_start' < 'cgmd.friction_fit_end' <= 'cgmd.friction_fit_time' must hold")
    training = config["training"]
    if training["validation_fraction"] + training["test_fraction"] >= 1:
        problems.append(f"config keys 'training.validation_fraction' = {training['validation_fraction']} and "
                        f"'training.test_fraction' = {training['test_fraction']}: leave no frame to train on")
    oracles = [name for name, spec in config["models"].items() if spec["kind"] == "fm_oracle"]
    if len(oracles) > 1:
        problems.append(f"config key 'models': entries {oracles} have kind fm_oracle; at most one may (the reference of every ratio)")
    fitted = [name for name, spec in config["models"].items() if spec["kind"] != "fm_oracle"]
    references = [name for name, spec in config["models"].items() if spec["kind"] == "fm_ref"]
    sharing = [name for name, spec in config["models"].items() if spec["kind"] in kinds.SHARED_W0]
    if sharing and len(references) != 1:
        problems.append(
            f"config key 'models': {sharing} are fitted on the W0 of the fm_ref model, so exactly one entry must have "
            f"kind fm_ref (found {references or 'none'})"
        )
    unknown = [t for t in config["diffsim"]["temperatures"] if t not in config["temperatures"]]
    if unknown or (config["diffsim"]["models"] and not config["diffsim"]["temperatures"]):
        problems.append(
            f"config key 'diffsim.temperatures' = {config['diffsim']['temperatures']}: DiffSim needs at least one, "
            f"each one of 'temperatures' = {config['temperatures']}"
        )
    if config["diffsim"]["window"] % config["diffsim"]["sample_every"]:
        problems.append("config key 'diffsim.window' must be a multiple of 'diffsim.sample_every'")
    if config["diffsim"]["average_last"] > config["diffsim"]["iterations"]:
        problems.append(f"config key 'diffsim.average_last' = {config['diffsim']['average_last']} averages more "
                        f"iterations than 'diffsim.iterations' = {config['diffsim']['iterations']} makes")
    for name in config["diffsim"]["models"]:
        if name not in fitted:
            problems.append(f"config key 'diffsim.models' names '{name}': must be one of the fitted models {fitted}")
    simulated = list(config["models"]) + [f"{name}_diffsim" for name in config["diffsim"]["models"] if name in fitted]
    for name in config["dynamics"]["models"]:
        if name not in simulated:
            problems.append(f"config key 'dynamics.models' names '{name}': must be one of the simulated models {simulated}")
    rates, refined = config["diffsim"]["learning_rate"], config["diffsim"]["parameters"]
    if isinstance(rates, dict) and config["diffsim"]["models"]:
        # a rate pattern that neither matches nor is matched by any refined pattern can select no
        # refined parameter: say so now, not when the refinement starts (thermocg.diffsim.learning_rates)
        stray = [key for key in rates
                 if not any(fnmatch.fnmatchcase(key, p) or fnmatch.fnmatchcase(p, key) for p in refined)]
        if stray:
            problems.append(
                f"config key 'diffsim.learning_rate' gives rates for {stray}, which match none of 'diffsim.parameters' "
                f"= {refined} (a mapping in a second --configfile is merged key by key into the first's: give one rate, "
                "or a rate for each of the first's patterns too)"
            )
    return problems


def _whole_multiple(value, unit):
    """Whether ``value`` is one or more whole ``unit``s (to 1e-6 of a unit: 0.3 ps is three 0.1 ps frames)."""
    count = value / unit
    return abs(count - round(count)) <= 1e-6 and round(count) >= 1


#: The columns of a sweep table (config key sweep.table), one row per combination.
SWEEP_COLUMNS = ("order", "estimator", "r_loc", "frame_stride")


def read_sweep_table(path, config):
    """The sweep table at ``path`` (tab-separated, SWEEP_COLUMNS), every row checked against what a
    fit accepts; raise ConfigError naming each bad row (by its line in the file) and value."""
    import pandas as pd

    table = pd.read_csv(path, sep="\t")
    if sorted(table.columns) != sorted(SWEEP_COLUMNS):
        raise ConfigError(f"sweep table {path}: the columns must be {list(SWEEP_COLUMNS)}, separated by tabs; "
                          f"found {list(table.columns)}")
    half_box = box_length(config) / 2
    problems = []
    for line, row in zip(range(2, len(table) + 2), table.itertuples(index=False)):  # line 1 is the header
        if row.order not in (1, 2):
            problems.append(f"line {line}: order = {row.order!r}: must be 1 or 2")
        if row.estimator not in ("local", "global"):
            problems.append(f"line {line}: estimator = {row.estimator!r}: must be local or global")
        if not (isinstance(row.r_loc, numbers.Real) and 0 < row.r_loc < half_box):
            problems.append(f"line {line}: r_loc = {row.r_loc!r}: must be a length in nm between 0 and half the box, {half_box:.3f}")
        if not (isinstance(row.frame_stride, numbers.Real) and float(row.frame_stride).is_integer() and row.frame_stride >= 1):
            problems.append(f"line {line}: frame_stride = {row.frame_stride!r}: must be a whole number >= 1")
    repeated = [line for line, again in zip(range(2, len(table) + 2), table.duplicated()) if again]
    if repeated:
        problems.append(f"lines {repeated} repeat an earlier combination")
    if problems:
        raise ConfigError(f"sweep table {path}:\n  " + "\n  ".join(problems))
    return table


def neighbouring_temperatures(temperatures, reference):
    """The sampled temperatures just below and just above T0, or None if T0 is at an end."""
    below = [t for t in temperatures if t < reference]
    above = [t for t in temperatures if t > reference]
    return (max(below), min(above)) if below and above else None


def load(path):
    """Read a YAML config file and :func:`check` it."""
    with open(path) as handle:
        return check(yaml.safe_load(handle) or {})


def box_length(config):
    """Edge of the cubic FG box, nm."""
    water = config["water"]
    return units.cubic_box_length(water["n_molecules"], water["density"])


def minimum_molecules(density, cutoff):
    """Smallest molecule count whose box edge exceeds twice the cutoff at this density."""
    volume = (2 * cutoff) ** 3
    return int(volume * density * units.G_PER_CM3_IN_AMU_PER_NM3 / units.WATER_MASS) + 1


def temperature_label(temperature):
    """Text form of a temperature used in paths (``300`` for 300.0, ``300.5`` otherwise)."""
    temperature = float(temperature)
    return str(int(temperature)) if temperature.is_integer() else repr(temperature)


def _allowed(node):
    if "oneOf" in node:
        return " or ".join(_allowed(option) for option in node["oneOf"])
    bounds = [("minimum", ">= "), ("exclusiveMinimum", "> "), ("maximum", "<= "), ("exclusiveMaximum", "< ")]
    parts = [f"{text}{node[key]}" for key, text in bounds if key in node]
    parts += [f"each {text}{node['items'][key]}" for key, text in bounds if key in node.get("items", {})]
    if "enum" in node:
        parts.append(" / ".join(map(str, node["enum"])))
    if isinstance(node.get("additionalProperties"), dict):
        parts.append(f"mapping to {_allowed(node['additionalProperties'])}")
    return ", ".join(parts) or node.get("type", "")


def schema_markdown():
    """Markdown tables of every key of the schema (the body of config/README.md)."""
    schema = load_schema()
    lines = []

    def table(title, description, rows):
        lines.extend([f"\n## {title}\n", description, "", "| key | meaning | allowed | default |", "|---|---|---|---|"])
        lines.extend(rows)

    def rows(node, prefix):
        out = []
        for key, sub in node.get("properties", {}).items():
            if sub.get("type") == "object" and "properties" in sub and prefix:
                out += rows(sub, f"{prefix}{key}.")
            elif sub.get("type") != "object":
                default = sub.get("default", "required" if key in node.get("required", []) else "none")
                out.append(f"| `{prefix}{key}` | {sub.get('description', '')} | {_allowed(sub)} | {default} |")
        return out

    table("Top level", "", rows(schema, ""))
    for key, sub in schema["properties"].items():
        if sub.get("type") != "object":
            continue
        if "additionalProperties" in sub and isinstance(sub["additionalProperties"], dict):
            entry = sub["additionalProperties"]
            names = f" Names: {sub['propertyNames']['description']}." if "propertyNames" in sub else ""
            table(f"`{key}`", sub["description"] + names + f" Each entry `{key}.<name>` has:", rows(entry, f"{key}.<name>."))
        else:
            table(f"`{key}`", sub["description"], rows(sub, f"{key}."))
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(schema_markdown(), end="")
