"""Figures. Every axis states its unit; every figure reads on its own."""

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # pipeline jobs have no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from thermocg import io, transfer  # noqa: E402
from thermocg.friction import MINIMUM_FRICTION  # noqa: E402


def _save(figure, png, pdf=None):
    for path in filter(None, (png, pdf)):
        io.atomic_write(path, lambda tmp, p=path: figure.savefig(tmp, dpi=150, format=Path(p).suffix[1:]))
    plt.close(figure)


def fg_observables(directories, png, pdf=None):
    """Reference observables across temperatures: RDFs, ADF, MSD, D(T) and <U>/N(T).

    ``directories`` hold one temperature's tables each (rdf_com.tsv, rdf_oo.tsv, adf.tsv,
    msd.tsv, summary.json) as written by the observables_fg rule.
    """
    summaries = [json.loads((Path(d) / "summary.json").read_text()) for d in directories]
    order = np.argsort([s["temperature_K"] for s in summaries])
    directories, summaries = [directories[i] for i in order], [summaries[i] for i in order]
    colours = list(_temperature_colours([s["temperature_K"] for s in summaries]).values())
    figure, axes = plt.subplots(2, 3, figsize=(14, 8), constrained_layout=True)
    for directory, summary, colour in zip(directories, summaries, colours):
        label = f"{summary['temperature_K']:g} K"
        for ax, name in ((axes[0, 0], "rdf_com"), (axes[0, 1], "rdf_oo")):
            table = io.read_table(Path(directory) / f"{name}.tsv")
            ax.plot(table["r_nm"], table["g"], color=colour, label=label)
        adf = io.read_table(Path(directory) / "adf.tsv")
        axes[0, 2].plot(adf["theta_deg"], adf["p_per_deg"], color=colour, label=label)
        msd = io.read_table(Path(directory) / "msd.tsv")
        axes[1, 0].plot(msd["lag_ps"], msd["msd_nm2"], color=colour, label=label)
        fit = summary["diffusion"]
        window = np.array([fit["fit_start_ps"], fit["fit_end_ps"]])
        axes[1, 0].plot(window, 6 * fit["D_nm2_per_ps"] * window + fit["intercept_nm2"], "k--", lw=0.8)
    temperatures = [s["temperature_K"] for s in summaries]
    axes[1, 1].plot(temperatures, [1e3 * s["diffusion"]["D_nm2_per_ps"] for s in summaries], "o-")
    energy = [s["potential_energy"] for s in summaries]
    axes[1, 2].errorbar(
        temperatures, [e["mean_per_molecule_kJ_per_mol"] for e in energy],
        yerr=[e["sem_kJ_per_mol"] / s["n_beads"] for e, s in zip(energy, summaries)], fmt="o-",
    )
    titles = [
        ("Centre-of-mass RDF", "r (nm)", "g(r)"),
        ("O-O RDF", "r (nm)", "g(r)"),
        ("ADF, first shell (COM)", "angle J-I-K (deg)", "p (1/deg)"),
        ("Bead MSD (dashed: Einstein fit)", "lag time (ps)", "MSD (nm$^2$)"),
        ("Self-diffusion coefficient", "T (K)", "D (10$^{-5}$ cm$^2$/s)"),
        ("Potential energy per molecule", "T (K)", "<U>/N (kJ/mol)"),
    ]
    for ax, (title, xlabel, ylabel) in zip(axes.flat, titles):
        ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    axes[0, 0].legend(title="FG water", fontsize=8)
    figure.suptitle(f"Atomistic (FG) reference water, {summaries[0]['n_beads']} molecules")
    _save(figure, png, pdf)


# ---------------------------------------------------------------------------------------------
# CG model evaluation figures. Each copes with missing inputs by drawing a "not run" panel, so
# that a partial pipeline still gives a complete (if emptier) report.

# Fixed colours: a model keeps its colour in every figure; *_diffsim shares its parent's colour
# and is drawn dashed.
MODEL_COLOURS = {
    "fm_ref": "tab:blue", "fm_oracle": "dimgray", "em": "tab:orange", "trf1": "tab:green",
    "trf1_beta": "tab:olive", "trf1_global": "tab:cyan", "trf2": "tab:red", "mtfm": "tab:purple",
}


def _temperature_colours(temperatures):
    """{T: colour}, cold to hot from dark blue to orange: every colour reads on white (coolwarm's
    middle, which 320 K used to get, is near-white)."""
    ordered = sorted(temperatures, key=float)
    return dict(zip(ordered, plt.cm.plasma(np.linspace(0.0, 0.75, len(ordered)))))


def _model_style(name):
    """(colour, linestyle) of a model name."""
    import zlib

    base = name.removesuffix("_diffsim")
    colour = MODEL_COLOURS.get(base, plt.cm.tab10(zlib.crc32(base.encode()) % 10))
    return colour, "--" if name.endswith("_diffsim") else "-"


def _not_run(ax, what, title=None):
    """Mark a panel whose inputs do not exist yet."""
    ax.text(0.5, 0.5, f"not run\n({what})", ha="center", va="center", transform=ax.transAxes,
            fontsize=12, color="0.4")
    ax.set(xticks=[], yticks=[])
    if title:
        ax.set_title(title)


def _read(table):
    """A DataFrame from a DataFrame, a TSV path, or None / a missing path (empty frame)."""
    import pandas as pd

    if table is None:
        return pd.DataFrame()
    if isinstance(table, (str, Path)):
        return io.read_table(table) if Path(table).exists() else pd.DataFrame()
    return table


def _has(table, *columns):
    return len(table) > 0 and all(c in table.columns for c in columns)


def _trained_mask(table):
    """True where the row's T_K is one of its model's training temperatures."""
    if "trained_here" in table.columns:
        return table["trained_here"].astype(bool).to_numpy()
    if "trained_at" not in table.columns:
        return np.zeros(len(table), dtype=bool)
    return np.array([
        any(np.isclose(float(t), T) for t in str(trained).split(",") if t.strip() not in ("", "nan"))
        for T, trained in zip(table["T_K"], table["trained_at"])
    ])


SPREAD_LABEL = "error bars: ±1 SD over CG run halves"


