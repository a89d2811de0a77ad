"""Friction laws of CG Langevin dynamics: gamma(T) from T0 data (docs/dynamics.md, METHOD.md "CG dynamics").

A CG bead moved by the mean force F(R; beta) alone diffuses far too fast: the FG degrees of freedom
that were integrated out act as friction and noise. Langevin dynamics adds them back with one
friction gamma (1/ps). In the overdamped regime of one-bead water (gamma about 26/ps at 300 K)
D_CG is close to k_B T / (m (gamma + gamma_int(T))), so the temperature law of gamma sets D_CG(T).

Laws (``cgmd.friction_law`` in the config; each states what it uses):

- ``constant``: gamma(T) = gamma(T0), fitted so that D_CG(T0) = D_FG(T0). The baseline.
- ``oracle``: gamma(T) fitted at each T so that D_CG(T) = D_FG(T). Uses FG data at every T: the
  ceiling, not a prediction.
- ``entropy``: excess-entropy (Rosenfeld) scaling of the FG diffusion from T0 data alone,
  D*(T) = D rho^(1/3) (m / k_B T)^(1/2) = A exp(alpha s_ex(T) / k_B) at fixed density, so
  D_pred(T) = D_FG(T0) (T / T0)^(1/2) exp(alpha [s_ex(T) - s_ex(T0)] / k_B), with
  s_ex(T) - s_ex(T0) = integral_{T0}^{T} c_v,ex(T') / T' dT' (constant volume) and c_v,ex(T0) =
  Var(u) / (N k_B T0^2) from the FG potential-energy fluctuations at T0 (the thermal response of
  the energy); c_v,ex(T) = c_v,ex(T0) (T / T0)^(-2/5) (Rosenfeld-Tarazona) or constant. gamma(T)
  is then fitted at T so that D_CG(T) = D_pred(T).
- ``rescaling``: a constant dynamical rescaling factor. The CG model's own friction gamma_int(T)
  (the caging by its mean force, the intercept of the 1/D line: D_0(T) = k_B T / (m gamma_int(T)))
  carries the temperature dependence: D_pred(T) = D_FG(T0) D_0(T) / D_0(T0), and gamma(T) is read off
  the line at T (were its slope m / (k_B T), that would be gamma(T0) gamma_int(T) / gamma_int(T0)).
  Uses D_FG(T0) and the CG model at every T.
- ``force_acf``: gamma from the autocorrelation of the FG force fluctuation about the mean force,
  dF = f - F(R), at T0 (Kirkwood / Mori-Zwanzig in the Markovian limit):
  gamma = beta / (3 m) max_t integral_0^t <dF(0) . dF(s)> ds, t up to a maximum lag (the plateau
  of the running integral), held constant at every T (a static thermal response does not give the
  temperature dependence of a time correlation).

Every estimator here is a plain function of arrays (nm, ps, amu, kJ/mol, K).
"""

import numpy as np

from thermocg.units import KB

LAWS = ("constant", "oracle", "entropy", "rescaling", "force_acf")
#: the laws whose gamma(T) needs the 1/D-vs-gamma line of trial runs at every temperature
PER_TEMPERATURE_LAWS = ("oracle", "entropy", "rescaling")
#: the laws whose gamma at T0 is the constant law's, the friction at which the T0 line gives D_FG(T0),
#: to the last bit: there the oracle aims at D_FG(T0), the entropy law predicts D_FG(T0) times
#: exactly 1 (no entropy change) and the rescaling law D_FG(T0) times gamma_int(T0) / gamma_int(T0)
#: = 1. Their dynamics at T0 is one run.
SAME_AS_CONSTANT_AT_T0 = ("constant", "oracle", "entropy", "rescaling")
MINIMUM_FRICTION = 0.01  # 1/ps: below this the thermostat would no longer hold the temperature


