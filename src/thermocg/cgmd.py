"""CG molecular dynamics as the pipeline runs it (METHOD.md, "CG dynamics").

A fitted model runs at temperature T from the last mapped FG frame of that temperature, with
Langevin (BAOAB, :mod:`thermocg.md`) friction gamma. gamma sets the time scale of CG diffusion:
it is fitted once per model at T0 so that D_CG(T0) = D_FG(T0), then held constant at every other
temperature (the stated temperature law: constant gamma), so D_CG/D_FG away from T0 is a prediction.

The fit uses that 1/D is close to linear in gamma for Langevin dynamics (D ~ k_B T / (m (gamma +
gamma_internal))): two short runs at trial frictions give the line, which is solved for D_FG(T0).
A model that blows up in those runs is a result: its friction record says so, and its runs at every
temperature are recorded as unstable without being simulated.
"""

import json
import logging
import tempfile
from pathlib import Path

import mdtraj
import numpy as np
import torch

from thermocg import io, md, nn, observables

log = logging.getLogger(__name__)

MINIMUM_FRICTION = 0.01  # 1/ps: below this the thermostat would no longer hold the temperature


def start_frame(beads_path):
    """Positions (N, 3) nm, box (3,) nm and masses (N,) amu of the last mapped FG frame."""
    beads = io.load_frames(beads_path)
    return beads["positions"][-1], beads["box"][-1], beads["masses"]


def simulate(model_path, beads_path, temperature, reference_temperature, settings, friction, outputs, seed, threads=1):
    """Run one model at one temperature; ``outputs`` has trajectory, topology, thermo, checkpoint paths.

    The checkpoint is bound to the model and beads files (their bytes), T, the friction and the
    settings: one written by another model or start frame is set aside, not resumed.
    """
    torch.set_num_threads(threads)
    nn.tune_cpu_allocator()
    model, metadata = nn.load_model(model_path)
    positions, box, masses = start_frame(beads_path)
    steps = round((settings["equilibration"] + settings["production"]) / settings["timestep"])
    every = max(1, round(settings["frame_interval"] / settings["timestep"]))
    log.info("%s at %g K: %d steps of %g ps, friction %.3g/ps, on %s", metadata["name"], temperature, steps,
             settings["timestep"], friction, md.default_device())
    return md.run_md(
        model, positions, box, temperature, steps, dt=settings["timestep"], friction=friction, masses=masses,
        reference_temperature=reference_temperature, frame_interval=every, report_interval=every * 10,
        checkpoint_interval=max(every, round(settings["checkpoint_interval"] / settings["timestep"])),
        skin=settings["skin"], seed=seed, dtype=next(model.parameters()).dtype,
        inputs={"model": model_path, "beads": beads_path}, **outputs,
    )


def simulate_or_record_blow_up(model_path, beads_path, temperature, reference_temperature, settings, friction,
                               outputs, seed, threads=1):
    """:func:`simulate`, but a blow-up is a result, not a failure: returns a status record.

    A model run far from its training temperatures may leave the physical region and blow up;
    that is the answer to "does it transfer here", so the pipeline records it (eps and D become
    undefined for that (model, T)) instead of stopping every other run. The record has
    ``stable`` and, after a blow-up, the step, time (ps) and reason. ``friction`` None (the model
    blew up in its friction fit, see :func:`read_friction`) records that without simulating; the
    outputs are then written empty.
    """
    if friction is None:
        reason = f"blew up in the friction fit at T0 = {reference_temperature:g} K"
        log.error("%s: recorded as unstable at %g K without simulating", reason, temperature)
        positions, box, _ = start_frame(beads_path)
        md.write_outputs(outputs["trajectory"], outputs["topology"], outputs["thermo"], positions, box, [], [])
        Path(outputs["checkpoint"]).unlink(missing_ok=True)
        return {"stable": False, "temperature_K": float(temperature), "blow_up_step": None,
                "blow_up_time_ps": None, "reason": reason}
    try:
        summary = simulate(model_path, beads_path, temperature, reference_temperature, settings, friction,
                           outputs, seed, threads)
    except md.BlowUpError as error:
        log.error("unstable at %g K: %s. Recorded as unstable; its observables are undefined.", temperature, error)
        return {"stable": False, "temperature_K": float(temperature), "blow_up_step": int(error.step),
                "blow_up_time_ps": float(error.step * settings["timestep"]), "reason": error.reason}
    return {"stable": True, "temperature_K": float(temperature), **summary}