def _lines_by_model(ax, table, column, scale=1.0, spread=None):
    """One line per model of ``column`` against T_K; filled markers at training temperatures, and
    error bars from the ``spread`` column where the table has one."""
    trained = _trained_mask(table)
    for name in sorted(table["model"].unique()):
        rows = (table["model"] == name).to_numpy()
        part = table[rows].assign(_trained=trained[rows]).sort_values("T_K")
        colour, style = _model_style(name)
        ax.plot(part["T_K"], scale * part[column], style, color=colour, label=name)
        if _finite(part, spread):
            ax.errorbar(part["T_K"], scale * part[column], yerr=scale * part[spread].astype(float), fmt="none",
                        ecolor=colour, elinewidth=1, capsize=3, label="_spread")
        for is_trained, face in ((True, colour), (False, "white")):
            sel = part["_trained"] == is_trained
            ax.plot(part["T_K"][sel], scale * part[column][sel], "o", color=colour, mfc=face, ms=7)


def _log_y(ax):
    """Log y scale with plain numbers (0.5, 2, 10) rather than 5x10^-1 tick labels; a linear one where
    the data span less than a factor 3 (a log axis would have one labelled tick or none)."""
    from matplotlib.ticker import FormatStrFormatter, FuncFormatter, NullFormatter

    if 0 < ax.dataLim.y0 and ax.dataLim.y1 < 3 * ax.dataLim.y0:
        return
    ax.set_yscale("log")
    low, high = ax.get_ylim()
    ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))

    def two_and_five(value, _):
        mantissa = round(value / 10 ** np.floor(np.log10(value)))
        return f"{value:g}" if mantissa in (2, 5) else ""

    # within two decades the minor ticks need labels, but only 2 and 5: all of 2..9 overlap
    ax.yaxis.set_minor_formatter(FuncFormatter(two_and_five) if high / low < 100 else NullFormatter())


def _unstable_rows(table):
    if "stable" not in table.columns:
        return table.iloc[:0]
    return table[~table["stable"].astype(bool).to_numpy()]


def _mark_unstable(ax, table):
    """An x at the top edge of the panel for each (model, T) whose CG MD blew up (it has no value)."""
    for row in _unstable_rows(table).itertuples():
        _x_on_top(ax, row.T_K, _model_style(row.model)[0])


def _x_on_top(ax, temperature, colour):
    from matplotlib.transforms import blended_transform_factory

    ax.plot(temperature, 0.97, "x", color=colour, ms=9, mew=2, clip_on=False,
            transform=blended_transform_factory(ax.transData, ax.transAxes))


def _noise_floor(ax, table, column):
    """The FG noise floor per T (eps between two halves of the FG run) as a grey band from zero:
    differences between models inside it are not resolved."""
    floor = table.groupby("T_K")[column].first().astype(float).dropna().sort_index()
    if len(floor):
        ax.fill_between(floor.index, 0, floor.to_numpy(), color="0.85", zorder=0, label="FG noise floor")
        ax.plot(floor.index, floor.to_numpy(), color="0.5", lw=1, ls="--", zorder=0)
        ax.set_ylim(bottom=0)


def _blew_up_handle():
    """The legend entry of :func:`_mark_unstable`'s x."""
    from matplotlib.lines import Line2D

    return Line2D([], [], marker="x", color="k", mew=2, ls="", label="CG MD blew up (no value)")


def _legend_with_markers(ax, unstable=False, outside=False):
    """The panel's legend plus entries that explain filled and open markers (x: blew up; error bars)."""
    from matplotlib.container import ErrorbarContainer
    from matplotlib.lines import Line2D

    handles, _ = ax.get_legend_handles_labels()
    handles += [
        Line2D([], [], marker="o", color="k", ls="", label="trained at this T"),
        Line2D([], [], marker="o", color="k", mfc="white", ls="", label="not trained at this T"),
    ]
    if unstable:
        handles.append(_blew_up_handle())
    if any(isinstance(c, ErrorbarContainer) for c in ax.containers):
        handles.append(ax.errorbar([], [], yerr=[], fmt="none", ecolor="k", capsize=3, label=SPREAD_LABEL))
    if outside:  # beside the panels, where it covers no curve
        ax.figure.legend(handles=handles, fontsize=8, loc="outside right upper")
    else:
        ax.legend(handles=handles, fontsize=8)


def rdf_adf_overlays(fg_dir, cg_dir, models, temperatures, png, pdf=None, shared_runs=None):
    """RDF (top row) and ADF (bottom row) of FG (black) and every model, one column per T.

    Directories as in :mod:`thermocg.transfer` (``shared_runs`` as there); ``models`` is an
    iterable of model names; ``temperatures`` in K or as path labels.
    """
    from thermocg.config import temperature_label

    labels = [temperature_label(t) for t in temperatures] or ["none"]
    figure, axes = plt.subplots(2, len(labels), figsize=(4 * len(labels) + 1, 7), squeeze=False,
                                constrained_layout=True)
    for column, label in enumerate(labels):
        ax_rdf, ax_adf = axes[0, column], axes[1, column]
        fg = Path(fg_dir) / f"T{label}"
        if not (fg / "rdf_com.tsv").exists() or not (fg / "adf.tsv").exists():
            _not_run(ax_rdf, "no FG observables", f"{label} K: COM RDF")
            _not_run(ax_adf, "no FG observables", f"{label} K: first-shell ADF")
            continue
        for ax, name, x, y in ((ax_rdf, "rdf_com", "r_nm", "g"), (ax_adf, "adf", "theta_deg", "p_per_deg")):
            table = io.read_table(fg / f"{name}.tsv")
            ax.plot(table[x], table[y], color="k", lw=2.5, label="FG (atomistic)")
            for model in models:
                path = transfer.cg_run_directory(cg_dir, model, label, shared_runs) / f"{name}.tsv"
                if path.exists():
                    table = io.read_table(path)
                    colour, style = _model_style(model)
                    # an empty table: that run blew up (thermocg.cgmd)
                    label_text = model if len(table) else f"{model} (blew up)"
                    ax.plot(table[x], table[y], style, color=colour, lw=1.2, label=label_text)
        size = ""
        summary = fg / "summary.json"
        if summary.exists():
            size = f" ({json.loads(summary.read_text()).get('n_beads', '?')} beads)"
        ax_rdf.set(title=f"{label} K: COM RDF{size}", xlabel="r (nm)", ylabel="g(r)", xlim=(0.2, None))
        ax_adf.set(title=f"{label} K: first-shell ADF", xlabel="angle J-I-K (deg)", ylabel="p (1/deg)")
        if column == 0:  # one legend beside the panels, where it covers no curve
            figure.legend(handles=ax_rdf.get_legend_handles_labels()[0], fontsize=8, loc="outside right upper")
    figure.suptitle("Structure of CG models against the atomistic reference, per temperature")
    _save(figure, png, pdf)


