"""What trf1's radial W1 would have to be: fitted to the oracles' temperature dependence instead of the y1 targets.

Needs a finished default run. For each temperature T of ``--temperatures`` (default: the config's
other than T0) it fits the radial W1 of ``--model`` (a trf1 or trf2 entry with a radial W1: its
spline, r_min and cutoff) by least squares so that the model's thermal term at T, c1(T) F_W1(R)
(c1 = dbeta beta0/beta for the reduced series, dbeta for the beta series), equals the secant
response F_oracle(T)(R) - F_model(R; T0) on the T0 frames: the force-matched model at T minus the
model's own force field at T0, both on configurations the T0 data have. The targets are model
forces, free of sampling noise, so the fits measure the representation and the expansion, not the
estimator: a radial W1 that the T0 data could in principle determine, tuned to reach T. Were the
temperature dependence linear in c1, every T would give the same W1, the derivative at T0 that the
y1 targets estimate.

The table gives phi(r), the W1 pair function in (kJ/mol)^2, of each fit beside the model's own at
``--r-values``. With ``--md-temperatures`` (default: the config's temperatures 150 K or more from
T0; none: no runs) the model with each W1 (its own included) is simulated as the pipeline's cgmd
does, for each of ``--seeds``: eps_g and eps_a against the FG run.

    python benchmarks/bench_ideal_response.py [--results results] [--config config/config.yaml] [--model trf1]
        [--temperatures 250 450 550 700] [--md-temperatures 450 550 700] [--seeds 2026 1] [--stride 3]

Writes benchmarks/results/ideal_response.tsv (phi) and ideal_response_md.tsv (the runs), and prints them.
"""

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from bench_data_efficiency import far_temperatures
from bench_prior import model_path
from bench_response_capacity import cg_errors

from thermocg import config as configuration
from thermocg import io, kinds, metrics, nn, response, units
from thermocg.config import temperature_label
from thermocg.neighbors import NeighborList

#: relative ridge of the smoothness penalty: the targets have no sampling noise, it only carries the
#: spline across the coefficients below the T0 frames' closest pairs
RIDGE = 1e-6


def fit_radial_w1(model, positions, box, differences, c1):
    """Coefficients of ``model``'s radial W1 with c1 * F_W1(R) = ``differences`` (F, N, 3) in least squares."""
    dtype = next(model.parameters()).dtype
    neighbors = NeighborList(model.cutoff)
    gram, rhs = 0.0, 0.0
    for frame, lengths, target in zip(positions, box, differences):
        frame = torch.as_tensor(frame, dtype=dtype)
        i, j, shift = neighbors(frame, torch.as_tensor(lengths, dtype=dtype))
        design = c1 * response.basis_forces(model, "W1", frame, i, j, shift).double().numpy()
        gram = gram + design.T @ design
        rhs = rhs + design.T @ target.reshape(-1)
    penalty = response.smoothness_penalty(len(rhs))
    return np.linalg.solve(gram + RIDGE * np.trace(gram) / np.trace(penalty) * penalty, rhs)


