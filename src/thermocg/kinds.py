"""The model kinds of METHOD.md: each kind's heads, the temperatures whose frames it trains on, and
which kinds share what.

Plain Python, no torch: the workflow reads it while Snakemake parses the Snakefile, which happens
for every dry run and, on a cluster, once more inside every job.
"""

HEADS = {
    "fm_ref": ["W0"],
    "fm_oracle": ["W0"],
    "em": ["W0", "e"],
    "trf1": ["W0", "W1", "e"],
    "trf2": ["W0", "W1", "W2", "e"],
    "mtfm": ["W0", "W1", "W2"],
}
NEEDS_ENERGIES = {"em", "trf1", "trf2"}
#: Kinds whose thermal terms fit METHOD.md's thermal response forces: they take an estimator (global,
#: or local with r_loc) and a representation of W1 and W2 (network heads or radial pair terms).
RESPONSE_KINDS = {"trf1", "trf2"}
#: Kinds with a temperature dependence beyond W0, extrapolated in dbeta by an expansion (reduced or beta).
THERMAL_KINDS = {kind for kind, heads in HEADS.items() if heads != ["W0"]}
#: Kinds fitted on top of the force-matched W0 of the same T0 data (thermocg.response).
SHARED_W0 = {"em", "trf1", "trf2"}
#: Kinds whose force field at T0 is the fm_ref model's: fm_oracle at T0 is force matching on the same
#: frames with the same recipe, and the SHARED_W0 kinds add thermal terms that vanish at dbeta = 0. The
#: pipeline fits and simulates that force field once, as fm_ref (workflow/rules/common.smk, t0_twin).
SAME_AS_FM_REF_AT_T0 = {"fm_oracle"} | SHARED_W0


def training_temperatures(spec, config, temperature=None):
    """Temperatures (K) whose frames a model entry trains on."""
    kind = spec["kind"]
    if kind == "fm_oracle":
        if temperature is None:
            raise ValueError("fm_oracle models are fitted per temperature")
        return [float(temperature)]
    if kind == "mtfm":
        return [float(t) for t in spec["temperatures"]]
    return [float(config["reference_temperature"])]
