"""The repulsive core: what the FG data say at each temperature, and the prior's force beside it.

Needs a finished default run (its mapped CG frames). For 0.005 nm bins from 0.22 to 0.30 nm it
writes, per sampled temperature, the pairs per frame and the pair-projected FG force P(r) (the mean
of (f_J - f_I) . rhat_IJ / 2 over the pairs in the bin, kJ/(mol nm), thermocg.metrics), and the
force of the config's prior (thermocg.nn.RepulsivePrior) at the bin centres. Below the radius
where T0 has pairs, a model trained at T0 knows only its prior, and hotter runs go there: the
prior's wall has to continue the T0 core. The last lines fit P(r) = a exp(-r / lambda) to the
T0 bins with at least one pair per frame and give lambda, the decay length the prior should have.
Beside them, for each model of ``--models`` (a fitted model, or the oracle's entry: its model at each
T), the error of its P(r) at each temperature: its mean force F(R; beta(T)) on the same FG frames,
projected the same way, minus the FG P(r) (the configurations cancel; a model with too soft a core
at T lets pairs in too close there), ± the standard error over frames.

    python benchmarks/bench_prior.py [--results results] [--config config/config.yaml] [--stride 3]
        [--models fm_ref trf1 mtfm fm_oracle] [--r-max 0.34]

Writes benchmarks/results/prior.tsv and prints it.
"""

import argparse
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from thermocg import config as configuration
from thermocg import io, metrics, nn, units
from thermocg.config import temperature_label


def model_path(results, config, name, label):
    """The file of model ``name`` at temperature ``label`` (the oracle entry has one per T; at T0 it is fm_ref's force
    field), as workflow/rules/common.smk's model_file finds it."""
    if config["models"][name]["kind"] != "fm_oracle":
        return results / f"models/{name}/model.pt"
    if float(label) == float(config["reference_temperature"]):
        return next(results / f"models/{other}/model.pt" for other, spec in config["models"].items() if spec["kind"] == "fm_ref")
    return results / f"models/{name}/T{label}/model.pt"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--results", default="results")
    parser.add_argument("--config", default="config/config.yaml")
    parser.add_argument("--stride", type=int, default=3, help="every k-th frame (neighbouring frames are correlated)")
    parser.add_argument("--models", nargs="*", default=["fm_ref", "trf1", "mtfm", "fm_oracle"],
                        help="model entries whose P(r) error to give (none: the FG data and the prior only)")
    parser.add_argument("--r-max", type=float, default=0.34, help="nm, the last bin's outer edge")
    args = parser.parse_args()
    torch.set_num_threads(1)
    config = configuration.load(args.config)
    unknown = [name for name in args.models if name not in config["models"]]
    if unknown:
        parser.error(f"--models {unknown} are not model entries of {args.config} ({', '.join(config['models'])})")
    results = Path(args.results)
    edges = np.round(np.arange(0.22, args.r_max + 1e-4, 0.005), 6)
    centres = 0.5 * (edges[1:] + edges[:-1])
    prior = nn.RepulsivePrior(**config["network"]["prior"])
    r = torch.as_tensor(centres, dtype=torch.float64).requires_grad_(True)
    (gradient,) = torch.autograd.grad(prior.pair_energy(r).sum(), r)
    table = pd.DataFrame({"r_nm": centres, "prior_force": -gradient.numpy()})
    for temperature in config["temperatures"]:
        beads = io.load_frames(results / f"cg/T{temperature_label(temperature)}/beads.npz")
        x, f, box = (beads[key][:: args.stride] for key in ("positions", "forces", "box"))
        profile = metrics.pair_projected_forces(x, f, box, edges)
        counts = np.isfinite(profile)
        pairs = np.zeros(len(centres))
        n_beads = x.shape[1]
        first, second = np.triu_indices(n_beads, k=1)
        for frame, lengths in zip(x, box):
            d = frame[second] - frame[first]
            d -= lengths * np.round(d / lengths)
            pairs += np.histogram(np.sqrt((d * d).sum(1)), edges)[0]
        label = temperature_label(temperature)
        table[f"pairs_per_frame_T{label}"] = pairs / len(x)
        with np.errstate(invalid="ignore"):
            table[f"P_T{label}"] = np.nansum(np.where(counts, profile, 0.0), axis=0) / counts.sum(axis=0)
        dbeta = float(units.beta(temperature) - units.beta(config["reference_temperature"]))
        for name in args.models:
            model, _ = nn.load_model(model_path(results, config, name, label))
            error = metrics.pair_projected_forces(x, metrics.model_forces(model, x, box, dbeta), box, edges) - profile
            n_frames = np.isfinite(error).sum(axis=0)
            with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # bins without pairs: NaN, as for FG
                table[f"{name}_minus_FG_T{label}"] = np.nanmean(np.where(n_frames >= 2, error, np.nan), axis=0)
                table[f"{name}_minus_FG_T{label}_se"] = np.nanstd(error, axis=0) / np.sqrt(n_frames)
    out = Path("benchmarks/results")
    out.mkdir(parents=True, exist_ok=True)
    io.write_table(out / "prior.tsv", table, comment=(
        "repulsive core: pairs per frame and pair-projected FG force P (kJ/(mol nm)) per 0.005 nm bin and temperature; "
        f"prior_force: the force of the config's prior {config['network']['prior']}; <model>_minus_FG: the model's P(r) "
        "on the same FG frames minus FG's, ± SE over frames"))
    with pd.option_context("display.width", 200, "display.max_columns", 30):
        shown = table[[c for c in table.columns if not c.endswith("_se")]]  # the errors' SE: in the file
        print(shown.round(1).assign(r_nm=table["r_nm"].round(4)).to_string(index=False))
    reference = temperature_label(config["reference_temperature"])
    core = (table[f"pairs_per_frame_T{reference}"] >= 1.0) & (table[f"P_T{reference}"] > 0) & (table["r_nm"] < 0.27)
    slope, _ = np.polyfit(table.loc[core, "r_nm"], np.log(table.loc[core, f"P_T{reference}"]), 1)
    inner = table.loc[table[f"pairs_per_frame_T{reference}"] > 0, "r_nm"].min()
    print(f"T0 = {reference} K: pairs from {inner:.4f} nm on; P(r) of the bins with at least one pair per frame "
          f"below 0.27 nm decays with lambda = {-1.0 / slope:.4f} nm")


if __name__ == "__main__":
    main()