def transferability(table, png, pdf=None):
    """Headline figure: eps_g and eps_a against T per model (top), their ratio to fm_oracle
    (middle) and what is left of them with the sampling noise taken out (bottom, ``eps_*_excess``).

    ``table``: :func:`thermocg.transfer.transferability_table` output (DataFrame or TSV path).
    Filled markers: the model was trained at that temperature; open: extrapolation. The grey band
    in the top row is the FG noise floor (``eps_*_floor``), and error bars the spread of eps over the two
    halves of each CG run (``eps_*_spread``), where the table has them.
    """
    table = _read(table)
    figure, axes = plt.subplots(3, 2, figsize=(12, 12.5), constrained_layout=True)
    panels = [
        (axes[0, 0], "eps_g", "RDF error", r"$\epsilon_g$ (dimensionless)"),
        (axes[0, 1], "eps_a", "ADF error", r"$\epsilon_a$ (1/deg)"),
        (axes[1, 0], "eps_g_ratio_oracle", "RDF error relative to fm_oracle", r"$\epsilon_g / \epsilon_g^{oracle}$"),
        (axes[1, 1], "eps_a_ratio_oracle", "ADF error relative to fm_oracle", r"$\epsilon_a / \epsilon_a^{oracle}$"),
        (axes[2, 0], "eps_g_excess", "RDF error beyond the sampling noise", r"$\epsilon_g$ excess (dimensionless)"),
        (axes[2, 1], "eps_a_excess", "ADF error beyond the sampling noise", r"$\epsilon_a$ excess (1/deg)"),
    ]
    missing = {"ratio_oracle": "no fm_oracle rows", "excess": "no halves of the runs"}
    for ax, column, title, ylabel in panels:
        ratio, excess = column.endswith("_ratio_oracle"), column.endswith("_excess")
        if not _has(table, "model", "T_K", column) or not np.isfinite(table[column].astype(float)).any():
            _not_run(ax, next((why for suffix, why in missing.items() if column.endswith(suffix)), "no CG observables"), title)
            continue
        if excess:  # an estimate of the systematic error: zero is a perfect model, below zero within the noise
            _lines_by_model(ax, table[np.isfinite(table[column].astype(float))], column)
            _mark_unstable(ax, table)
            ax.axhline(0.0, color="k", lw=0.8, ls=":")
            ax.set(title=title, xlabel="T (K)", ylabel=ylabel)
            continue
        base = column.removesuffix("_ratio_oracle")
        spread = f"{column}_spread"
        if ratio and _has(table, f"{base}_spread"):  # the model's own spread, scaled as its ratio (the oracle's left out)
            table = table.assign(**{spread: table[f"{base}_spread"] * table[column] / table[base]})
        _lines_by_model(ax, table[np.isfinite(table[column].astype(float))], column, spread=spread)
        _mark_unstable(ax, table)
        if not ratio and _has(table, f"{column}_floor"):
            _noise_floor(ax, table, f"{column}_floor")
        if ratio:
            ax.axhline(1.0, color="k", lw=0.8, ls=":")
            _log_y(ax)
        ax.set(title=title, xlabel="T (K)", ylabel=ylabel)
    first = next((ax for ax in axes.flat if ax.get_lines()), None)
    if first is not None:
        _legend_with_markers(first, unstable=len(_unstable_rows(table)) > 0, outside=True)
    figure.suptitle("Temperature transferability of CG models (lower is better)")
    _save(figure, png, pdf)


def force_errors(forces_table, png, pdf=None):
    """Force RMSE against T per model beside the fm_oracle floor (dashed black), and their ratio.

    ``forces_table``: results/metrics/forces.tsv (DataFrame or path).
    """
    table = _read(forces_table)
    figure, (ax_rmse, ax_ratio) = plt.subplots(1, 2, figsize=(12, 4.8), constrained_layout=True)
    title_rmse, title_ratio = "Force RMSE on held-out frames", "Force RMSE relative to fm_oracle"
    if not _has(table, "model", "kind", "T_K", "force_rmse"):
        _not_run(ax_rmse, "no force metrics", title_rmse)
        _not_run(ax_ratio, "no force metrics", title_ratio)
    else:
        models = table[table["kind"] != "fm_oracle"]
        oracle = table.groupby("T_K")["force_rmse_oracle"].first().dropna() if "force_rmse_oracle" in table else []
        _lines_by_model(ax_rmse, models, "force_rmse")
        if len(oracle):
            ax_rmse.plot(oracle.index, oracle.values, "k--", lw=2, label="fm_oracle (fitted at each T)")
        ax_rmse.set(title=title_rmse, xlabel="T (K)", ylabel="force RMSE (kJ/(mol nm))")
        _legend_with_markers(ax_rmse, outside=True)  # one legend for both panels, covering neither
        if len(oracle) and len(models):
            ratio = models.assign(ratio=models["force_rmse"] / models["T_K"].map(oracle))
            _lines_by_model(ax_ratio, ratio[np.isfinite(ratio["ratio"])], "ratio")
            ax_ratio.axhline(1.0, color="k", ls="--", lw=1)
            ax_ratio.set(title=title_ratio, xlabel="T (K)", ylabel="RMSE / RMSE of fm_oracle")
        else:
            _not_run(ax_ratio, "no fm_oracle RMSE", title_ratio)
    figure.suptitle("Mean-force accuracy across temperature (oracle = one force-matched model per T)")
    _save(figure, png, pdf)


