"""Rule fit_friction (and friction_law): gamma(T) of a friction law for one model (see thermocg.friction,
docs/dynamics.md)."""

import json

import numpy as np

from thermocg import friction, io, logs, mapping, units

log = logs.to_file(snakemake.log[0])
params = snakemake.params
settings = params.settings
law = snakemake.wildcards.get("law", params.friction_law)
temperatures = [float(t) for t in settings["temperatures"]]
t0 = float(settings["reference_temperature"])


def diffusion(path):
    summary = json.loads(open(path).read())
    return f"{summary['temperature_K']:g}", summary["diffusion"]["D_nm2_per_ps"]


if settings["friction"] != "fit":
    record = {"friction_per_ps": float(settings["friction"]), "law": "constant gamma from the config",
              "friction_by_temperature": {f"{t:g}": float(settings["friction"]) for t in temperatures}}
else:
    lines = json.loads(open(snakemake.input.lines).read())
    fg_paths = snakemake.input.get("fg", [snakemake.input.fg_reference])
    fg_diffusion = dict(diffusion(path) for path in ([fg_paths] if isinstance(fg_paths, str) else fg_paths))
    extra, law_settings = {}, {}  # the params hold only this law's own settings (friction.smk, LAW_SETTINGS)
    if law == "entropy":
        beads = io.load_frames(snakemake.input.beads_reference)
        extra = {"fg_energy": beads["potential_energy"], "n_molecules": beads["positions"].shape[1]}
        law_settings = {"alpha": settings["law"]["entropy_alpha"],
                        "heat_capacity_form": settings["law"]["entropy_heat_capacity"]}
    if law == "force_acf":
        # Only this law evaluates the model: the other laws' jobs skip importing torch (3 s each).
        from thermocg import metrics, nn

        fine = mapping.map_frames(io.load_frames(snakemake.input.fine))
        model, _ = nn.load_model(snakemake.input.model)
        mean_force = metrics.model_forces(model, fine["positions"], fine["box"], 0.0)
        dt = float(fine["time"][1] - fine["time"][0])
        extra = {"force_acf": friction.friction_from_force_autocorrelation(
            fine["forces"] - mean_force, dt, t0, float(np.mean(fine["masses"])), settings["law"]["force_acf_max_lag"])}
        log.info("force autocorrelation at T0: gamma %.3g +- %.2g /ps (plateau at %.3g ps)",
                 extra["force_acf"]["friction_per_ps"], extra["force_acf"]["error_per_ps"],
                 extra["force_acf"]["plateau_lag_ps"])
    record = friction.friction_law(law, temperatures, t0, lines, fg_diffusion, law_settings, **extra)
record["units"] = {"friction_per_ps": "1/ps", "D_nm2_per_ps": "nm^2/ps", "mass": f"amu ({units.WATER_MASS} per bead)"}
io.write_json(snakemake.output.friction, record)
log.info("friction (%s): %s", law, record.get("friction_by_temperature", record.get("friction_per_ps")))
