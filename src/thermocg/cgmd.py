"""CG molecular dynamics as the pipeline runs it (METHOD.md, "CG dynamics").

A fitted model runs at temperature T from the last mapped FG frame of that temperature, with
Langevin (BAOAB, :mod:`thermocg.md`) friction gamma. gamma sets the time scale of CG diffusion.
The trial runs of :func:`friction_lines` give at each temperature the line of 1/D against gamma
(close to linear for Langevin dynamics: D ~ k_B T / (m (gamma + gamma_internal))), from which a law
of :mod:`thermocg.friction` makes gamma(T); the default, constant, solves the T0 line for D_FG(T0)
and holds that gamma at every other temperature, so D_CG/D_FG away from T0 is a prediction.
A model that blows up in the trial runs is a result: its friction record says so, and its runs at
every temperature are recorded as unstable without being simulated.
"""

import json
import logging
import tempfile
from pathlib import Path

import numpy as np
import torch

from thermocg import io, md, nn, observables

log = logging.getLogger(__name__)


def start_frame(beads_path):
    """Positions (N, 3) nm, box (3,) nm and masses (N,) amu of the last mapped FG frame."""
    beads = io.load_frames(beads_path)
    return beads["positions"][-1], beads["box"][-1], beads["masses"]


#: A run whose mean kinetic temperature is above T by more than this factor is heated by the
#: integrator's error: BAOAB's own bias at the pipeline's step is 1-2% cold, and nearly undamped runs
#: at 700 K ran 8-18% hot at 8 fs (docs/dynamics.md).
HEATING_LIMIT = 1.05


def simulate(model_path, beads_path, temperature, reference_temperature, settings, friction, outputs, seed, threads=1,
             frames_every_step=False):
    """Run one model at one temperature; ``outputs`` has trajectory, topology, thermo, checkpoint paths.

    Frames every ``settings["frame_interval"]`` or, with ``frames_every_step``, every step (what the
    dynamics comparison reads). The thermo rows come every 10 frame intervals either way, and the
    blow-up checks at the extra frames change no step (thermocg.md), so the frames at the frame
    interval are the same to the bit.

    The checkpoint is bound to the model and beads files (their bytes), T, the friction and the
    settings: one written by another model or start frame is set aside, not resumed.

    A run that blows up, or runs hotter than :data:`HEATING_LIMIT` x T on average, is run once more
    from the same start and seed at half the time step (its frames at the same times): the first
    then failed through the integrator's error, not the model's (nearly undamped, a T0-trained model
    at 700 K heats up at 8 fs and not at 4 fs: docs/dynamics.md). Its summary then has
    ``halved_after`` (what the first run did); ``timestep_ps`` is the step the outputs were made with.
    A second blow-up raises :class:`thermocg.md.BlowUpError` (its ``timestep_ps`` the finer step); a
    start frame that is bad already raises at once.
    """
    try:
        summary = _simulate_at_step(model_path, beads_path, temperature, reference_temperature, settings, friction,
                                    outputs, seed, threads, frames_every_step)
    except md.BlowUpError as error:
        if error.step == 0:
            raise
        first = f"blew up at step {error.step} of {settings['timestep']:g} ps: {error.reason}"
    else:
        excess = _excess_heat(summary, temperature)
        if excess is None:
            return summary
        first = (f"ran {excess:.0%} hot at {settings['timestep']:g} ps (mean kinetic temperature "
                 f"{summary['mean_T_kin_K']:.0f} K)")
    finer = dict(settings, timestep=settings["timestep"] / 2)
    log.warning("%s; once more at %g ps", first, finer["timestep"])
    try:
        summary = _simulate_at_step(model_path, beads_path, temperature, reference_temperature, finer, friction,
                                    outputs, seed, threads, frames_every_step)
    except md.BlowUpError as error:
        error.reason = f"{error.reason} (at {finer['timestep']:g} ps, after it {first})"
        raise
    last_good = md.last_good_path(outputs["trajectory"])  # of the first run: this one did not blow up
    for path in (last_good, last_good.with_suffix(".npz")):
        path.unlink(missing_ok=True)
    excess = _excess_heat(summary, temperature)
    if excess is not None:
        log.warning("at %g ps too the run is %.0f%% hot", finer["timestep"], 100 * excess)
    return dict(summary, halved_after=first)


def _excess_heat(summary, temperature):
    """How much hotter than T a run was on average (0.2: 20%), if beyond HEATING_LIMIT; else None."""
    heat = summary["mean_T_kin_K"] / temperature
    return heat - 1 if heat > HEATING_LIMIT else None


