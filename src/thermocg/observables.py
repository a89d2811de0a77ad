"""Structural and dynamical observables, one definition shared by FG and CG (METHOD.md).

Plain functions over arrays in nm and ps, in the spirit of mdtraj's analysis functions:
positions (F, N, 3), box (F, 3) orthorhombic edge lengths.

- :func:`rdf`: g(r), 0 < r <= min(L)/2, bins of 0.002 nm by default.
- :func:`adf`: p(theta) of the angle J-I-K for J, K within 0.33 nm of I, in 1/deg.
- :func:`msd` and :func:`diffusion_coefficient`: Einstein relation on unwrapped positions.
- :func:`energy_statistics`: mean, spread and block standard error of the potential energy.
- :func:`structure` and :func:`self_diffusion`: one trajectory's tables and summary, both in :func:`compute_all`.
"""

import logging
import math

import numpy as np
from scipy.spatial import cKDTree

from thermocg.mapping import minimum_image

log = logging.getLogger(__name__)


def _half_pairs(points, box, cutoff):
    """(i, j, vectors): each pair closer than ``cutoff`` once (i < j), with its minimum-image vector
    from i to j (nm). scipy's periodic k-d tree, not vesin as in the MD: vesin imports torch, which
    cost each analysis job about 2.5 s for nothing (an observables job of a CG run took 5.7 s with it, 3.0 without)."""
    wrapped = np.mod(points, box)
    wrapped[wrapped >= box] = 0.0  # np.mod of a tiny negative coordinate rounds up to the edge
    i, j = cKDTree(wrapped, boxsize=box).query_pairs(float(cutoff), output_type="ndarray").T
    return i, j, minimum_image(points[j] - points[i], box)


def rdf_bins(box, bin_width=0.002, r_max=None):
    """Bin edges (nm) from 0 to r_max (default: half the smallest box edge, whole bins only)."""
    limit = 0.5 * float(np.min(box))
    r_max = limit if r_max is None else min(float(r_max), limit)
    n_bins = int(np.floor(r_max / bin_width + 1e-9))
    if n_bins < 1:
        raise ValueError(f"r_max {r_max} nm is shorter than one bin of {bin_width} nm")
    return np.arange(n_bins + 1) * bin_width


def rdf(positions, box, bin_width=0.002, r_max=None):
    """Radial distribution function of identical particles.

    Returns (r bin centres in nm, g(r)). Each frame is normalised by its own volume, so
    g -> 1 at large r in an ideal gas.
    """
    positions, box = np.asarray(positions, dtype=np.float64), np.asarray(box, dtype=np.float64)
    edges = rdf_bins(box, bin_width, r_max)
    shell = 4.0 / 3.0 * np.pi * (edges[1:] ** 3 - edges[:-1] ** 3)
    n = positions.shape[1]
    g = np.zeros(len(edges) - 1)
    for frame, lengths in zip(positions, box):
        _, _, vectors = _half_pairs(frame, lengths, edges[-1])
        counts = np.histogram(np.sqrt(np.square(vectors).sum(axis=1)), bins=edges)[0]
        pair_density = 0.5 * n * (n - 1) / np.prod(lengths)
        g += counts / (pair_density * shell)
    return 0.5 * (edges[1:] + edges[:-1]), g / len(positions)


def adf(positions, box, r_shell=0.33, bin_width_deg=1.0):
    """Angular distribution of J-I-K angles for J, K within ``r_shell`` of I.

    Returns (theta bin centres in degrees, p(theta) in 1/deg with sum(p) * width = 1). The bins
    split 0-180 deg evenly: their width is ``bin_width_deg`` rounded to the nearest divisor of 180.
    """
    positions, box = np.asarray(positions, dtype=np.float64), np.asarray(box, dtype=np.float64)
    n_bins = max(1, int(round(180.0 / bin_width_deg)))
    width = 180.0 / n_bins
    edges = np.linspace(0.0, 180.0, n_bins + 1)
    counts = np.zeros(len(edges) - 1)
    for frame, lengths in zip(positions, box):
        i, j, vectors = _half_pairs(frame, lengths, r_shell)
        # every pair from both ends, grouped by the centre bead
        centre, vectors = np.concatenate([i, j]), np.concatenate([vectors, -vectors])
        order = np.argsort(centre, kind="stable")
        counts += np.histogram(_triplet_angles(centre[order], vectors[order], len(frame)), bins=edges)[0]
    total = counts.sum()
    if total == 0:
        raise ValueError(f"no triplets within r_shell = {r_shell} nm: is the shell too small?")
    return 0.5 * (edges[1:] + edges[:-1]), counts / (total * width)


