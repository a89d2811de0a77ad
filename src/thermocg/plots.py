"""Figures. Every axis states its unit; every figure reads on its own."""

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # pipeline jobs have no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from thermocg import io  # noqa: E402


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
    colours = plt.cm.coolwarm(np.linspace(0, 1, len(directories)))
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
