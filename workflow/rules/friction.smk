# Helpers of the friction laws and the dynamics comparison (rules in cgmd.smk and dynamics.smk).
import thermocg.friction

FRICTION_LAW = config["cgmd"]["friction_law"]
DYNAMICS_MODELS = [m for m in config["dynamics"]["models"] if m in SIMULATED]
DYNAMICS_LAWS = config["dynamics"]["laws"]


def per_temperature_lines(model):
    """Whether the trial runs of ``model`` are needed at every temperature (not only at T0)."""
    laws = {FRICTION_LAW} | (set(DYNAMICS_LAWS) if model in DYNAMICS_MODELS else set())
    return bool(laws & set(thermocg.friction.PER_TEMPERATURE_LAWS))


def line_temperatures(model):
    return TEMPERATURES if per_temperature_lines(model) else [T0]


def lines_model(model):
    """The model whose trial runs ``model``'s friction uses: its T0 twin when both run them at T0 only
    (the same force field there: t0_twin), else itself."""
    twin = t0_twin(model)
    if twin and not per_temperature_lines(model) and not per_temperature_lines(twin):
        return twin
    return model


def friction_inputs(law):
    """Input function of a friction record of ``law``: only the data the law may use (T0 data,
    except the oracle, which sees the FG diffusion at every temperature); none for a constant friction."""

    def inputs(wildcards):
        if config["cgmd"]["friction"] != "fit":
            return {}
        files = {"fg_reference": f"results/observables/fg/T{T0}/diffusion.json",
                 "lines": f"results/cgmd/{lines_model(wildcards.model)}/friction_lines.json"}
        chosen = wildcards.get("law", law)
        if chosen == "oracle":
            files["fg"] = expand("results/observables/fg/T{T}/diffusion.json", T=TEMPERATURES)
        if chosen == "entropy":
            files["beads_reference"] = f"results/cg/T{T0}/beads.npz"  # its FG potential energies
        if chosen == "force_acf":
            files["fine"] = f"results/fg/T{T0}/fine/frames.npz"
            files["model"] = model_file(wildcards.model, T0)
        return files

    return inputs


#: The cgmd settings each friction law reads besides its files (workflow/scripts/fit_friction.py).
LAW_SETTINGS = {"entropy": ["entropy_alpha", "entropy_heat_capacity"], "force_acf": ["force_acf_max_lag"]}


def friction_params(law):
    """Param: the config values a friction record of ``law`` (None: the rule's law wildcard) depends on
    besides its files; of the laws' own settings only its law's, so that a change of another law's
    does not refit it (and rerun every CG MD run after it)."""

    def params(wildcards):
        chosen = wildcards.get("law", law) if config["cgmd"]["friction"] == "fit" else None
        return {"friction": config["cgmd"]["friction"], "temperatures": config["temperatures"],
                "reference_temperature": config["reference_temperature"],
                "law": _canonical({key: config["cgmd"][key] for key in LAW_SETTINGS.get(chosen, [])})}

    return params


#: The dynamics rows of the pipeline's own friction law are its CG MD runs (same friction, start and seed),
#: which then record every step: no run of their own.
DYNAMICS_FROM_CGMD = (config["cgmd"]["friction"] == "fit" and FRICTION_LAW in DYNAMICS_LAWS
                      and config["dynamics"]["production"] == config["cgmd"]["production"])
SIMULATED_DYNAMICS_LAWS = [law for law in DYNAMICS_LAWS if not (DYNAMICS_FROM_CGMD and law == FRICTION_LAW)]


def records_every_step(model, temperature):
    """Param of cgmd: whether the run of ``model`` at ``temperature`` is a dynamics row (DYNAMICS_FROM_CGMD)."""
    return DYNAMICS_FROM_CGMD and any(cg_run(compared, temperature) == model for compared in DYNAMICS_MODELS)


def own_cg_md_run(wildcards):
    """Input of dynamics_of_cgmd: the files of the model's CG MD run at T (fm_ref's at T0 for its twins) and its friction."""
    run = f"results/cgmd/{cg_run(wildcards.model, wildcards.T)}"
    files = {name: f"{run}/T{wildcards.T}/{name}.{suffix}"
             for name, suffix in (("status", "json"), ("trajectory", "dcd"), ("topology", "pdb"))}
    return dict(files, friction=f"{run}/friction.json")


def dynamics_runs():
    """(model, law, T label) of every row of the dynamics comparison, in the table's and figure's order."""
    return [(model, law, t) for model in DYNAMICS_MODELS for law in DYNAMICS_LAWS for t in TEMPERATURES]


def dynamics_law_run(law, temperature):
    """The law whose dynamics run at ``temperature`` serves ``law`` (for every compared model). At T0 the laws of
    thermocg.friction.SAME_AS_CONSTANT_AT_T0 have one gamma, so the first of them runs for all."""
    shared = [name for name in DYNAMICS_LAWS if name in thermocg.friction.SAME_AS_CONSTANT_AT_T0]
    return shared[0] if is_t0(temperature) and law in shared else law


def dynamics_files(name):
    """Input: the file ``name`` (summary.json, vacf.tsv) of the run behind each row of dynamics_runs()."""
    return [f"results/dynamics/{model}/{dynamics_law_run(law, t)}/T{t}/{name}" for model, law, t in dynamics_runs()]


def dynamics_outputs():
    """The dynamics table and figure, when some model is compared (dynamics.models)."""
    if not DYNAMICS_MODELS or not DYNAMICS_LAWS:
        return []
    return ["results/metrics/dynamics.tsv", "results/figures/dynamics.png"]
