# Shared set-up: config validation and helpers that name the pipeline's files.
import re
from pathlib import Path

import pandas as pd
import thermocg.config
import thermocg.kinds
from snakemake.utils import Paramspace, validate

# thermocg.config.check gives errors that name the key and the allowed range, and adds the
# cross-key checks a JSON schema cannot express; validate() applies the same schema the
# snakemake way (and fills in defaults).
config.update(thermocg.config.check(config))
validate(config, thermocg.config.SCHEMA_PATH)

ENV = "../../envs/thermocg.yaml"
# Snakemake starts the ready job of the highest priority first (default 0; rules, not jobs, have
# one). First the T0 chain to DiffSim, the DAG's longest path (FG sampling, mapping, energies, the
# fits, DiffSim); then the jobs that many others wait for (the oracles, friction trials) and the long
# force metrics; last the short CG MD and analysis jobs, which fill the cores at the end instead of
# one long job ending the run alone. A job never waits behind one it feeds: no rule has a lower
# priority than one downstream of it (tests/test_pipeline.py, on the default DAG).
CHAIN_PRIORITY = 10
UPSTREAM_PRIORITY = 5
TEMPERATURES = [thermocg.config.temperature_label(t) for t in config["temperatures"]]


wildcard_constraints:
    T=r"[0-9]+(\.[0-9]+)?",
    run=r"T[0-9]+(\.[0-9]+)?(/score)?",  # one FG run: T{T}, or the independent score run at T0

# Model names (config["models"] keys): fitted once, fm_oracle kinds fitted per temperature, and
# the DiffSim refinements of some of them, named <model>_diffsim.
MODELS = config["models"]
FITTED = [name for name, spec in MODELS.items() if spec["kind"] != "fm_oracle"]
ORACLES = [name for name, spec in MODELS.items() if spec["kind"] == "fm_oracle"]
REFINED = [f"{name}_diffsim" for name in config["diffsim"]["models"]]
SIMULATED = FITTED + ORACLES + REFINED
T0 = thermocg.config.temperature_label(config["reference_temperature"])
# The force-matched model at T0 (the config check allows one where other kinds need it).
FM_REF = next((name for name, spec in MODELS.items() if spec["kind"] == "fm_ref"), None)


def sweep_table():
    """The sweep's table (working directory first, then the repository), or None."""
    table = config["sweep"]["table"]
    if table is None:
        return None
    path = Path(table) if Path(table).exists() else Path(workflow.basedir) / table
    return thermocg.config.read_sweep_table(path, config)


SWEEP = Paramspace(sweep_table() if config["sweep"]["table"] else pd.DataFrame({"order": [1]}), filename_params="*")


def sweep_centring():
    """(name, model file) of the mean force that centres the sweep's held-out score targets, as in
    force_metrics (thermocg.metrics.centring_model): the fm_oracle entry at T0 (fm_ref's file there),
    else the fm_ref entry; (None, []) without a sweep."""
    if not config["sweep"]["table"]:
        return None, []
    if ORACLES:
        return ORACLES[0], model_file(ORACLES[0], T0)
    if FM_REF:
        return FM_REF, f"results/models/{FM_REF}/model.pt"
    raise ValueError("a sweep needs an fm_oracle or fm_ref entry: its mean force centres the held-out score's targets")


def _canonical(value):
    """``value`` with every dict's keys sorted. Snakemake reruns a job when the repr of a param
    changes; sorted keys keep that independent of the order of keys in the YAML file and of
    whether a default value is written out."""
    if isinstance(value, dict):
        return {key: _canonical(value[key]) for key in sorted(value)}
    return value


def settings(section, keys=None, leave_out=("threads",)):
    """Param: ``config[section]``, or only its ``keys``. By default without threads, which set the
    rule's ``threads:`` and change no number of its result (fg.threads does: see fg.smk)."""
    values = config[section]
    keys = keys or [key for key in values if key not in leave_out]
    return _canonical({key: values[key] for key in keys})