ESTIMATOR_STYLE = {  # colour, hatch, legend text
    "local": ("tab:green", "//", "local energy target"),
    "global": ("tab:orange", "..", "global energy target"),
    "": ("tab:gray", "", "no thermal-response target (em, mtfm, ...)"),
}


def _finite(table, column):
    """True if ``column`` exists and has at least one finite value."""
    return _has(table, column) and np.isfinite(table[column].astype(float)).any()


def _response_bars(ax, x, values, styles, errors=None):
    """One bar per model, coloured by estimator, labelled with its value beyond its error bar (NaN
    bars left out)."""
    ax.bar(x, values, yerr=errors, capsize=4 if errors is not None else 0, color=[s[0] for s in styles],
           hatch=[s[1] for s in styles], edgecolor="k")
    reach = np.nan_to_num(np.asarray(errors, dtype=float)) if errors is not None else np.zeros(len(x))
    for xi, value, extra in zip(x, values, reach):
        if np.isfinite(value):
            tip = value + extra if value >= 0 else value - extra
            ax.annotate(f"{value:.3g}", (xi, tip), xytext=(0, 2 if value >= 0 else -2), textcoords="offset points",
                        ha="center", va="bottom" if value >= 0 else "top", fontsize=8)
    # room for the labels beyond the longest error bars, on both sides of zero (bars pin an axis
    # limit at zero, which margins alone would keep and so cut the label of a zero bar)
    values = np.asarray(values, dtype=float)
    low, high = min(0.0, np.nanmin(values - reach)), max(0.0, np.nanmax(values + reach))
    pad = 0.12 * (high - low) or 1.0
    ax.set_ylim(low - pad if low < 0 else 0.0, high + pad)


def _power_of_thousand(ax, values):
    """Tick labels in units of 10^3k where the values are large: the unit goes into the axis label
    (returned, e.g. '10$^{6}$ ') instead of a '1e6' above the axis, where it meets the title."""
    from matplotlib.ticker import FuncFormatter

    largest = np.nanmax(np.abs(np.asarray(values, dtype=float)))
    power = int(3 * np.floor(np.log10(largest) / 3)) if largest > 0 else 0
    if abs(power) < 6:  # plain numbers read well up to 999999 (matplotlib's own limit) and down to 1e-5
        return ""
    ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value / 10**power:g}"))
    return f"10$^{{{power}}}$ "


def thermal_response(response_table, png, pdf=None):
    """Learned dF/dbeta at T0 per model, by the held-out score (METHOD.md, "Judging a thermal
    response"): the score with its +-1 SE error bar, and each model's gap below the best score,
    paired on the same frames, with its own +-1 SE (the y1 noise both see cancels, so the gap
    ranks models whose scores' error bars overlap).

    ``response_table``: results/metrics/thermal_response.tsv (DataFrame or path). Bars are
    coloured and hatched by the estimator of the thermal-response target. Without scores (no T0
    energies or centring model) the panels say 'not run'.
    """
    from matplotlib.patches import Patch

    table = _read(response_table)
    figure, (ax_score, ax_gap) = plt.subplots(1, 2, figsize=(13, 4.8), constrained_layout=True)
    title_score = "Held-out score (higher is better, 0 = predicting zero)"
    title_gap = "Below the best score, paired (0 = the best; lower is better)"
    figure.suptitle("Thermal response dF/d$\\beta$ at T0")
    if not _has(table, "model") or not _finite(table, "score"):
        why = "no thermal response rows" if not _has(table, "model") else "no T0 per-bead energies or centring model"
        for ax, title in ((ax_score, title_score), (ax_gap, title_gap)):
            _not_run(ax, why, title)
        _save(figure, png, pdf)
        return
    estimator = table.get("estimator")
    estimator = estimator.fillna("").astype(str) if estimator is not None else [""] * len(table)
    styles = [ESTIMATOR_STYLE.get(e, ESTIMATOR_STYLE[""]) for e in estimator]
    x = np.arange(len(table))
    row = table[np.isfinite(table["score"].astype(float))].iloc[0]
    unit = "kJ$^4$ mol$^{-4}$ nm$^{-2}$"
    for ax, column, title, ylabel in (
        (ax_score, "score", title_score, "mean |y1|$^2$ - mean |y1 - dF/d$\\beta$|$^2$"),
        (ax_gap, "score_below_best", title_gap, "best score - score"),
    ):
        errors = table.get(f"{column}_se")
        _response_bars(ax, x, table[column].astype(float), styles, errors)
        ax.axhline(0.0, color="k", lw=0.8)
        power = _power_of_thousand(ax, table[column].abs() + (errors if errors is not None else 0.0))
        ax.set(title=title, ylabel=f"{ylabel} ({power}{unit})")
        ax.set_xlim(-0.6, len(x) - 0.4)  # every model's place, also where its bar is missing
        ax.set_xticks(x, table["model"], rotation=30, ha="right")
        ax.set_xlabel("model")
    figure.suptitle(f"Thermal response dF/d$\\beta$ at T0: local y1 within {row['score_r_loc_nm']:g} nm on "
                    f"{row['n_frames']:g} held-out T0 frames, centred with {row['centring_model']}; bars ±1 SE over "
                    "blocks of frames")
    # below the panels, where it covers no bar: the estimators
    used = [key for key in ESTIMATOR_STYLE if key in set(estimator)]
    handles = [Patch(facecolor=ESTIMATOR_STYLE[k][0], hatch=ESTIMATOR_STYLE[k][1], edgecolor="k",
                     label=ESTIMATOR_STYLE[k][2]) for k in used]
    figure.legend(handles=handles, loc="outside lower center", ncol=len(handles), fontsize=9)
    _save(figure, png, pdf)