def pair_function(model, coefficients, r):
    """phi(r) = sum_k c_k B_k(r) of the model's radial W1, (kJ/mol)^2."""
    basis = model.heads["W1"].basis(torch.as_tensor(r, dtype=torch.float64))
    return basis.numpy() @ np.asarray(coefficients, dtype=np.float64)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--results", default="results")
    parser.add_argument("--config", default="config/config.yaml")
    parser.add_argument("--model", default="trf1", help="a trf1 or trf2 entry of the config with a radial W1")
    parser.add_argument("--temperatures", type=float, nargs="+", help="K whose oracle the W1 is fitted to; default: all but T0")
    parser.add_argument("--md-temperatures", type=float, nargs="*", help="K; default: the config's 150 K or more from T0")
    parser.add_argument("--seeds", type=int, nargs="+", default=[2026, 1], help="CG MD seeds")
    parser.add_argument("--stride", type=int, default=3, help="every k-th T0 frame")
    parser.add_argument("--r-values", type=float, nargs="+", default=[0.23, 0.24, 0.25, 0.26, 0.27, 0.28, 0.29, 0.30, 0.32, 0.35, 0.40])
    args = parser.parse_args()
    torch.set_num_threads(1)
    config = configuration.load(args.config)
    spec = config["models"].get(args.model, {})
    if spec.get("kind") not in kinds.RESPONSE_KINDS:
        parser.error(f"--model {args.model}: not an entry of kind {' or '.join(sorted(kinds.RESPONSE_KINDS))} in {args.config}")
    oracle = next((name for name, other in config["models"].items() if other["kind"] == "fm_oracle"), None)
    if oracle is None:
        parser.error(f"{args.config} has no fm_oracle entry: the fits need the force-matched model at each T")
    results = Path(args.results)
    model_file = results / f"models/{args.model}/model.pt"
    model, metadata = nn.load_model(model_file)
    if not isinstance(model.heads["W1"], nn.PairHead):
        parser.error(f"--model {args.model}: its W1 is not radial (response: radial)")
    reference = float(config["reference_temperature"])
    temperatures = args.temperatures or [float(t) for t in config["temperatures"] if float(t) != reference]
    md_temperatures = far_temperatures(config) if args.md_temperatures is None else args.md_temperatures

    beads = io.load_frames(results / f"cg/T{temperature_label(reference)}/beads.npz")
    positions, box = beads["positions"][:: args.stride], beads["box"][:: args.stride]
    own = model.heads["W1"].coefficients.detach().double().numpy()
    at_t0 = metrics.model_forces(model, positions, box, 0.0)
    variants = {args.model: own}
    for temperature in temperatures:
        hot, _ = nn.load_model(model_path(results, config, oracle, temperature_label(temperature)))
        dbeta = float(units.beta(temperature)) - model.reference_beta
        c1 = float(model.expansion_coefficients(torch.tensor(dbeta, dtype=torch.float64))[0])
        differences = metrics.model_forces(hot, positions, box, 0.0) - at_t0
        variants[f"secant_T{temperature_label(temperature)}"] = fit_radial_w1(model, positions, box, differences, c1)
    profile = pd.DataFrame({"r_nm": args.r_values})
    for name, coefficients in variants.items():
        profile[name] = pair_function(model, coefficients, args.r_values)
    out = Path("benchmarks/results")
    out.mkdir(parents=True, exist_ok=True)
    io.write_table(out / "ideal_response.tsv", profile, comment=(
        f"W1 pair function phi(r) ((kJ/mol)^2) of {args.model} ({results}) and of the radial W1 fitted so that its thermal term at T "
        f"equals the force-matched model at T minus {args.model} at T0 on {len(positions)} T0 frames (secant_T<T>; "
        f"{'reduced' if model.reduced_expansion else 'beta'} series)"))
    print(profile.round(2).to_string(index=False))

    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for name, coefficients in variants.items():
            response.set_coefficients(model, "W1", coefficients)
            path = Path(folder) / f"{name}.pt"
            nn.save_model(path, model, dict(metadata, name=name))
            for temperature in md_temperatures:
                for seed in args.seeds:
                    start = time.perf_counter()
                    errors = cg_errors(config, results, path, args.model, temperature, seed,
                                       Path(folder) / f"{name}_T{temperature_label(temperature)}_seed{seed}")
                    rows.append({"W1": name, "T_K": temperature, "seed": seed, **errors, "seconds": time.perf_counter() - start})
                    print(rows[-1], flush=True)
    if rows:
        table = pd.DataFrame(rows)
        io.write_table(out / "ideal_response_md.tsv", table, comment=(
            f"{args.model} of {results} with each W1 of ideal_response.tsv, CG MD as the pipeline's cgmd; eps_g, eps_a (1/deg) "
            "against the FG run at T"))
        summary = table.groupby(["T_K", "W1"], sort=False)[["eps_g", "eps_a"]].agg(["mean", "std"])
        print(summary.to_string())


if __name__ == "__main__":
    main()
