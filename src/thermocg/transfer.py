"""Transferability of CG models across temperature (METHOD.md, "Observables and error metrics").

- :func:`rdf_error`: eps_g = sqrt(mean_bins (g_CG - g_FG)^2) over r_min <= r <= r_max.
- :func:`adf_error`: eps_a = sqrt(mean_bins (p_CG - p_FG)^2), p in 1/deg.
- :func:`excess_error`: eps_g or eps_a beyond the sampling noise of both sides, from replicas
  (with :func:`jackknife_standard_error`: its standard error); :func:`halves_excess`: from the
  two halves of one CG and one FG run, as the table gives it.
- :func:`halves_spread`: eps_g and eps_a between the two halves of one trajectory (METHOD.md,
  "Measurement floor": the FG noise floor), or the spread of a CG run's eps over its two halves.
- :func:`transferability_table`: one row per (model, temperature) found on disk, with eps_g,
  eps_a, the FG noise floor, the CG spread, the excess over the noise, D_CG/D_FG, the force RMSE
  and the ratios of eps to the model of kind fm_oracle and to that of kind fm_ref at that
  temperature (whatever their names).
- :func:`write_transferability`: the table as TSV (for people) and JSON records (for machines).

Observable directories are laid out as written by the observables rules:
``<fg_dir>/T<T>/{rdf_com.tsv, adf.tsv, summary.json}`` and ``<cg_dir>/<model>/T<T>/`` likewise.
A model whose force field at some T is another model's (``shared_runs``: at T0, the kinds of
thermocg.kinds.SAME_AS_FM_REF_AT_T0 and fm_ref) reports that model's run: see :func:`cg_run_directory`.
"""

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from thermocg import io
from thermocg.config import temperature_label

UNITS = {
    "model": "name",
    "kind": "fm_ref, fm_oracle, em, trf1, trf2 or mtfm (a DiffSim refinement keeps its model's kind)",
    "T_K": "K",
    "trained_at": "K, comma-separated training temperatures",
    "trained_here": "true if T_K is a training temperature of the model",
    "cg_run": "name of the model whose CG MD run was measured: the model itself, or one with the same force field at T_K",
    "stable": "false if the CG MD blew up (eps and D are then undefined: NaN/null)",
    "eps_g": "1 (g is dimensionless)",
    "eps_a": "1/deg",
    "eps_g_floor": "1, eps_g between the two halves of the FG run at T_K (noise floor)",
    "eps_a_floor": "1/deg, eps_a between the two halves of the FG run at T_K (noise floor)",
    "eps_g_spread": "1, standard deviation of eps_g over the two halves of the CG production (two replicas of half the length)",
    "eps_a_spread": "1/deg, standard deviation of eps_a over the two halves of the CG production",
    "eps_g_excess": "1, eps_g with the sampling noise of the CG and the FG run taken out, estimated from their halves "
                    "(excess_error; negative: within the noise)",
    "eps_a_excess": "1/deg, eps_a with the sampling noise of the CG and the FG run taken out, estimated from their halves",
    "D_cg": "nm^2/ps",
    "D_fg": "nm^2/ps",
    "D_ratio": "1, D_cg / D_fg",
    "force_rmse": "kJ/(mol nm)",
    "force_rmse_oracle": "kJ/(mol nm)",
    "eps_g_ratio_oracle": "1, eps_g / eps_g of the fm_oracle model at T_K",
    "eps_a_ratio_oracle": "1, eps_a / eps_a of the fm_oracle model at T_K",
    "eps_g_ratio_fm_ref": "1, eps_g / eps_g of the fm_ref model (not a DiffSim refinement of it) at T_K",
    "eps_a_ratio_fm_ref": "1, eps_a / eps_a of the fm_ref model (not a DiffSim refinement of it) at T_K",
}
COLUMNS = list(UNITS)


def _window(x_cg, x_fg, x_min, x_max):
    """The FG bins within [x_min, x_max] (x_max None: the shorter grid's last bin), as a mask."""
    if x_max is None:
        x_max = min(x_cg[-1], x_fg[-1])
    # Tolerance: bin centres written with 8 significant digits may miss the bounds by rounding.
    tolerance = 1e-9 * max(1.0, abs(x_max))
    window = (x_fg >= x_min - tolerance) & (x_fg <= x_max + tolerance)
    if not window.any():
        raise ValueError(f"no FG bins in the window {x_min} to {x_max}")
    return window


def _on_fg_grid(x_cg, y_cg, x_fg):
    """CG profile(s) (..., bins) on the FG bins: as they are on the same grid, else linearly interpolated."""
    if len(x_cg) == len(x_fg) and np.allclose(x_cg, x_fg):
        return y_cg
    return np.apply_along_axis(lambda y: np.interp(x_fg, x_cg, y), -1, y_cg)


