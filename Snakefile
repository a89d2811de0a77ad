# thermocg: temperature-transferable ML coarse-grained water.
# Run: snakemake --cores N   (default config: config/config.yaml; see README.md)
from pathlib import Path

import thermocg.reporting
from snakemake.utils import min_version

min_version("9.0")


# The default config only when none is given: Snakemake would otherwise merge the default under a
# user's --configfile, and its models would leak into that run. Relative to this file, so that
# --directory elsewhere still finds it.
if not workflow.config_settings.configfiles:

    configfile: Path(workflow.basedir) / "config" / "config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/friction.smk"
include: "workflow/rules/fg.smk"
include: "workflow/rules/mapping.smk"
include: "workflow/rules/observables.smk"
include: "workflow/rules/energies.smk"
include: "workflow/rules/fit.smk"
include: "workflow/rules/diffsim.smk"
include: "workflow/rules/cgmd.smk"
include: "workflow/rules/dynamics.smk"
include: "workflow/rules/metrics.smk"
include: "workflow/rules/figures.smk"
include: "workflow/rules/sweep.smk"


rule all:
    input:
        all_outputs(),
    default_target: True


# Snakemake calls this after a real run only: not for dry runs, nor inside the jobs it spawns.
onsuccess:
    print(thermocg.reporting.run_summary("results/metrics/transferability.tsv"))