def model_spec(name):
    """Param: the keys of a model entry that its kind uses (the schema fills estimator and r_loc
    into every entry; a model that ignores them must not be refitted when they change)."""
    spec = MODELS[name]
    keys = ["kind"]
    if spec["kind"] in thermocg.kinds.RESPONSE_KINDS:
        keys += ["estimator", "r_loc"] if spec["estimator"] == "local" else ["estimator"]
        keys += ["response", "n_basis", "r_min"] if spec["response"] == "radial" else ["response"]
    if spec["kind"] in thermocg.kinds.THERMAL_KINDS:
        keys.append("expansion")
    if spec["kind"] == "mtfm":
        keys.append("temperatures")
    return _canonical({key: spec[key] for key in keys})


def _response_settings(name):
    """A trf1/trf2 entry's spec without its kind: entries that agree on it share their normal equations."""
    return {key: value for key, value in model_spec(name).items() if key != "kind"}


def _response_groups():
    """The thermal-response entries grouped by their settings, each group named by its first entry:
    its normal equations are built once (rule response_systems), for trf2's terms if any entry is trf2."""
    groups = {}
    for name, spec in MODELS.items():
        if spec["kind"] in thermocg.kinds.RESPONSE_KINDS:
            owner = next((first for first in groups if _response_settings(first) == _response_settings(name)), name)
            groups.setdefault(owner, []).append(name)
    return groups


RESPONSE_GROUPS = _response_groups()


def response_group(name):
    """The name of the group (its first entry) whose normal equations a trf1/trf2 entry fits from."""
    return next(owner for owner, members in RESPONSE_GROUPS.items() if name in members)


def response_group_spec(owner):
    """Param of response_systems: the group's settings, with the kind that has every member's terms."""
    kinds = {MODELS[name]["kind"] for name in RESPONSE_GROUPS[owner]}
    return _canonical(dict(_response_settings(owner), kind="trf2" if "trf2" in kinds else "trf1"))


#: fg keys that set the length of one particular run; each run's param has its own production instead
FG_RUN_LENGTHS = ["reference_production", "score_production"]


def fg_settings(wildcards):
    """Param of sample_fg: the fg section as it applies at temperature T (T0 samples
    fg.reference_production ps when that is set)."""
    fg = settings("fg", leave_out=FG_RUN_LENGTHS)
    at_t0 = float(wildcards.T) == float(config["reference_temperature"])
    if at_t0 and config["fg"]["reference_production"] is not None:
        fg = dict(fg, production=config["fg"]["reference_production"])
    return fg


def score_run_inputs(wildcards):
    """Inputs of force_metrics from the independent score run at T0 (fg.score_production), if any."""
    if config["fg"]["score_production"] is None:
        return {}
    return {"score_beads": f"results/cg/T{T0}/score/beads.npz",
            "score_energies": f"results/cg/T{T0}/score/molecule_energies.npz"}


def friction_trials():
    """Param: what a fitted friction depends on besides the files (its two trial runs), or None
    when cgmd.friction is a constant."""
    if config["cgmd"]["friction"] != "fit":
        return None
    keys = ["timestep", "equilibration", "frame_interval", "skin", "checkpoint_interval", "friction_trials",
            "friction_fit_time", "friction_fit_start", "friction_fit_end"]  # the trials' production is friction_fit_time
    return {"cgmd": settings("cgmd", keys), "seed": config["seed"], "reference_temperature": config["reference_temperature"]}


def evaluated_models():
    """Param: {name: {"kind", "trained_at"}} of every simulated model (fm_oracle: trained at every T),
    and "refined_from" for the DiffSim refinements (they keep their model's kind)."""
    models = {}
    for name, spec in MODELS.items():
        if spec["kind"] == "fm_oracle":
            trained_at = config["temperatures"]
        else:
            trained_at = thermocg.kinds.training_temperatures(spec, config)
        models[name] = {"kind": spec["kind"], "trained_at": [float(t) for t in trained_at]}
    for name in config["diffsim"]["models"]:
        trained_at = models[name]["trained_at"] + [float(t) for t in config["diffsim"]["temperatures"]]
        models[f"{name}_diffsim"] = {"kind": models[name]["kind"], "trained_at": trained_at, "refined_from": name}
    return _canonical(models)