# --- time correlation functions ---------------------------------------------------------------------
def autocorrelation(x, n_lags=None):
    """<x(0) . x(t)> averaged over time origins and over the leading axes after time.

    x: (F, ...) with time first; the dot product runs over the last axis (components) and the
    average over every other axis (particles). Returns (n_lags,) with lag 0 first (FFT, unbiased:
    each lag divides by its own number of origins).
    """
    x = np.asarray(x, dtype=np.float64)
    n = x.shape[0]
    n_lags = n if n_lags is None else min(int(n_lags), n)
    flat = x.reshape(n, -1, x.shape[-1])
    spectrum = np.fft.rfft(flat, n=2 * n, axis=0)
    correlation = np.fft.irfft(spectrum * spectrum.conj(), n=2 * n, axis=0)[:n_lags]
    return correlation.sum(axis=2).mean(axis=1) / (n - np.arange(n_lags))


def running_integral(c, dt):
    """Trapezoid integral_0^t c(s) ds at each lag t = k dt (0 at lag 0 is replaced by c(0) dt / 2,
    the weight of lag 0 in every later value: white noise then integrates to its strength)."""
    c = np.asarray(c, dtype=np.float64)
    integral = np.concatenate([[0.0], np.cumsum(0.5 * (c[1:] + c[:-1]) * dt)])
    integral[0] = 0.5 * c[0] * dt
    return integral