def _profile_error(x_cg, y_cg, x_fg, y_fg, x_min, x_max):
    """RMS difference of two profiles on the FG grid within [x_min, x_max]."""
    x_cg, y_cg = np.asarray(x_cg, dtype=float), np.asarray(y_cg, dtype=float)
    x_fg, y_fg = np.asarray(x_fg, dtype=float), np.asarray(y_fg, dtype=float)
    window = _window(x_cg, x_fg, x_min, x_max)
    return float(np.sqrt(np.mean((_on_fg_grid(x_cg, y_cg, x_fg)[window] - y_fg[window]) ** 2)))


#: nm, where eps_g's window starts (METHOD.md)
RDF_MIN_NM = 0.2


def rdf_error(r_cg, g_cg, r_fg, g_fg, r_min=RDF_MIN_NM, r_max=None):
    """eps_g over r_min <= r <= r_max (nm); r_max defaults to the shorter grid's last r.

    The CG RDF is linearly interpolated onto the FG bins when the grids differ.
    """
    return _profile_error(r_cg, g_cg, r_fg, g_fg, r_min, r_max)


def adf_error(theta_cg, p_cg, theta_fg, p_fg):
    """eps_a in 1/deg over the whole angle range (CG interpolated onto FG bins if needed)."""
    return _profile_error(theta_cg, p_cg, theta_fg, p_fg, -np.inf, None)


def excess_error(x_cg, cg_replicas, x_fg, fg_replicas, metric):
    """The error of one profile beyond the sampling noise of both sides, from independent replicas.

    ``cg_replicas`` (n_cg, bins on ``x_cg``) and ``fg_replicas`` (n_fg, bins on ``x_fg``), n >= 2
    each: equally long, independent estimates of the CG and the FG profile (CG MD runs with other
    seeds; blocks of one FG trajectory much longer than its correlation time). ``metric``: "g"
    (eps_g's window, r >= 0.2 nm) or "a" (eps_a's, every angle). With the means over replicas,
    eps^2 = mean_bins (mean_CG - mean_FG)^2 holds the systematic error and the noise of both
    means, whose expectation mean_bins (s_CG^2 / n_CG + s_FG^2 / n_FG) (sample variances over the
    replicas) is ``noise``^2. Returns {"eps", "noise", "excess"}: excess = sign(d) sqrt(|d|), d =
    eps^2 - noise^2, the error against runs without noise; unbiased in d, not in the root; negative
    when the difference is within the noise.
    """
    x_cg, x_fg = np.asarray(x_cg, dtype=float), np.asarray(x_fg, dtype=float)
    cg, fg = np.atleast_2d(np.asarray(cg_replicas, dtype=float)), np.atleast_2d(np.asarray(fg_replicas, dtype=float))
    if len(cg) < 2 or len(fg) < 2:
        raise ValueError(f"need at least two replicas of each profile, got {len(cg)} CG and {len(fg)} FG")
    x_min = {"g": RDF_MIN_NM, "a": -np.inf}[metric]
    window = _window(x_cg, x_fg, x_min, None)
    cg, fg = _on_fg_grid(x_cg, cg, x_fg)[:, window], fg[:, window]
    eps_squared = np.mean((cg.mean(0) - fg.mean(0)) ** 2)
    noise_squared = np.mean(cg.var(0, ddof=1) / len(cg) + fg.var(0, ddof=1) / len(fg))
    excess_squared = eps_squared - noise_squared
    return {"eps": float(np.sqrt(eps_squared)), "noise": float(np.sqrt(noise_squared)),
            "excess": float(np.sign(excess_squared) * np.sqrt(abs(excess_squared)))}


def jackknife_standard_error(statistic, groups):
    """Standard error of ``statistic(*groups)`` by the delete-one jackknife, stratified over
    independent groups of replicas (arrays, replicas along the first axis): each replica of each
    group is left out once, and the groups' variances add."""
    groups = [np.asarray(group) for group in groups]
    variance = 0.0
    for index, group in enumerate(groups):
        n = len(group)
        if n < 3:  # leaving one out must leave two: the statistics here need a variance
            raise ValueError(f"the jackknife needs at least 3 replicas per group, group {index} has {n}")
        left_out = np.array([statistic(*groups[:index], np.delete(group, k, axis=0), *groups[index + 1:])
                             for k in range(n)])
        variance += (n - 1) / n * np.sum((left_out - left_out.mean()) ** 2)
    return float(np.sqrt(variance))