def _choice(names):
    """Regex matching exactly these names (matching nothing when there are none)."""
    return "|".join(re.escape(name) for name in names) if names else "(?!)"


def t0_twin(model):
    """The fm_ref model when ``model``'s force field at T0 is fm_ref's (its kind is in
    thermocg.kinds.SAME_AS_FM_REF_AT_T0), else None. The pipeline fits that force field and runs CG
    MD with it at T0 once, as fm_ref, and reports the run for both."""
    kind = MODELS[model]["kind"] if model in MODELS else None  # DiffSim refinements change W0
    return FM_REF if kind in thermocg.kinds.SAME_AS_FM_REF_AT_T0 else None


def is_t0(temperature):
    return float(temperature) == float(T0)


def model_file(model, temperature):
    """The model file that CG MD of ``model`` at ``temperature`` uses (oracles: one per T, fm_ref's at T0)."""
    if model in ORACLES:
        if is_t0(temperature) and t0_twin(model):
            return model_file(t0_twin(model), temperature)
        return f"results/models/{model}/T{temperature}/model.pt"
    return f"results/models/{model}/model.pt"


def simulated_pairs():
    """(model, T) of every reported CG MD run: every model at every temperature."""
    return [(model, t) for model in SIMULATED for t in TEMPERATURES]


def cg_run(model, temperature):
    """The model whose CG MD run at ``temperature`` is ``model``'s: its T0 twin at T0, else itself."""
    return t0_twin(model) if is_t0(temperature) and t0_twin(model) else model


def shared_runs():
    """Param: {model: {T label: model whose run it shares}} (see cg_run), for the tables and figures."""
    runs = {}
    for model, t in simulated_pairs():
        if cg_run(model, t) != model:
            runs.setdefault(model, {})[t] = cg_run(model, t)
    return runs


def fit_inputs(wildcards):
    spec = MODELS[wildcards.model]
    labels = [thermocg.config.temperature_label(t) for t in thermocg.kinds.training_temperatures(spec, config)]
    inputs = {"beads": [f"results/cg/T{label}/beads.npz" for label in labels]}
    if spec["kind"] in thermocg.kinds.NEEDS_ENERGIES:
        inputs["energies"] = [f"results/cg/T{label}/molecule_energies.npz" for label in labels]
    if spec["kind"] in thermocg.kinds.SHARED_W0:
        inputs["w0_model"] = f"results/models/{FM_REF}/model.pt"  # the config check ensures one fm_ref
    if spec["kind"] in thermocg.kinds.RESPONSE_KINDS:
        inputs["response_systems"] = f"results/response/{response_group(wildcards.model)}/systems.npz"
    return inputs


def response_systems_inputs(wildcards):
    """Inputs of response_systems: those of its group's first entry's fit, but the systems."""
    inputs = fit_inputs(wildcards)
    del inputs["response_systems"]
    return inputs


def oracle_temperatures(oracle):
    """The temperatures at which the fm_oracle entry is fitted itself (at T0 it is fm_ref: t0_twin)."""
    return [t for t in TEMPERATURES if not (is_t0(t) and t0_twin(oracle))]


def oracle_files():
    """The fm_oracle entry's model file at every temperature (fm_ref's at T0), or none."""
    return [model_file(oracle, t) for oracle in ORACLES for t in TEMPERATURES]


def figure(name, category):
    """A figure of the comparison, in the report's ``category`` with caption workflow/report/<name>.rst."""
    return report(f"results/figures/{name}.png", caption=f"../report/{name}.rst", category=category)


def all_outputs():
    """Final targets of the whole pipeline (grows as stages are added)."""
    targets = [
        "results/figures/fg_observables.png",
        *expand("results/observables/fg/T{T}/summary.json", T=TEMPERATURES),
    ]
    if config["models"]:
        targets.append("results/metrics/forces.tsv")
        targets += ["results/metrics/transferability.tsv", "results/figures/transferability.png"]
        targets += dynamics_outputs()  # workflow/rules/dynamics.smk
    if config["sweep"]["table"]:
        targets.append("results/sweep/summary.tsv")
    return targets