def _triplet_angles(centre, vectors, n_particles):
    """All angles (degrees) between pairs of neighbour vectors that share a centre particle."""
    per_centre = np.bincount(centre, minlength=n_particles)
    width = per_centre.max(initial=0)
    if width < 2:
        return np.zeros(0)
    slot = np.arange(len(centre)) - np.repeat(np.cumsum(per_centre) - per_centre, per_centre)
    units = np.zeros((n_particles, width, 3))
    units[centre, slot] = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    valid = np.zeros((n_particles, width), dtype=bool)
    valid[centre, slot] = True
    cosines = np.einsum("nad,nbd->nab", units, units)
    upper = np.triu(np.ones((width, width), dtype=bool), k=1)
    keep = valid[:, :, None] & valid[:, None, :] & upper[None]
    return np.degrees(np.arccos(np.clip(cosines[keep], -1.0, 1.0)))


def unwrap_in_time(positions, box):
    """Continuous trajectories: accumulate minimum-image displacements between frames.

    Correct as long as no particle moves more than half a box edge between two frames.
    """
    positions, box = np.asarray(positions, dtype=np.float64), np.asarray(box, dtype=np.float64)
    steps = minimum_image(np.diff(positions, axis=0), box[1:, None, :])
    return np.concatenate([positions[:1], positions[:1] + np.cumsum(steps, axis=0)])


def msd(positions, box, time):
    """Mean squared displacement over all time origins (FFT, O(F log F)).

    Returns (lag times in ps, MSD in nm^2), lag 0 included. Frames must be evenly spaced in time.
    """
    time = np.asarray(time, dtype=np.float64)
    if len(time) > 2 and not np.allclose(np.diff(time), time[1] - time[0], rtol=1e-6):
        raise ValueError("msd needs evenly spaced frames")
    x = unwrap_in_time(positions, box)
    n_frames = len(x)
    squared = (x**2).sum(axis=2)  # (F, N)
    # sum over origins of |x(t+m)|^2 + |x(t)|^2, by a running sum
    padded = np.concatenate([squared, np.zeros((1, squared.shape[1]))])
    running = 2 * squared.sum(axis=0)
    s1 = np.empty((n_frames, squared.shape[1]))
    for m in range(n_frames):
        running = running - padded[m - 1] - padded[n_frames - m] if m else running
        s1[m] = running / (n_frames - m)
    # sum over origins of x(t+m).x(t), by FFT autocorrelation
    spectrum = np.fft.rfft(x, n=2 * n_frames, axis=0)
    autocorrelation = np.fft.irfft(spectrum * spectrum.conj(), axis=0)[:n_frames].sum(axis=2)
    s2 = autocorrelation / (n_frames - np.arange(n_frames))[:, None]
    return time - time[0], (s1 - 2 * s2).mean(axis=1)


def diffusion_coefficient(lag, msd_values, fit_start, fit_end):
    """Self-diffusion coefficient D (nm^2/ps) from the slope of MSD(lag) over [fit_start, fit_end] ps.

    Einstein relation in 3D: MSD = 6 D t + c. Returns a dict with D, the intercept and the window.
    """
    window = (lag >= fit_start) & (lag <= fit_end)
    if window.sum() < 2:
        raise ValueError(f"MSD fit window {fit_start}-{fit_end} ps holds fewer than 2 points")
    slope, intercept = np.polyfit(lag[window], msd_values[window], 1)
    return {"D_nm2_per_ps": slope / 6.0, "intercept_nm2": intercept, "fit_start_ps": fit_start, "fit_end_ps": fit_end}


def diffusion_with_error(positions, box, time, fit_start, fit_end, n_groups=8):
    """D (nm^2/ps) from the whole trajectory and its standard error over ``n_groups`` groups of beads.

    Each group's D comes from the MSD of its own beads over the same window; the error is the
    spread of the groups / sqrt(n_groups). Beads of one box are weakly correlated (collective
    motion), so this is a lower bound on the error that independent replicas would show.
    """
    positions = np.asarray(positions, dtype=np.float64)
    lag, values = msd(positions, box, time)
    result = diffusion_coefficient(lag, values, fit_start, fit_end)
    groups = np.array_split(np.arange(positions.shape[1]), min(n_groups, positions.shape[1]))
    per_group = [diffusion_coefficient(*msd(positions[:, g], box, time), fit_start, fit_end)["D_nm2_per_ps"]
                 for g in groups]
    error = float(np.std(per_group, ddof=1) / np.sqrt(len(per_group))) if len(per_group) > 1 else float("nan")
    return dict(result, D_error_nm2_per_ps=error, n_groups=len(per_group))