def halves_excess(cg_halves, fg_halves):
    """{"eps_g", "eps_a"}: the :func:`excess_error` of a CG run against an FG run, each run's two
    halves (the tables of :func:`thermocg.observables.halves`) its two replicas."""
    excess = {}
    tables = (("g", 0, ("r_nm", "g_first", "g_second")), ("a", 1, ("theta_deg", "p_first", "p_second")))
    for metric, index, columns in tables:  # index: the RDF's and the ADF's place in the halves
        cg, fg = cg_halves[index], fg_halves[index]
        excess[f"eps_{metric}"] = excess_error(cg[columns[0]], cg[list(columns[1:])].to_numpy(float).T,
                                               fg[columns[0]], fg[list(columns[1:])].to_numpy(float).T, metric)["excess"]
    return excess


def halves_spread(rdf_halves, adf_halves, rdf_reference=None, adf_reference=None):
    """eps between the two halves of one trajectory, or the spread of eps against a reference.

    ``rdf_halves``, ``adf_halves``: the tables of :func:`thermocg.observables.halves`. Without a
    reference: {"eps_g", "eps_a"} between the halves (the FG noise floor: a difference between
    models below it is not resolved). With the FG tables as reference: {"eps_g", "eps_a"} as the
    standard deviation of each half's eps against the reference, |eps_1 - eps_2| / sqrt(2) (the
    spread of two replicas of half the length).
    """
    r, g1, g2 = (rdf_halves[c].to_numpy(float) for c in ("r_nm", "g_first", "g_second"))
    theta, p1, p2 = (adf_halves[c].to_numpy(float) for c in ("theta_deg", "p_first", "p_second"))
    if rdf_reference is None:
        return {"eps_g": rdf_error(r, g2, r, g1), "eps_a": adf_error(theta, p2, theta, p1),
                "method": "first vs second half of the frames"}
    r_fg, g_fg = rdf_reference["r_nm"], rdf_reference["g"]
    theta_fg, p_fg = adf_reference["theta_deg"], adf_reference["p_per_deg"]
    spread_g = abs(rdf_error(r, g1, r_fg, g_fg) - rdf_error(r, g2, r_fg, g_fg)) / math.sqrt(2.0)
    spread_a = abs(adf_error(theta, p1, theta_fg, p_fg) - adf_error(theta, p2, theta_fg, p_fg)) / math.sqrt(2.0)
    return {"eps_g": spread_g, "eps_a": spread_a}


def _observables(directory):
    """(rdf table, adf table, summary dict or None) of one directory, or None if incomplete."""
    directory = Path(directory)
    if not ((directory / "rdf_com.tsv").exists() and (directory / "adf.tsv").exists()):
        return None
    summary_path = directory / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else None
    halves = None
    if (directory / "rdf_halves.tsv").exists() and (directory / "adf_halves.tsv").exists():
        halves = io.read_table(directory / "rdf_halves.tsv"), io.read_table(directory / "adf_halves.tsv")
    return io.read_table(directory / "rdf_com.tsv"), io.read_table(directory / "adf.tsv"), summary, halves


def _diffusion(summary):
    try:
        return float(summary["diffusion"]["D_nm2_per_ps"])
    except (TypeError, KeyError):
        return math.nan


def _stable(summary):
    """False when the CG run that the summary describes blew up (see thermocg.cgmd)."""
    return bool(((summary or {}).get("cgmd") or {}).get("stable", True))


def _force_lookup(forces_table):
    """{(model, T label): (force_rmse, force_rmse_oracle)} and {T label: oracle RMSE}."""
    if forces_table is None:
        return {}, {}
    forces = io.read_table(forces_table) if isinstance(forces_table, (str, Path)) else forces_table
    per_model, oracle = {}, {}
    for row in forces.itertuples():
        label = temperature_label(row.T_K)
        per_model[(row.model, label)] = float(row.force_rmse)
        if np.isfinite(row.force_rmse_oracle):
            oracle[label] = float(row.force_rmse_oracle)  # the same for every model at this T
    return per_model, oracle


def cg_run(name, label, shared_runs=None):
    """The model whose CG MD run at temperature ``label`` is ``name``'s (``shared_runs``:
    {model: {T label: model}}; a model runs its own by default)."""
    return ((shared_runs or {}).get(name) or {}).get(label, name)


def cg_run_directory(cg_dir, name, label, shared_runs=None):
    """``<cg_dir>/<model>/T<label>`` of the run that stands for ``name`` at ``label`` (:func:`cg_run`)."""
    return Path(cg_dir) / cg_run(name, label, shared_runs) / f"T{label}"