def radial_response(radial_table, png, pdf=None):
    """Radial profile of the thermal response (thermocg.metrics.radial_response): d/dbeta of the
    pair-projected force profile between T- and T+ for FG (black, band +-2 SE) and every model on
    the same FG frames, and each model's difference to FG (grey band: +-2 SE of that difference).
    """
    from thermocg.metrics import radial_summary

    table = _read(radial_table)
    figure, (ax_profile, ax_error) = plt.subplots(1, 2, figsize=(14, 5), constrained_layout=True)
    unit = "kJ$^2$ mol$^{-2}$ nm$^{-1}$"
    figure.suptitle("Radial thermal response: d/d$\\beta$ of the pair-projected force")
    if not _has(table, "model") or table.empty:
        for ax in (ax_profile, ax_error):
            _not_run(ax, "no sampled temperature on both sides of T0", "Radial thermal response")
        _save(figure, png, pdf)
        return
    first = table.iloc[0]
    figure.suptitle(f"Radial thermal response: d/d$\\beta$ of the pair-projected force between {first['T_minus_K']:g} "
                    f"and {first['T_plus_K']:g} K (finite difference), models on the FG frames of both")
    truth = table[table["model"] == "FG"]
    ax_profile.fill_between(truth["r_nm"], truth["response"] - 2 * truth["error_se"],
                            truth["response"] + 2 * truth["error_se"], color="0.75")
    ax_profile.plot(truth["r_nm"], truth["response"], color="k", lw=2, label="FG (truth), band ±2 SE")
    summary = radial_summary(table).set_index("model")
    spread = table[table["model"] != "FG"].groupby("r_nm")["error_se"].max()
    ax_error.fill_between(spread.index, -2 * spread, 2 * spread, color="0.8", label="±2 SE of the difference (largest over the models)")
    for name, rows in table[table["model"] != "FG"].groupby("model", sort=False):
        colour, style = _model_style(name)
        seen = {float(t) for t in str(rows["trained_at"].iloc[0]).split(",") if t} & {first["T_minus_K"], first["T_plus_K"]}
        trained = f", trained on {' and '.join(f'{t:g}' for t in sorted(seen))} K frames" if seen else ""
        ax_profile.plot(rows["r_nm"], rows["response"], color=colour, ls=style, label=name)
        ax_error.plot(rows["r_nm"], rows["error"], color=colour, ls=style,
                      label=f"{name}: rms {summary.loc[name, 'radial_rmse']:.3g} "
                            f"(noise {summary.loc[name, 'radial_rmse_noise']:.2g}){trained}")
    ax_error.axhline(0.0, color="k", lw=0.8)
    ax_profile.set(xlabel="r (nm)", ylabel=f"dP/d$\\beta$ ({unit})", title="Pair-projected thermal response")
    ax_error.set(xlabel="r (nm)", ylabel=f"model - FG ({unit})", title="Difference to FG (0 = the true response)")
    ax_profile.legend(fontsize=8)
    ax_error.legend(fontsize=8)
    _save(figure, png, pdf)


def diffusion(table, png, pdf=None):
    """D(T) of FG (black) and each CG model, and D_CG/D_FG; from the transferability table."""
    table = _read(table)
    figure, (ax_d, ax_ratio) = plt.subplots(1, 2, figsize=(12, 4.8), constrained_layout=True)
    title_d, title_ratio = "Self-diffusion coefficient", "CG over FG diffusion"
    if not _has(table, "model", "T_K", "D_cg", "D_fg") or not np.isfinite(table["D_cg"].astype(float)).any():
        _not_run(ax_d, "no CG diffusion", title_d)
        _not_run(ax_ratio, "no CG diffusion", title_ratio)
    else:
        scale = 1e3  # nm^2/ps -> 1e-5 cm^2/s
        fg = table.groupby("T_K")["D_fg"].first().dropna()
        ax_d.plot(fg.index, scale * fg.values, "k-s", lw=2.5, label="FG (atomistic)")
        cg = table[np.isfinite(table["D_cg"].astype(float))]
        _lines_by_model(ax_d, cg, "D_cg", scale)
        _mark_unstable(ax_d, table)
        ax_d.set(title=title_d, xlabel="T (K)", ylabel="D (10$^{-5}$ cm$^2$/s)")
        _legend_with_markers(ax_d, unstable=len(_unstable_rows(table)) > 0, outside=True)  # covers no curve
        ratio = cg.assign(D_ratio=cg["D_cg"] / cg["D_fg"])
        _lines_by_model(ax_ratio, ratio[np.isfinite(ratio["D_ratio"])], "D_ratio")
        _mark_unstable(ax_ratio, table)
        ax_ratio.axhline(1.0, color="k", ls="--", lw=1)
        ax_ratio.set(title=title_ratio, xlabel="T (K)", ylabel="D$_{CG}$ / D$_{FG}$")
    figure.suptitle("Dynamics: CG Langevin diffusion against the atomistic reference")
    _save(figure, png, pdf)