def _simulate_at_step(model_path, beads_path, temperature, reference_temperature, settings, friction, outputs, seed,
                      threads, frames_every_step=False):
    torch.set_num_threads(threads)
    nn.tune_cpu_allocator()
    model, metadata = nn.load_model(model_path)
    positions, box, masses = start_frame(beads_path)
    steps = round((settings["equilibration"] + settings["production"]) / settings["timestep"])
    every = max(1, round(settings["frame_interval"] / settings["timestep"]))
    log.info("%s at %g K: %d steps of %g ps, friction %.3g/ps, on %s", metadata["name"], temperature, steps,
             settings["timestep"], friction, md.default_device())
    summary = md.run_md(
        model, positions, box, temperature, steps, dt=settings["timestep"], friction=friction, masses=masses,
        reference_temperature=reference_temperature, frame_interval=1 if frames_every_step else every,
        report_interval=every * 10,
        checkpoint_interval=max(every, round(settings["checkpoint_interval"] / settings["timestep"])),
        skin=settings["skin"], seed=seed, dtype=next(model.parameters()).dtype,
        inputs={"model": model_path, "beads": beads_path}, **outputs,
    )
    return dict(summary, timestep_ps=settings["timestep"])


def simulate_or_record_blow_up(model_path, beads_path, temperature, reference_temperature, settings, friction,
                               outputs, seed, threads=1, frames_every_step=False):
    """:func:`simulate`, but a blow-up is a result, not a failure: returns a status record.

    A model run far from its training temperatures may leave the physical region and blow up;
    that is the answer to "does it transfer here", so the pipeline records it (eps and D become
    undefined for that (model, T)) instead of stopping every other run. The record has
    ``stable`` and, after a blow-up, the step, time (ps) and reason. ``friction`` None (the model
    blew up in its friction fit, see :func:`read_friction`) records that without simulating; the
    outputs are then written empty.
    """
    if friction is None:
        reason = f"blew up in the friction fit at T0 = {reference_temperature:g} K (or in its trial run at this T)"
        log.error("%s: recorded as unstable at %g K without simulating", reason, temperature)
        positions, box, _ = start_frame(beads_path)
        md.write_outputs(outputs["trajectory"], outputs["topology"], outputs["thermo"], positions, box, [], [])
        Path(outputs["checkpoint"]).unlink(missing_ok=True)
        return {"stable": False, "temperature_K": float(temperature), "blow_up_step": None,
                "blow_up_time_ps": None, "reason": reason}
    try:
        summary = simulate(model_path, beads_path, temperature, reference_temperature, settings, friction,
                           outputs, seed, threads, frames_every_step)
    except md.BlowUpError as error:
        log.error("unstable at %g K: %s. Recorded as unstable; its observables are undefined.", temperature, error)
        return {"stable": False, "temperature_K": float(temperature), "blow_up_step": int(error.step),
                "blow_up_time_ps": float(error.step * error.timestep_ps), "reason": error.reason,
                "timestep_ps": error.timestep_ps}
    return {"stable": True, "temperature_K": float(temperature), **summary}


def measure_diffusion(model_path, beads_path, temperature, reference_temperature, settings, friction, fit_window, seed,
                      threads=1):
    """D (nm^2/ps) of a short run at this friction (the trial runs of the friction fit)."""
    trial = dict(settings, production=settings["friction_fit_time"])
    with tempfile.TemporaryDirectory() as tmp:
        outputs = {name: Path(tmp) / name for name in ("trajectory.dcd", "topology.pdb", "thermo.tsv", "checkpoint.npz")}
        simulate(model_path, beads_path, temperature, reference_temperature, trial, friction,
                 {"trajectory": outputs["trajectory.dcd"], "topology": outputs["topology.pdb"],
                  "thermo": outputs["thermo.tsv"], "checkpoint": outputs["checkpoint.npz"]}, seed, threads)
        beads = observables.trajectory_beads(outputs["trajectory.dcd"], outputs["topology.pdb"], trial, temperature)
    lag, msd = observables.msd(beads["positions"], beads["box"], beads["time"])
    return observables.diffusion_coefficient(lag, msd, *fit_window)["D_nm2_per_ps"]


def trial_diffusion(model_path, beads_path, temperature, reference_temperature, settings, seed, threads=1):
    """The trial runs at one temperature: [{"friction_per_ps", "D_nm2_per_ps"}] (the 1/D line).

    Raises :class:`thermocg.md.BlowUpError` if a trial run blows up.
    """
    window = (settings["friction_fit_start"], settings["friction_fit_end"])
    trials = []
    for gamma in sorted(settings["friction_trials"]):
        diffusion = measure_diffusion(model_path, beads_path, temperature, reference_temperature, settings, gamma,
                                      window, seed, threads)
        log.info("%g K, friction %.3g/ps: D = %.4g nm^2/ps", temperature, gamma, diffusion)
        trials.append({"friction_per_ps": float(gamma), "D_nm2_per_ps": float(diffusion)})
    return trials