def transferability_table(models, temperatures, fg_dir, cg_dir, forces_table=None, shared_runs=None):
    """One row per (model, temperature) whose FG and CG observables exist (see :data:`UNITS`).

    models: {name: {"kind": kind, "trained_at": [K, ...], "refined_from": name (DiffSim refinements
    only)}}; the entry of kind fm_oracle and the unrefined one of kind fm_ref (one of each at most)
    are the references of the ratios: give them every evaluated temperature.
    temperatures: K (numbers or path labels such as "300").
    forces_table: results/metrics/forces.tsv (path or DataFrame); force columns are NaN without it.
    shared_runs: {model: {T label: model}}, the runs that stand for a model's (:func:`cg_run`).
    Rows whose files are missing are left out; ratio columns are NaN where their reference has no row.
    """
    force_rmse, force_oracle = _force_lookup(forces_table)
    rows = []
    for label in (temperature_label(t) for t in temperatures):
        fg = _observables(Path(fg_dir) / f"T{label}")
        if fg is None:
            continue
        rdf_fg, adf_fg, summary_fg, halves_fg = fg
        for name, spec in models.items():
            cg = _observables(cg_run_directory(cg_dir, name, label, shared_runs))
            if cg is None:
                continue
            rdf_cg, adf_cg, summary_cg, halves_cg = cg
            trained_at = [float(t) for t in spec.get("trained_at", [])]
            stable = _stable(summary_cg)
            d_cg, d_fg = _diffusion(summary_cg), _diffusion(summary_fg)
            floor = (summary_fg or {}).get("noise_floor", {})
            spread, excess = {}, {}
            if stable and halves_cg is not None and len(halves_cg[0]):
                spread = halves_spread(*halves_cg, rdf_fg, adf_fg)
                if halves_fg is not None:
                    excess = halves_excess(halves_cg, halves_fg)
            rows.append({
                "model": name,
                "kind": spec["kind"],
                "T_K": float(label),
                "trained_at": ",".join(f"{t:g}" for t in trained_at),
                "trained_here": bool(np.any(np.isclose(trained_at, float(label)))),
                "cg_run": cg_run(name, label, shared_runs),
                "stable": stable,
                "eps_g": rdf_error(rdf_cg["r_nm"], rdf_cg["g"], rdf_fg["r_nm"], rdf_fg["g"]) if stable else math.nan,
                "eps_a": (adf_error(adf_cg["theta_deg"], adf_cg["p_per_deg"], adf_fg["theta_deg"], adf_fg["p_per_deg"])
                          if stable else math.nan),
                "eps_g_floor": floor.get("eps_g", math.nan),
                "eps_a_floor": floor.get("eps_a", math.nan),
                "eps_g_spread": spread.get("eps_g", math.nan),
                "eps_a_spread": spread.get("eps_a", math.nan),
                "eps_g_excess": excess.get("eps_g", math.nan),
                "eps_a_excess": excess.get("eps_a", math.nan),
                "D_cg": d_cg,
                "D_fg": d_fg,
                "D_ratio": d_cg / d_fg if d_fg > 0 else math.nan,
                "force_rmse": force_rmse.get((name, label), math.nan),
                "force_rmse_oracle": force_oracle.get(label, math.nan),
            })
    table = pd.DataFrame(rows, columns=[c for c in COLUMNS if "_ratio_" not in c])
    references = {
        "oracle": [name for name, spec in models.items() if spec["kind"] == "fm_oracle"],
        "fm_ref": [name for name, spec in models.items() if spec["kind"] == "fm_ref" and "refined_from" not in spec],
    }
    for suffix, names in references.items():
        if len(names) > 1:
            raise ValueError(f"the ratios need one reference model, got {names} for {suffix}")
        reference = table[table["model"].isin(names)].set_index("T_K")
        for eps in ("eps_g", "eps_a"):
            table[f"{eps}_ratio_{suffix}"] = table[eps] / table["T_K"].map(reference[eps]).astype(float)
    return table.sort_values(["model", "T_K"], ignore_index=True)


def write_transferability(table, tsv_path, json_path):
    """Write the table as TSV (units in the header comment) and as JSON {"units", "records"}.

    NaN becomes null in the JSON so that strict parsers read it.
    """
    comment = "Transferability of CG models across temperature (METHOD.md). Units:\n" + "\n".join(
        f"{name}: {unit}" for name, unit in UNITS.items()
    )
    io.write_table(tsv_path, table, comment=comment)
    records = [
        {key: (None if isinstance(value, float) and math.isnan(value) else value) for key, value in record.items()}
        for record in table.to_dict(orient="records")
    ]
    io.write_json(json_path, {"units": UNITS, "records": records})


def read_transferability(json_path):
    """The table back from its JSON (null -> NaN), columns in the order of :data:`COLUMNS`."""
    document = json.loads(Path(json_path).read_text())  # written with sorted keys
    columns = [c for c in COLUMNS if c in document["units"]] + [c for c in document["units"] if c not in COLUMNS]
    table = pd.DataFrame(document["records"], columns=columns)
    numeric = [c for c in columns if c not in ("model", "kind", "trained_at", "trained_here", "cg_run", "stable")]
    return table.astype({c: float for c in numeric})