def diffsim_curves(curve_paths, table, png, pdf=None, lambda_adf=1.0):
    """DiffSim refinement: loss curves, and eps_g / eps_a of each model M before and after (M_diffsim).

    curve_paths: {model: loss_curve.tsv path} (missing files are skipped); the curve has
    columns iteration, loss and optionally loss_rdf_T<T>, loss_adf_T<T> per temperature (as
    thermocg.diffsim writes them; the ADF terms are drawn times ``lambda_adf``, so that the
    terms add up to the total) and averaged (the iterations whose parameters the refined model
    averages, shaded).
    table: the transferability table (DataFrame or path), rows of M and M_diffsim.
    """
    from matplotlib.ticker import MaxNLocator

    table = _read(table)
    figure, axes = plt.subplots(1, 3, figsize=(17, 4.8), constrained_layout=True)
    ax_loss = axes[0]
    curves = {m: io.read_table(p) for m, p in (curve_paths or {}).items() if p is not None and Path(p).exists()}
    if not curves:
        _not_run(ax_loss, "no DiffSim loss curve", "DiffSim loss")
    else:
        positive = True
        # per-temperature terms as thermocg.diffsim writes them: loss_rdf_T<T>, loss_adf_T<T>; the
        # temperature gives the colour and the term the line style, so that no two terms look alike
        term_style = {"rdf": "--", "adf": ":"}
        per_t = {m: [c for c in curve.columns if c.startswith(("loss_rdf_T", "loss_adf_T"))] for m, curve in curves.items()}
        colours = _temperature_colours({c.split("_T")[1] for columns in per_t.values() for c in columns})
        for model, curve in curves.items():
            colour, _ = _model_style(model)
            if "loss" in curve:
                ax_loss.plot(curve["iteration"], curve["loss"], color=colour, lw=2.5, label=f"{model}: total")
            for column in per_t[model]:
                term, temperature = column.removeprefix("loss_").split("_T")
                weight, note = (lambda_adf, f" (x lambda_adf = {lambda_adf:g})") if term == "adf" else (1.0, "")
                ax_loss.plot(curve["iteration"], weight * curve[column], ls=term_style[term], color=colours[temperature],
                             lw=1.5, label=f"{model}: {term.upper()} {temperature} K{note}")
            positive &= bool((curve[["loss", *per_t[model]]].to_numpy() > 0).all())
            if "averaged" in curve and curve["averaged"].any():  # the refined model is their mean
                averaged = curve.loc[curve["averaged"].astype(bool), "iteration"]
                ax_loss.axvspan(averaged.min() - 0.5, averaged.max() + 0.5, color=colour, alpha=0.12, lw=0,
                                label=f"{model}: kept the mean of these {len(averaged)} iterations")
        if positive:
            _log_y(ax_loss)
        ax_loss.set(title="DiffSim loss", xlabel="iteration", ylabel="loss (sum of squared g and p differences)")
        ax_loss.xaxis.set_major_locator(MaxNLocator(integer=True))
        # below the panel: inside, it would cover the total
        ax_loss.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2)
    pairs = []
    if _has(table, "model", "T_K", "eps_g"):
        names = set(table["model"])
        pairs = sorted(n.removesuffix("_diffsim") for n in names if n.endswith("_diffsim") and n.removesuffix("_diffsim") in names)
    for ax, column, ylabel in ((axes[1], "eps_g", r"$\epsilon_g$ (dimensionless)"), (axes[2], "eps_a", r"$\epsilon_a$ (1/deg)")):
        title = f"{ylabel.split()[0]}: before (solid), after (dashed)"
        if not pairs:
            _not_run(ax, "no model with a _diffsim counterpart", title)
            continue
        selected = table[table["model"].isin(pairs + [f"{p}_diffsim" for p in pairs])]
        _lines_by_model(ax, selected, column, spread=f"{column}_spread")
        _mark_unstable(ax, selected)
        if _has(table, f"{column}_floor"):
            _noise_floor(ax, table, f"{column}_floor")
        ax.set(title=title, xlabel="T (K)", ylabel=ylabel)
    if pairs:  # one legend beside the two panels, covering neither
        unstable = table[table["model"].isin(pairs + [f"{p}_diffsim" for p in pairs])]
        _legend_with_markers(axes[2], unstable=len(_unstable_rows(unstable)) > 0, outside=True)
    figure.suptitle("Differentiable-simulation refinement against the FG structure")
    _save(figure, png, pdf)


def learning_curves(curves, png, pdf=None):
    """How every model was fitted. Left: validation force loss against epoch of the networks
    (fm_ref, fm_oracle, mtfm), a star at the epoch kept. Right: the closed-form fits (em, trf1,
    trf2; thermocg.response): the fraction of each head's target variance that it explains on frames
    its fit did not see (cross-validated: 1 - MSE / MSE of "no term"; the targets are noise-dominated, so W1 and W2
    explain little even when right) against the ridge strength, with the standard error of its
    difference to "no term", a star at the ridge chosen (:func:`thermocg.response.solve_ridge`).

    ``curves``: {(model, T or None): learning_curve.tsv path or DataFrame} (fm_oracle: one curve per
    T). A curve with an ``epoch`` column is a network's, one with ``relative_ridge`` a closed-form
    fit's. A missing file is left out.
    """
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator

    figure, (ax_epochs, ax_ridge) = plt.subplots(1, 2, figsize=(14, 5), constrained_layout=True)
    title_epochs, title_ridge = "Networks: validation force loss", "Closed-form terms on fm_ref's network: choice of the ridge"
    tables = {key: _read(curve) for key, curve in curves.items()}
    tables = {key: table for key, table in sorted(tables.items(), key=lambda item: (item[0][0], float(item[0][1] or 0)))
              if len(table)}
    trained = {key: table for key, table in tables.items() if "epoch" in table.columns}
    closed_form = {key: table for key, table in tables.items() if "relative_ridge" in table.columns}
    # several curves of one model (fm_oracle, one per T) share its colour and differ in line style
    styles = ["-", "--", ":", "-.", (0, (5, 1, 1, 1, 1, 1))]
    counts = {}
    for (model, temperature), table in trained.items():
        colour, _ = _model_style(model)
        style = styles[counts.get(model, 0) % len(styles)]
        counts[model] = counts.get(model, 0) + 1
        label = f"{model} ({temperature} K)" if temperature else model
        if _finite(table, "validation_force"):
            best = table["validation_total"].astype(float).idxmin()
            ax_epochs.plot(table["epoch"], table["validation_force"], ls=style, color=colour, lw=1.5, label=label)
            ax_epochs.plot(table["epoch"][best], table["validation_force"][best], "*", color=colour, ms=11, mec="k", mew=0.5)
    head_styles = {"e": ":", "squared_residual": "-.", "W1": "-", "W2": "--", "W2 + 2 W1/beta0": "--"}
    for (model, _), table in closed_form.items():
        colour, _ = _model_style(model)
        for head, rows in table.groupby("head", sort=False):
            rows = rows[np.isfinite(rows["relative_ridge"].astype(float))]
            no_term = table[(table["head"] == head) & ~np.isfinite(table["relative_ridge"].astype(float))]
            if rows.empty or no_term.empty:
                continue
            reference = float(no_term["cross_validation_mse"].iloc[0])
            x, y = rows["relative_ridge"].astype(float), 1.0 - rows["cross_validation_mse"].astype(float) / reference
            ax_ridge.errorbar(x, y, yerr=rows["gain_se"].astype(float) / reference, color=colour,
                              ls=head_styles.get(head, "-"), lw=1.5, capsize=2, label=f"{model} {head}")
            chosen = table[(table["head"] == head) & table["chosen"].astype(bool)]
            if len(chosen) and np.isfinite(float(chosen["relative_ridge"].iloc[0])):
                ax_ridge.plot(chosen["relative_ridge"].astype(float),
                              1.0 - chosen["cross_validation_mse"].astype(float) / reference, "*", color=colour, ms=13,
                              mec="k", mew=0.5)
            else:  # "no term" was chosen: mark it at the strongest ridge's end of the axis
                ax_ridge.annotate(f"{head}: no term", (x.max(), float(y[x.idxmax()])), color=colour, fontsize=8,
                                  xytext=(4, 0), textcoords="offset points", va="center")
    if ax_epochs.lines:
        ax_epochs.set(title=title_epochs, xlabel="epoch", ylabel="relative MSE of the mean force")
        ax_epochs.xaxis.set_major_locator(MaxNLocator(integer=True))
    else:
        _not_run(ax_epochs, "no network was trained", title_epochs)
    if ax_ridge.lines or ax_ridge.containers:
        ax_ridge.axhline(0.0, color="0.5", lw=1, ls=":")
        ax_ridge.set_xscale("log")
        ax_ridge.set_yscale("symlog", linthresh=1e-5)  # e explains ~1, W1 and W2 ~1e-4
        ax_ridge.set(title=title_ridge, xlabel="ridge strength (relative to the mean diagonal of G$^T$G)",
                     ylabel="fraction of the target's variance explained\n(cross-validated)")
    else:
        _not_run(ax_ridge, "no closed-form fit", title_ridge)
    handles = ax_epochs.get_legend_handles_labels()[0] + ax_ridge.get_legend_handles_labels()[0]
    handles.append(Line2D([], [], marker="*", color="k", ms=11, ls="", label="kept: lowest loss (networks); least\n"
                          "cross-validated error, if 2 SE below no term (closed form)"))
    if trained or closed_form:
        figure.legend(handles=handles, loc="outside right upper", fontsize=8)
    figure.suptitle("Fitting: validation errors on held-out frames of the training temperatures")
    _save(figure, png, pdf)


