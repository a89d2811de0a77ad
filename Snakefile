# thermocg: temperature-transferable ML coarse-grained water.
# Run: snakemake --cores N   (default config: config/config.yaml; see README.md)
from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/fg.smk"
include: "workflow/rules/mapping.smk"
include: "workflow/rules/observables.smk"


rule all:
    input:
        all_outputs(),
    default_target: True