def velocity_autocorrelation(positions, box, time, max_lag=1.0):
    """Normalised bead velocity autocorrelation C(t) = <v(0).v(t)> / <v.v> from positions.

    Velocities are finite differences of consecutive unwrapped frames, (x(t+dt) - x(t)) / dt: with
    dt much shorter than the decay of C (a few fs for FG, one step for CG) this is the VACF; with
    coarser frames it is the VACF of displacements over dt. Returns (lag ps, C, <v.v> nm^2/ps^2).
    """
    time = np.asarray(time, dtype=np.float64)
    dt = float(time[1] - time[0])
    velocities = np.diff(unwrap_in_time(positions, box), axis=0) / dt
    n_lags = max(1, min(int(round(max_lag / dt)) + 1, len(velocities)))
    from thermocg.friction import autocorrelation

    c = autocorrelation(velocities, n_lags)
    return np.arange(n_lags) * dt, c / c[0], float(c[0])


def block_standard_error(series, n_blocks):
    """Standard error of the mean of a time series from the spread of its block means (NaN with
    fewer than two values): neighbouring values of a trajectory are correlated, block means less."""
    series = np.asarray(series, dtype=np.float64)
    blocks = np.array_split(series, min(n_blocks, len(series))) if len(series) else []
    if len(blocks) < 2:
        return float("nan")
    means = np.array([block.mean() for block in blocks])
    return float(means.std(ddof=1) / np.sqrt(len(blocks)))


def energy_statistics(energy, n_molecules, n_blocks=5):
    """Mean, standard deviation and block-average standard error of a potential energy series (kJ/mol)."""
    energy = np.asarray(energy, dtype=np.float64)
    sem = block_standard_error(energy, n_blocks)
    return {
        "mean_kJ_per_mol": energy.mean(),
        "std_kJ_per_mol": energy.std(ddof=1) if len(energy) > 1 else 0.0,
        "sem_kJ_per_mol": sem,
        "mean_per_molecule_kJ_per_mol": energy.mean() / n_molecules,
        "n_frames": len(energy),
    }


TABLE_COLUMNS = {"rdf_com": ["r_nm", "g"], "adf": ["theta_deg", "p_per_deg"], "msd": ["lag_ps", "msd_nm2"],
                 "rdf_halves": ["r_nm", "g_first", "g_second"], "adf_halves": ["theta_deg", "p_first", "p_second"]}


def halves(positions, box, settings):
    """RDF and ADF of the first and of the second half of a trajectory's frames: two estimates of
    one structure (for runs much longer than its correlation time), whose difference is the
    sampling noise. Returns {"rdf_halves": (r, g_first, g_second), "adf_halves": (theta, p_first,
    p_second)}; ``settings`` is the config's ``observables`` section."""
    half = len(positions) // 2
    if half < 1:
        raise ValueError("two halves need at least two frames")
    first, second = slice(0, half), slice(half, 2 * half)
    r, g_first = rdf(positions[first], box[first], settings["rdf_bin_width"])
    _, g_second = rdf(positions[second], box[second], settings["rdf_bin_width"])
    theta, p_first = adf(positions[first], box[first], settings["adf_shell"], settings["adf_bin_width"])
    _, p_second = adf(positions[second], box[second], settings["adf_shell"], settings["adf_bin_width"])
    return {"rdf_halves": (r, g_first, g_second), "adf_halves": (theta, p_first, p_second)}


def empty_tables():
    """The tables of :func:`compute_all` with no rows (a run that produced no trajectory)."""
    import pandas as pd

    return {name: pd.DataFrame(columns=columns) for name, columns in TABLE_COLUMNS.items()}


#: The ``observables`` settings of each part: the FG rules split along them, so that a change of one
#: part's settings reruns only what uses that part (the friction fit reads only the diffusion).
STRUCTURE_SETTINGS = ("rdf_bin_width", "adf_shell", "adf_bin_width")
DIFFUSION_SETTINGS = ("msd_fit_start", "msd_fit_end")