def collect_timings(results_dir):
    """Costs of the pipeline's stages as a DataFrame (stage, value, unit, n_jobs).

    - FG MD speed: median ns/day over temperatures (fg/T*/sampling_stats.json).
    - CG MD speed per model: median over temperatures of each run's median ns/day (cgmd/<M>/T*/thermo.tsv).
    - Wall time of every benchmarked rule (benchmarks/**/<rule>.tsv, column s), summed over its
      jobs; jobs under benchmarks/models/<M>/ are reported per model ("fit <M>").
    """
    import pandas as pd

    results = Path(results_dir)
    rows = []
    fg = [json.loads(p.read_text()).get("ns_per_day") for p in sorted(results.glob("fg/T*/sampling_stats.json"))]
    fg = [speed for speed in fg if speed is not None]
    if fg:
        rows.append({"stage": "FG MD (OpenMM)", "value": float(np.median(fg)), "unit": "ns/day", "n_jobs": len(fg)})
    for model_dir in sorted(p for p in results.glob("cgmd/*") if p.is_dir()):
        thermo = [io.read_table(p) for p in sorted(model_dir.glob("T*/thermo.tsv"))]
        # the first row (step 0) of every thermo log has no speed yet: NaN
        speeds = [np.nanmedian(t["ns_per_day"]) for t in thermo if "ns_per_day" in t and t["ns_per_day"].notna().any()]
        if speeds:
            rows.append({"stage": f"CG MD {model_dir.name}", "value": float(np.median(speeds)), "unit": "ns/day",
                         "n_jobs": len(speeds)})
    seconds = {}
    benchmarks = results / "benchmarks"
    for path in sorted(benchmarks.glob("**/*.tsv")):
        parts = path.relative_to(benchmarks).parts
        stage = f"{path.stem} {parts[1]}" if parts[0] == "models" and len(parts) > 2 else path.stem
        wall = float(pd.read_csv(path, sep="\t")["s"].mean())  # mean over benchmark repeats
        total, n = seconds.get(stage, (0.0, 0))
        seconds[stage] = (total + wall, n + 1)
    for stage, (total, n) in seconds.items():
        rows.append({"stage": stage, "value": total, "unit": "s", "n_jobs": n})
    return pd.DataFrame(rows, columns=["stage", "value", "unit", "n_jobs"])


def timings(stages, png, pdf=None):
    """Horizontal bars of the stage costs from :func:`collect_timings`, one panel per unit."""
    stages = _read(stages)
    units = list(dict.fromkeys(stages["unit"])) if _has(stages, "stage", "value", "unit") else []
    figure, axes = plt.subplots(1, max(1, len(units)), figsize=(7 * max(1, len(units)), 0.9 + 0.35 * max(4, len(stages))),
                                squeeze=False, constrained_layout=True)
    if not units:
        _not_run(axes[0, 0], "no timings recorded", "Pipeline cost")
    for ax, unit in zip(axes[0], units):
        part = stages[stages["unit"] == unit].reset_index(drop=True)
        labels = [f"{s} ({n} jobs)" if n > 1 else s for s, n in zip(part["stage"], part.get("n_jobs", [1] * len(part)))]
        y = np.arange(len(part))
        ax.barh(y, part["value"], color="tab:blue" if unit == "s" else "tab:green")
        ax.set_yticks(y, labels, fontsize=8)
        ax.invert_yaxis()
        ax.margins(x=0.12)  # room for the value printed after each bar
        for yi, value in zip(y, part["value"]):
            ax.annotate(f" {value:,.0f}" if value >= 100 else f" {value:.3g}", (value, yi), va="center", fontsize=8)
        if unit == "s" and part["value"].max() > 100 * max(part["value"].min(), 1e-9):
            ax.set_xscale("log")  # seconds span orders of magnitude between rules
        what = "simulation speed (higher is faster)" if "/day" in unit else "wall time (summed over jobs)"
        ax.set(title=f"Pipeline cost: {what}", xlabel=f"{'speed' if '/day' in unit else 'time'} ({unit})",
               ylabel="stage")
    figure.suptitle("Where the pipeline's time goes")
    _save(figure, png, pdf)