# --- force autocorrelation law ----------------------------------------------------------------------
def friction_from_force_autocorrelation(fluctuation, dt, temperature, mass, t_max=1.0, n_blocks=5):
    """gamma (1/ps) from the force fluctuation about the mean force, with a block standard error.

    fluctuation (F, N, 3) kJ/mol/nm: f - F(R) on each bead, frames dt ps apart; mass in amu.
    gamma(t) = beta / (3 m) integral_0^t <dF(0) . dF(s)> ds; returned where the running integral is
    largest within t_max ps (the plateau: in the true dynamics the integral decays to 0 at
    long times, since the bead's own momentum change is bounded, so its maximum is the estimate).
    The error is the spread over ``n_blocks`` time blocks, each evaluated at the same lag.
    """
    fluctuation = np.asarray(fluctuation, dtype=np.float64)
    n_lags = max(2, min(int(round(t_max / dt)) + 1, fluctuation.shape[0] // 2))
    scale = 1.0 / (3.0 * KB * temperature * mass)  # beta / (3 m); autocorrelation() sums the components
    c = autocorrelation(fluctuation, n_lags)
    running = running_integral(c, dt) * scale
    peak = int(np.argmax(running))
    n_blocks = max(2, min(n_blocks, fluctuation.shape[0] // (peak + 2)))  # each block holds the plateau lag
    blocks = np.array_split(np.arange(fluctuation.shape[0]), n_blocks)
    per_block = []
    for block in blocks:
        if len(block) > peak + 1:
            cb = autocorrelation(fluctuation[block], peak + 1)
            per_block.append(running_integral(cb, dt)[peak] * scale)
    error = float(np.std(per_block, ddof=1) / np.sqrt(len(per_block))) if len(per_block) > 1 else float("nan")
    return {
        "friction_per_ps": float(running[peak]),
        "error_per_ps": error,
        "plateau_lag_ps": float(peak * dt),
        "lag_ps": np.arange(n_lags) * dt,
        "correlation": c,  # <dF(0) . dF(t)>, (kJ/mol/nm)^2
        "running_friction_per_ps": running,
    }


# --- excess-entropy law -------------------------------------------------------------------------------
def excess_heat_capacity(potential_energy, n_molecules, temperature, n_blocks=5):
    """c_v,ex / k_B per molecule from the potential-energy fluctuation: Var(u) / (N (k_B T)^2),
    with a block standard error (blocks of consecutive frames)."""
    u = np.asarray(potential_energy, dtype=np.float64)
    kt = KB * temperature
    value = u.var(ddof=1) / (n_molecules * kt**2)
    blocks = [b for b in np.array_split(u, n_blocks) if len(b) > 1]
    per_block = np.array([b.var(ddof=1) / (n_molecules * kt**2) for b in blocks])
    error = per_block.std(ddof=1) / np.sqrt(len(per_block)) if len(per_block) > 1 else float("nan")
    return float(value), float(error)


def excess_entropy_change(temperature, reference_temperature, heat_capacity, form="rosenfeld_tarazona"):
    """[s_ex(T) - s_ex(T0)] / k_B per molecule at constant volume from c_v,ex(T0) / k_B.

    ds = c_v dT / T. ``form`` "constant": c_v,ex(T) = c_v,ex(T0), Delta s = c ln(T/T0);
    "rosenfeld_tarazona": c_v,ex(T) = c_v,ex(T0) (T/T0)^(-2/5) (u_ex ~ T^(3/5) in dense fluids),
    Delta s = (5/2) c [1 - (T/T0)^(-2/5)].
    """
    ratio = np.asarray(temperature, dtype=np.float64) / float(reference_temperature)
    if form == "constant":
        return heat_capacity * np.log(ratio)
    if form == "rosenfeld_tarazona":
        return 2.5 * heat_capacity * (1.0 - ratio ** (-0.4))
    raise ValueError(f"unknown heat-capacity form {form!r}: constant or rosenfeld_tarazona")


def entropy_scaled_diffusion(temperature, reference_temperature, reference_diffusion, heat_capacity, alpha=0.8,
                             form="rosenfeld_tarazona"):
    """Predicted D_FG(T) (units of ``reference_diffusion``) by excess-entropy scaling at fixed density."""
    delta_s = excess_entropy_change(temperature, reference_temperature, heat_capacity, form)
    ratio = np.asarray(temperature, dtype=np.float64) / float(reference_temperature)
    return reference_diffusion * np.sqrt(ratio) * np.exp(alpha * delta_s)


# --- per-temperature fit from the 1/D line -------------------------------------------------------------
def _inverse_diffusion_line(trials):
    """(gamma_0, D_0, slope) of the line 1/D = 1/D_0 + slope (gamma - gamma_0) through two trial runs,
    [{"friction_per_ps", "D_nm2_per_ps"}, ...] at one temperature, from the lower friction's run."""
    (g0, d0), (g1, d1) = sorted((t["friction_per_ps"], t["D_nm2_per_ps"]) for t in trials)
    return g0, d0, (1.0 / d1 - 1.0 / d0) / (g1 - g0)


def friction_for_diffusion(trials, target_diffusion, minimum=MINIMUM_FRICTION):
    """gamma (1/ps) at which the line 1/D = a + b gamma through two trial runs gives ``target``.

    trials: [{"friction_per_ps", "D_nm2_per_ps"}, ...] (two runs at one temperature). D_CG ~
    k_B T / (m (gamma + gamma_int)) makes 1/D close to linear in gamma. Returns (gamma, fitted
    value before the floor ``minimum``).
    """
    g0, d0, slope = _inverse_diffusion_line(trials)
    if slope <= 0:
        d1 = max(trials, key=lambda t: t["friction_per_ps"])
        raise RuntimeError(f"1/D does not grow with friction ({d0:.4g} at {g0:g}/ps, {d1['D_nm2_per_ps']:.4g} at "
                           f"{d1['friction_per_ps']:g}/ps): trial runs too short or too noisy; lengthen "
                           "cgmd.friction_fit_time")
    gamma = g0 + (1.0 / target_diffusion - 1.0 / d0) / slope
    return float(max(gamma, minimum)), float(gamma)


def intrinsic_diffusion(trials):
    """D_0 = D at zero friction on the 1/D line (k_B T / (m gamma_int)): the model's own caging."""
    return diffusion_for_friction(trials, 0.0)


def diffusion_for_friction(trials, friction):
    """D on the 1/D line through two trial runs at this friction (the interpolation of the fit)."""
    g0, d0, slope = _inverse_diffusion_line(trials)
    return float(1.0 / (1.0 / d0 + slope * (friction - g0)))


# --- the dynamics table ----------------------------------------------------------------------------------
def dynamics_table(fg_summaries, cg_summaries):
    """One row per (model, law, T): D_FG, D_CG with their errors, the ratio with its error, gamma.

    fg_summaries: rule dynamics_fg summaries; cg_summaries: rule dynamics_cg summaries (with model,
    law, stable, friction_per_ps and diffusion). A blown-up run has empty D columns; ``timestep_ps``
    is the step a run was made with (half the configured one where that blew up: thermocg.cgmd.simulate).
    """
    import pandas as pd

    fg = {f"{s['temperature_K']:g}": s["diffusion"] for s in fg_summaries}
    rows = []
    for s in cg_summaries:
        key = f"{s['temperature_K']:g}"
        d_fg, e_fg = fg[key]["D_nm2_per_ps"], fg[key]["D_error_nm2_per_ps"]
        row = {"model": s["model"], "law": s["law"], "temperature_K": s["temperature_K"],
               "gamma_per_ps": s.get("friction_per_ps"), "D_FG": d_fg, "D_FG_error": e_fg,
               "D_CG": None, "D_CG_error": None, "ratio": None, "ratio_error": None, "stable": s["stable"],
               "timestep_ps": s.get("timestep_ps")}
        if s["stable"]:
            d_cg, e_cg = s["diffusion"]["D_nm2_per_ps"], s["diffusion"]["D_error_nm2_per_ps"]
            ratio = d_cg / d_fg
            row.update(D_CG=d_cg, D_CG_error=e_cg, ratio=ratio,
                       ratio_error=abs(ratio) * float(np.hypot(e_cg / d_cg, e_fg / d_fg)))
        rows.append(row)
    return pd.DataFrame(rows).sort_values(["model", "law", "temperature_K"]).reset_index(drop=True)


def friction_law(law, temperatures, reference_temperature, lines, fg_diffusion, law_settings, fg_energy=None,
                 n_molecules=None, force_acf=None):
    """gamma(T) of a friction law (the module docstring's) for every temperature; a record.

    lines: a :func:`thermocg.cgmd.friction_lines` record (T0 at least; every T for the per-temperature laws);
    fg_diffusion: {T label: D_FG} (T0 only for the predictive laws: they must not see the others);
    fg_energy: the FG potential energies at T0 (law "entropy"); force_acf: a
    :func:`friction_from_force_autocorrelation` result (law "force_acf").
    ``friction_by_temperature`` maps T labels to gamma (None where the model blew up).
    """
    if law not in LAWS:
        raise ValueError(f"unknown friction law {law!r}: one of {LAWS}")
    t0 = f"{float(reference_temperature):g}"
    line0 = lines["lines"][t0]
    record = {"law": law, "reference_temperature_K": float(reference_temperature), "stable": line0["stable"]}
    if not line0["stable"]:
        return dict(record, friction_per_ps=None, friction_by_temperature={f"{float(t):g}": None for t in temperatures},
                    reason=f"blew up in the friction fit at T0: {line0['reason']}")
    gamma0, fitted0 = friction_for_diffusion(line0["trials"], fg_diffusion[t0])
    record.update(friction_T0_per_ps=gamma0, fitted_T0_per_ps=fitted0, target_D_T0_nm2_per_ps=float(fg_diffusion[t0]))
    by_temperature, targets = {}, {}
    if law == "force_acf":
        record["force_acf"] = {k: v for k, v in force_acf.items() if not isinstance(v, np.ndarray)}
    if law == "entropy":
        heat_capacity, error = excess_heat_capacity(fg_energy, n_molecules, reference_temperature)
        record["entropy"] = {"c_v_ex_per_kB": heat_capacity, "c_v_ex_error": error, **law_settings}
    for temperature in temperatures:
        key = f"{float(temperature):g}"
        if law == "constant":
            by_temperature[key] = gamma0
            continue
        if law == "force_acf":
            by_temperature[key] = max(float(force_acf["friction_per_ps"]), MINIMUM_FRICTION)
            continue
        line = lines["lines"][key]
        if law == "oracle":
            targets[key] = float(fg_diffusion[key])
        elif law == "rescaling":
            if not line["stable"]:
                by_temperature[key] = None
                continue
            targets[key] = float(fg_diffusion[t0]) * (intrinsic_diffusion(line["trials"])
                                                      / intrinsic_diffusion(line0["trials"]))
        else:  # entropy
            targets[key] = float(entropy_scaled_diffusion(
                float(temperature), reference_temperature, fg_diffusion[t0], heat_capacity,
                law_settings["alpha"], law_settings["heat_capacity_form"]))
        by_temperature[key] = (friction_for_diffusion(line["trials"], targets[key])[0]
                               if line["stable"] else None)
    record.update(friction_per_ps=by_temperature[t0] if t0 in by_temperature else gamma0,
                  friction_by_temperature=by_temperature)
    if targets:
        record["target_D_nm2_per_ps"] = targets
    record["intrinsic_D_nm2_per_ps"] = {key: intrinsic_diffusion(line["trials"])
                                        for key, line in lines["lines"].items() if line["stable"]}
    return record