def friction_lines(models, beads, temperatures, reference_temperature, settings, seed, threads=1):
    """Trial runs at each temperature (``models``, ``beads``: {T: path}); returns a record.

    A blow-up at a temperature is a result: that temperature's entry then has ``stable`` false
    and the reason (the other temperatures are still measured).
    """
    lines = {}
    for temperature in temperatures:
        key = f"{float(temperature):g}"
        try:
            lines[key] = {"stable": True, "trials": trial_diffusion(models[key], beads[key], float(temperature),
                                                                    reference_temperature, settings, seed, threads)}
        except md.BlowUpError as error:
            log.error("unstable at %g K in a trial run: %s", temperature, error)
            lines[key] = {"stable": False, "reason": f"blew up at step {error.step}: {error.reason}"}
    return {"reference_temperature_K": float(reference_temperature), "lines": lines,
            "units": {"friction_per_ps": "1/ps", "D_nm2_per_ps": "nm^2/ps"}}


def read_friction(path, temperature=None):
    """The friction (1/ps) of a friction record at ``temperature`` (K; None: T0), or None if the
    model blew up in the fit. A record without ``friction_by_temperature`` holds one constant gamma."""
    record = json.loads(Path(path).read_text())
    by_temperature = record.get("friction_by_temperature")
    if temperature is None or by_temperature is None:
        return record["friction_per_ps"]
    return by_temperature[f"{float(temperature):g}"]


def dynamics_run(model_path, beads_path, temperature, reference_temperature, settings, friction_per_ps, fit_window,
                 seed, production, vacf_max_lag=1.0, n_groups=8, threads=1):
    """D with its error and the bead VACF of one run at this friction (rule dynamics_cg).

    The CG MD run of :func:`simulate_or_record_blow_up` for ``production`` ps with frames every step
    (the VACF needs the step's resolution), analysed by :func:`dynamics_of_run`.
    """
    run = dict(settings, production=production)
    with tempfile.TemporaryDirectory() as tmp:
        outputs = {name: Path(tmp) / file for name, file in (("trajectory", "t.dcd"), ("topology", "t.pdb"),
                                                              ("thermo", "thermo.tsv"), ("checkpoint", "c.npz"))}
        status = simulate_or_record_blow_up(model_path, beads_path, temperature, reference_temperature, run,
                                            friction_per_ps, outputs, seed, threads, frames_every_step=True)
        return dynamics_of_run(status, outputs["trajectory"], outputs["topology"], run, friction_per_ps, fit_window,
                               vacf_max_lag, n_groups)


def dynamics_of_run(status, trajectory, topology, settings, friction_per_ps, fit_window, vacf_max_lag=1.0, n_groups=8):
    """D with its error and the bead VACF of a CG MD run that recorded every step (``status``,
    ``settings`` and ``friction_per_ps`` its own: see :func:`simulate_or_record_blow_up`).

    D from the MSD over ``fit_window`` (ps of lag), its error over groups of beads
    (:func:`thermocg.observables.diffusion_with_error`), from the production frames a time step
    apart (``settings["timestep"]``: after a retry at half the step, every other frame). Returns
    (summary dict, VACF table); a blown-up run gives a summary with ``stable`` false and an empty table.
    """
    import pandas as pd

    if not status["stable"]:
        return ({"stable": False, "reason": status["reason"], "friction_per_ps": friction_per_ps,
                 **{key: status[key] for key in ("timestep_ps",) if key in status}},
                pd.DataFrame(columns=["lag_ps", "vacf"]))
    temperature = status["temperature_K"]
    beads = observables.trajectory_beads(trajectory, topology, dict(settings, frame_interval=settings["timestep"]),
                                         temperature, recorded_interval=status["frame_interval_ps"])
    diffusion = observables.diffusion_with_error(beads["positions"], beads["box"], beads["time"], *fit_window,
                                                 n_groups=n_groups)
    lag, vacf, v2 = observables.velocity_autocorrelation(beads["positions"], beads["box"], beads["time"], vacf_max_lag)
    summary = {"stable": True, "temperature_K": float(temperature), "friction_per_ps": float(friction_per_ps),
               "diffusion": {k: float(v) for k, v in diffusion.items()}, "mean_v2_nm2_per_ps2": v2,
               "production_ps": float(settings["production"]), "n_frames": int(len(beads["time"])),
               **{key: status[key] for key in ("timestep_ps", "halved_after") if key in status}}
    return summary, pd.DataFrame({"lag_ps": lag, "vacf": vacf})