def sweep(table, png, pdf=None):
    """Parameter sweep: the held-out score of dF/dbeta (+-1 SE), its gap below the best combination
    (paired, +-1 SE) and the force RMSE at T0, for every combination."""
    table = _read(table)
    labels = [
        f"trf{int(r.order)} {r.estimator}, r_loc {r.r_loc:g} nm, {int(r.n_training_frames)} frames"
        for r in table.itertuples()
    ]
    figure, axes = plt.subplots(1, 3, figsize=(15, 1.2 + 0.5 * len(table)), sharey=True, constrained_layout=True)
    colours = ["tab:blue" if e == "local" else "tab:orange" for e in table["estimator"]]
    unit = "kJ$^4$ mol$^{-4}$ nm$^{-2}$"
    for ax, column, title, xlabel in (
        (axes[0], "score", "dF/d$\\beta$: held-out score (higher is better)", f"score ({unit})"),
        (axes[1], "score_below_best", "Below the best score, paired (lower is better)", f"best score - score ({unit})"),
        (axes[2], "force_rmse", "Force RMSE at T0", "force RMSE (kJ mol$^{-1}$ nm$^{-1}$)"),
    ):
        errors = table[f"{column}_se"] if f"{column}_se" in table else None
        ax.barh(range(len(table)), table[column], xerr=errors, capsize=3 if errors is not None else 0, color=colours)
        reach = np.zeros(len(table)) if errors is None else np.nan_to_num(np.asarray(errors, dtype=float))
        for row, (value, extra) in enumerate(zip(table[column].astype(float), reach)):
            text = f"{value:.3g}" if errors is None else f"{value:.3g} ± {extra:.2g}"
            # right of the bar and its error bar, or of zero for a negative bar (clear of the row labels)
            ax.annotate(text, (max(value + extra, 0.0), row), xytext=(4, 0), textcoords="offset points",
                        va="center", fontsize=8)
        values = table[column].astype(float).to_numpy()
        low, high = min(0.0, np.nanmin(values - reach)), max(0.0, np.nanmax(values + reach))
        span = (high - low) or 1.0
        ax.set_xlim(low - 0.05 * span if low < 0 else 0.0, high + 0.6 * span)  # room for the labels
        ax.set(title=title, xlabel=xlabel)
    axes[0].set_yticks(range(len(table)), labels)
    axes[0].axvline(0, color="k", lw=0.5)
    figure.suptitle("Parameter sweep of the thermal response fit (blue: local estimator, orange: global; bars ±1 SE)")
    _save(figure, png, pdf)


def plot_dynamics(table, fg_vacf, cg_vacf, png, pdf=None):
    """CG dynamics across temperatures (issue 13): D_CG / D_FG per friction law with error bars,
    gamma(T) per law, and the bead VACF of FG and CG (first model, per law) at each temperature.

    table: results/metrics/dynamics.tsv; fg_vacf {T label: table}; cg_vacf {(model, law, T label): table}.
    """
    table = _read(table)
    laws = list(dict.fromkeys(table["law"]))
    models = list(dict.fromkeys(table["model"]))
    temperatures = list(fg_vacf)
    colours = _temperature_colours(temperatures)
    law_colours = dict(zip(laws, plt.cm.tab10.colors))
    columns = max(2, len(laws))
    figure, grid = plt.subplots(2, columns, figsize=(4.6 * columns, 8.4), constrained_layout=True, squeeze=False)
    axes = [grid[0, 0], grid[0, 1], *grid[1, :len(laws)]]
    for ax in [*grid[0, 2:], *grid[1, len(laws):]]:
        ax.set_visible(False)
    ax = axes[0]
    ax.axhspan(0.75, 1.25, color="0.9", label="within 25%")
    ax.axhline(1.0, color="k", lw=0.6)
    for law in laws:
        for model in models:
            part = table[(table["law"] == law) & (table["model"] == model)]
            ax.errorbar(part["temperature_K"], part["ratio"].astype(float), yerr=part["ratio_error"].astype(float),
                        marker="o", capsize=3, color=law_colours[law], label=f"{model}: {law}")
            for temperature in part.loc[~part["stable"].astype(bool), "temperature_K"]:  # no D: an x on the top edge
                _x_on_top(ax, temperature, law_colours[law])
    ax.set(xlabel="T (K)", ylabel="$D_{CG}/D_{FG}$", title="Diffusion: CG over FG")
    handles, _ = ax.get_legend_handles_labels()
    ax.legend(handles=handles + ([] if table["stable"].astype(bool).all() else [_blew_up_handle()]), fontsize=8)
    ax = axes[1]
    for law in laws:
        part = table[(table["law"] == law) & (table["model"] == models[0])]
        ax.plot(part["temperature_K"], part["gamma_per_ps"], marker="o", color=law_colours[law], label=law)
    if (table["gamma_per_ps"].astype(float) <= MINIMUM_FRICTION).any():  # a law's value there is the floor, not its fit
        ax.axhline(MINIMUM_FRICTION, color="0.4", ls=":", lw=1.0,
                   label=f"floor {MINIMUM_FRICTION:g}/ps: a law's lower value is raised to it")
    ax.set(xlabel="T (K)", ylabel="$\\gamma$ (1/ps)", title=f"Friction law $\\gamma(T)$ ({models[0]})")
    ax.set_yscale("log")
    ax.legend(fontsize=8)
    for ax, law in zip(axes[2:], laws):
        for t in temperatures:
            fg, colour = fg_vacf[t], colours[t]
            ax.plot(fg["lag_ps"], fg["vacf"], color=colour, lw=1.5, label=f"FG {t} K")
            cg = cg_vacf.get((models[0], law, t))
            if cg is not None and len(cg):
                ax.plot(cg["lag_ps"], cg["vacf"], color=colour, lw=1.0, ls="--")
        ax.axhline(0.0, color="k", lw=0.5)
        ax.set(xlabel="lag (ps)", ylabel="VACF (normalised)", xlim=(0, 0.5),
               title=f"VACF: FG (solid), {models[0]} {law} (dashed)")
        ax.legend(fontsize=7)
    figure.suptitle("CG dynamics across temperatures under each friction law (oracle: fitted at each T, the ceiling)")
    _save(figure, png, pdf)