def structure(beads, settings, oxygen_positions=None):
    """The structural observables of one temperature's bead trajectory, as tables (RDF, ADF and
    their halves; the O-O RDF when ``oxygen_positions`` (F, N, 3) is given) and a summary dict
    (temperature, sizes, units, and the potential energy when the beads carry it).

    ``beads`` is a CG frame dict (see :mod:`thermocg.io`); ``settings`` holds STRUCTURE_SETTINGS.
    """
    import pandas as pd

    positions, box = beads["positions"], beads["box"]
    r, g = rdf(positions, box, settings["rdf_bin_width"])
    theta, p = adf(positions, box, settings["adf_shell"], settings["adf_bin_width"])
    tables = {"rdf_com": pd.DataFrame({"r_nm": r, "g": g}), "adf": pd.DataFrame({"theta_deg": theta, "p_per_deg": p})}
    for name, values in halves(positions, box, settings).items():
        tables[name] = pd.DataFrame(dict(zip(TABLE_COLUMNS[name], values)))
    if oxygen_positions is not None:
        r_oo, g_oo = rdf(oxygen_positions, box, settings["rdf_bin_width"])
        tables["rdf_oo"] = pd.DataFrame({"r_nm": r_oo, "g": g_oo})
    summary = {
        "temperature_K": float(beads["temperature"]),
        "n_beads": int(positions.shape[1]),
        "n_frames": int(positions.shape[0]),
        "units": {"D_nm2_per_ps": "nm^2/ps (x1000 = 1e-5 cm^2/s)", "energy": "kJ/mol", "r": "nm", "theta": "deg", "p": "1/deg"},
    }
    if "potential_energy" in beads:
        statistics = energy_statistics(beads["potential_energy"], positions.shape[1])
        summary["potential_energy"] = {k: float(v) for k, v in statistics.items()}
    return tables, summary


def self_diffusion(beads, settings):
    """(MSD table, diffusion dict) of one temperature's bead trajectory: D (nm^2/ps) from the Einstein
    fit over the settings' window (DIFFUSION_SETTINGS), its error over groups of beads, the window."""
    import pandas as pd

    positions, box, time = beads["positions"], beads["box"], beads["time"]
    lag, msd_values = msd(positions, box, time)
    diffusion = diffusion_with_error(positions, box, time, settings["msd_fit_start"], settings["msd_fit_end"])
    return pd.DataFrame({"lag_ps": lag, "msd_nm2": msd_values}), {k: float(v) for k, v in diffusion.items()}


def compute_all(beads, settings, oxygen_positions=None):
    """Every observable of one temperature's bead trajectory: :func:`structure`'s tables and summary,
    with the MSD table and the summary's "diffusion" from :func:`self_diffusion`."""
    tables, summary = structure(beads, settings, oxygen_positions)
    tables["msd"], summary["diffusion"] = self_diffusion(beads, settings)
    return tables, summary


def of_cg_run(status, trajectory, topology, settings, observable_settings, temperature):
    """(tables, summary) of one CG MD run, computed exactly as the FG ones; a blown-up run (``status``
    from thermocg.cgmd.simulate_or_record_blow_up) has empty tables. The summary carries the status under "cgmd"."""
    if status["stable"]:
        beads = trajectory_beads(trajectory, topology, settings, temperature, status["frame_interval_ps"])
        tables, summary = compute_all(beads, observable_settings)
        log.info("D = %.4g +- %.2g nm^2/ps", summary["diffusion"]["D_nm2_per_ps"], summary["diffusion"]["D_error_nm2_per_ps"])
    else:
        tables, summary = empty_tables(), {}
        log.warning("the CG MD blew up (%s): no observables", status["reason"])
    summary["cgmd"] = status
    return tables, summary


def trajectory_beads(trajectory, topology, settings, temperature, recorded_interval=None):
    """The production part of a CG trajectory as a bead frame dict (see thermocg.io): the frames after
    ``settings["equilibration"]`` ps, every ``settings["frame_interval"]`` ps, of a trajectory that
    recorded a frame every ``recorded_interval`` ps from time 0 (default: the frame interval)."""
    import mdtraj

    frame_time = settings["frame_interval"]
    recorded_interval = frame_time if recorded_interval is None else recorded_interval
    stride = round(frame_time / recorded_interval)
    if stride < 1 or not math.isclose(stride * recorded_interval, frame_time, rel_tol=1e-9):
        raise ValueError(f"{trajectory}: frames every {recorded_interval} ps cannot give one every {frame_time} ps")
    frames = mdtraj.load(str(trajectory), top=str(topology))
    production = slice(int(round(settings["equilibration"] / recorded_interval)), None, stride)
    positions = frames.xyz[production].astype(np.float64)
    if len(positions) < 3:
        raise ValueError(f"{trajectory}: only {len(positions)} production frames")
    return {
        "positions": positions,
        "box": frames.unitcell_lengths[production].astype(np.float64),
        "time": frame_time * np.arange(len(positions)),
        "temperature": np.float64(temperature),
    }