def read_status(path):
    """The status record of a cgmd run (see :func:`simulate_or_record_blow_up`)."""
    return json.loads(Path(path).read_text())


def trajectory_beads(trajectory, topology, settings, temperature):
    """The production part of a CG trajectory as a bead frame dict (see thermocg.io) for observables."""
    frames = mdtraj.load(str(trajectory), top=str(topology))
    frame_time = settings["frame_interval"]
    first = int(round(settings["equilibration"] / frame_time))
    positions = frames.xyz[first:].astype(np.float64)
    if len(positions) < 3:
        raise ValueError(f"{trajectory}: only {len(positions)} production frames")
    return {
        "positions": positions,
        "box": frames.unitcell_lengths[first:].astype(np.float64),
        "time": frame_time * np.arange(len(positions)),
        "temperature": np.float64(temperature),
    }


def measure_diffusion(model_path, beads_path, temperature, reference_temperature, settings, friction, fit_window, seed):
    """D (nm^2/ps) of a short run at this friction (the trial runs of the friction fit)."""
    trial = dict(settings, production=settings["friction_fit_time"])
    with tempfile.TemporaryDirectory() as tmp:
        outputs = {name: Path(tmp) / name for name in ("trajectory.dcd", "topology.pdb", "thermo.tsv", "checkpoint.npz")}
        simulate(model_path, beads_path, temperature, reference_temperature, trial, friction,
                 {"trajectory": outputs["trajectory.dcd"], "topology": outputs["topology.pdb"],
                  "thermo": outputs["thermo.tsv"], "checkpoint": outputs["checkpoint.npz"]}, seed)
        beads = trajectory_beads(outputs["trajectory.dcd"], outputs["topology.pdb"], trial, temperature)
    lag, msd = observables.msd(beads["positions"], beads["box"], beads["time"])
    return observables.diffusion_coefficient(lag, msd, *fit_window)["D_nm2_per_ps"]


def fit_friction(model_path, beads_path, reference_temperature, target_diffusion, settings, seed):
    """Friction (1/ps) that makes D_CG(T0) = D_FG(T0), from two trial frictions; returns a record.

    A trial run that blows up is a result: the record then has ``stable`` false, the reason, and
    ``friction_per_ps`` null.
    """
    trials = sorted(settings["friction_trials"])
    window = (settings["friction_fit_start"], settings["friction_fit_end"])
    measured = []
    for gamma in trials:
        try:
            diffusion = measure_diffusion(model_path, beads_path, reference_temperature, reference_temperature,
                                          settings, gamma, window, seed)
        except md.BlowUpError as error:
            log.error("unstable at T0 = %g K with the trial friction %.3g/ps: %s", reference_temperature, gamma, error)
            return {"stable": False, "friction_per_ps": None, "temperature_K": float(reference_temperature),
                    "reason": f"trial friction {gamma:g}/ps: blew up at step {error.step}: {error.reason}"}
        log.info("friction %.3g/ps: D = %.4g nm^2/ps (target %.4g)", gamma, diffusion, target_diffusion)
        measured.append(diffusion)
    inverse = 1.0 / np.array(measured)
    slope = (inverse[1] - inverse[0]) / (trials[1] - trials[0])
    if slope <= 0:
        raise RuntimeError(
            f"1/D does not grow with friction ({dict(zip(trials, measured))}): runs too short or too noisy "
            "to fit the friction; lengthen cgmd.friction_fit_time"
        )
    gamma = trials[0] + (1.0 / target_diffusion - inverse[0]) / slope
    if gamma < MINIMUM_FRICTION:
        log.warning("the model diffuses too slowly even without friction: gamma %.3g -> %.3g/ps", gamma, MINIMUM_FRICTION)
    return {
        "stable": True,
        "friction_per_ps": float(max(gamma, MINIMUM_FRICTION)),
        "fitted_value_per_ps": float(gamma),
        "trials": [{"friction_per_ps": g, "D_nm2_per_ps": d} for g, d in zip(trials, measured)],
        "target_D_nm2_per_ps": float(target_diffusion),
        "temperature_K": float(reference_temperature),
        "law": "constant gamma at every temperature",
    }


def read_friction(path):
    """The friction (1/ps) of a friction record, or None if the model blew up in the fit."""
    return json.loads(Path(path).read_text())["friction_per_ps"]
