# Shared set-up: config validation and helpers that name the pipeline's files.
import thermocg.config
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


def all_outputs():
    """Final targets of the whole pipeline (grows as stages are added)."""
    return [
        "results/figures/fg_observables.png",
        *expand("results/observables/fg/T{T}/summary.json", T=TEMPERATURES),
    ]
