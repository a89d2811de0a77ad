# Shared set-up: config validation and helpers that name the pipeline's files.
import thermocg.config
import thermocg.train
from snakemake.utils import validate

# thermocg.config.check gives errors that name the key and the allowed range, and adds the
# cross-key checks a JSON schema cannot express; validate() applies the same schema the
# snakemake way (and fills in defaults).
config.update(thermocg.config.check(config))
validate(config, thermocg.config.SCHEMA_PATH)

ENV = "../../envs/thermocg.yaml"
TEMPERATURES = [thermocg.config.temperature_label(t) for t in config["temperatures"]]


wildcard_constraints:
    T=r"[0-9]+(\.[0-9]+)?",

# Model names (config["models"] keys): fitted once, fm_oracle kinds fitted per temperature, and
# the DiffSim refinements of some of them, named <model>_diffsim.
MODELS = config["models"]
FITTED = [name for name, spec in MODELS.items() if spec["kind"] != "fm_oracle"]
ORACLES = [name for name, spec in MODELS.items() if spec["kind"] == "fm_oracle"]
REFINED = [f"{name}_diffsim" for name in config["diffsim"]["models"]]
SIMULATED = FITTED + ORACLES + REFINED
T0 = thermocg.config.temperature_label(config["reference_temperature"])


def _choice(names):
    """Regex matching exactly these names (matching nothing when there are none)."""
    return "|".join(names) if names else "(?!)"


def model_file(model, temperature):
    """The model file that CG MD of ``model`` at ``temperature`` uses (oracles: one per T)."""
    if model in ORACLES:
        return f"results/models/{model}/T{temperature}/model.pt"
    return f"results/models/{model}/model.pt"


def simulated_pairs():
    """(model, T) of every CG MD run: every model at every temperature."""
    return [(model, t) for model in SIMULATED for t in TEMPERATURES]


def all_outputs():
    """Final targets of the whole pipeline (grows as stages are added)."""
    targets = [
        "results/figures/fg_observables.png",
        *expand("results/observables/fg/T{T}/summary.json", T=TEMPERATURES),
    ]
    if config["models"]:
        targets.append("results/metrics/forces.tsv")
        targets += ["results/metrics/transferability.tsv", "results/figures/transferability.png"]
    return targets
