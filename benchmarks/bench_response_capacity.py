"""How much thermal-response capacity do the T0 data determine? W1 and W2 representations compared, after a default run.

For each representation and estimator, the benchmark fits trf2's thermal terms on the default
run's T0 frames, on fm_ref's frozen W0, with the pipeline's own closed form
(thermocg.train.train_model -> thermocg.response; the ridge chosen on the validation frames, a
term kept only if it beats "no term" by two standard errors), and reports per term (W1, and the
second-order fit "W2 + 2 W1/beta0" of the reduced series; trf2's W1 is trf1's):

- n_coefficients of the term, the chosen relative ridge (inf: no term);
- best_ridge, best_validation_gain: the ridge candidate (term != 0) whose validation MSE is
  lowest, and how far below "no term" it is, with its standard error over blocks of frames
  (negative: every candidate of this representation predicts the validation targets worse than
  none; units of the target squared, (kJ/mol)^4/nm^2 for W1);
- score (W1 only): the held-out thermal-response score of the fitted W1
  (thermocg.metrics.response_score, local y1 targets at r = 0.5 nm centred with fm_ref's mean
  force) on the frames no fit saw (the T0 run's test frames and the score run), ± SE, and its
  paired difference to the first row's.

Representations: ``radial`` (nn.PairHead, a cubic spline of the pair distance), ``network`` (a
read-out of the frozen trunk's many-body features), and ``radial+three-body``: radial W1 plus a
three-body term fitted on its residual and kept only if it beats the radial term alone by two
standard errors. The three-body term is not offered by the package (this benchmark is what decided
that): per bead i, for angular order l = 1, 2, 3 and radial functions a <= b,
sum_{j,k} h_a(r_ij) h_b(r_ik) P_l(cos theta_jik), the h cubic B-splines on [0.22, --three-body-range] nm.

    python benchmarks/bench_response_capacity.py [--results results] [--config config/config.yaml]
        [--three-body-radial 3] [--three-body-range 0.40]

Writes benchmarks/results/response_capacity.tsv and prints it; fits in a temporary folder.
"""

import argparse
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from thermocg import config as configuration
from thermocg import io, metrics, nn, response, train, units
from thermocg.config import model_spec_with_defaults, temperature_label
from thermocg.neighbors import NeighborList
from thermocg.pair import pinned_spline_basis

#: Rows of nn.angular_harmonics (order 3) that hold each angular order l >= 1.
ORDER_ROWS = {1: slice(1, 4), 2: slice(4, 9), 3: slice(9, 16)}
#: nm, the three-body term's inner end (where the radial W1 starts too).
THREE_BODY_R_MIN = 0.22
#: nm, the local estimator's radius (the default model entries')
R_LOC = 0.5


def three_body_energies(positions, i, j, shift, n_radial, r_max):
    """(N, K) per-bead basis energies of the three-body term, K = 3 n_radial (n_radial + 1) / 2.

    sum_{j,k} h_a(r_ij) h_b(r_ik) P_l(cos theta_jik) (times Legendre's constant for l) is the dot
    product of the order-l rows of sum_j h_a(r_ij) Y(u_ij) and of sum_k h_b(r_ik) Y(u_ik)
    (nn.angular_harmonics), so it costs one sum over pairs. The j = k terms are pair terms.
    """
    displacement = positions[j] - positions[i] + shift
    distance = displacement.norm(dim=1)
    near = distance < r_max
    displacement, distance, first = displacement[near], distance[near], i[near]
    radial = pinned_spline_basis(distance, THREE_BODY_R_MIN, r_max, n_radial)  # (P, A)
    harmonics = nn.angular_harmonics((displacement / distance[:, None]).t(), 3).t()  # (P, 16)
    sums = positions.new_zeros(len(positions), n_radial, 16).index_add(0, first, radial[:, :, None] * harmonics[:, None, :])
    columns = []
    for rows in ORDER_ROWS.values():
        for a in range(n_radial):
            for b in range(a, n_radial):
                columns.append((sums[:, a, rows] * sums[:, b, rows]).sum(1))
    return torch.stack(columns, 1)


def three_body_forces(positions, pairs, n_radial, r_max):
    """(N * 3, K) forces of each three-body basis energy summed over beads, float64 numpy."""
    positions = torch.as_tensor(positions, dtype=torch.float64).detach().requires_grad_(True)
    i, j, shift = pairs
    totals = three_body_energies(positions, i, j, shift.double(), n_radial, r_max).sum(0)
    columns = [-torch.autograd.grad(totals[k], positions, retain_graph=True)[0] for k in range(len(totals))]
    return torch.stack(columns, -1).reshape(-1, len(totals)).numpy()


def fit_rows(curve, head):
    """The chosen ridge of one term's fit table (rows whose head is ``head``), and the ridge candidate
    (term != 0) with the largest drop of the validation MSE below 'no term' (negative: every
    candidate predicts the validation targets worse than none)."""
    term = curve[curve["head"] == head].reset_index(drop=True)
    no_term = np.isinf(term["relative_ridge"])
    if no_term.all():
        raise RuntimeError(f"the {head} fit has no candidate but 'no term' (every ridge failed)")
    gains = term.loc[no_term, "validation_mse"].iloc[0] - term["validation_mse"]
    best = gains[~no_term].idxmax()
    return {"chosen_ridge": float(term.loc[term["chosen"].astype(bool), "relative_ridge"].iloc[0]),
            "best_ridge": float(term.loc[best, "relative_ridge"]),
            "best_validation_gain": float(gains[best]), "best_validation_gain_se": float(term.loc[best, "gain_se"])}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--results", default="results")
    parser.add_argument("--config", default="config/config.yaml")
    parser.add_argument("--three-body-radial", type=int, default=3, help="radial functions of the three-body term")
    parser.add_argument("--three-body-range", type=float, default=0.40, help="outer end of the three-body term, nm")
    args = parser.parse_args()
    torch.set_num_threads(1)
    config = configuration.load(args.config)
    results = Path(args.results)
    label = temperature_label(config["reference_temperature"])
    beads = {label: str(results / f"cg/T{label}/beads.npz")}
    energies = {label: str(results / f"cg/T{label}/molecule_energies.npz")}
    fm_ref_path = results / "models/fm_ref/model.pt"
    fm_ref, _ = nn.load_model(fm_ref_path)
    score_runs = []
    if config["fg"].get("score_production"):
        score_runs = [(results / f"cg/T{label}/score/beads.npz", results / f"cg/T{label}/score/molecule_energies.npz")]
    positions, forces, box, bead_energies = metrics.score_frames(beads[label], config["training"], energies[label], score_runs)
    y1 = metrics.response_targets(positions, forces, box, bead_energies, metrics.model_forces(fm_ref, positions, box, 0.0))

    rows, per_frame = [], {}
    with tempfile.TemporaryDirectory() as folder:
        fitted = {}
        for estimator in ("local", "global"):
            for representation in ("radial", "network"):
                # trf2's W1 is trf1's (the same fit); its second fit is of the curvature (thermocg.response)
                name = f"{representation}_{estimator}"
                spec = model_spec_with_defaults({"kind": "trf2", "estimator": estimator, "r_loc": R_LOC, "response": representation})
                model, curve = train.train_model(name, spec, config, beads, energies, Path(folder) / f"{name}.pt",
                                                 Path(folder) / f"{name}.tsv", Path(folder) / f"{name}.ckpt",
                                                 w0_model=fm_ref_path)
                fitted[name] = model
                predicted = metrics.thermal_response(model, positions, box)
                score, score_se, per_frame[name] = metrics.response_score(y1, predicted)
                for term in curve["head"].unique():
                    if term.startswith("W"):
                        rows.append({"representation": representation, "estimator": estimator, "term": term,
                                     "n_coefficients": sum(p.numel() for p in model.heads[term[:2]].parameters()),
                                     **fit_rows(curve, term), "score": score if term == "W1" else np.nan,
                                     "score_se": score_se if term == "W1" else np.nan, "scored": name if term == "W1" else ""})
                        print(rows[-1], flush=True)

        # The three-body term on the radial, local W1's residual, on the frames that fit used.
        radial = fitted["radial_local"]
        training = config["training"]
        n_frames = len(io.load_frames(beads[label])["time"])
        split = train.split_indices(n_frames, training["validation_fraction"], training["test_fraction"],
                                    training["response_frame_stride"])
        beta0 = float(units.beta(config["reference_temperature"]))
        shape = (args.three_body_radial, args.three_body_range)
        systems = {}
        for part in ("train", "validation"):
            frames = train.load_frames(beads[label], split[part], radial.cutoff, beta0, torch.float32, "cpu",
                                       energies[label], R_LOC)
            for frame in frames:
                target, _ = response.frame_targets(radial, "trf1", "local", frame)
                w1_force = nn.head_forces(radial, frame.positions, *frame.pairs, heads=("W1",))["W1"].double()
                residual = (target - w1_force).reshape(-1).numpy()
                systems.setdefault(part, response.NormalEquations()).add(three_body_forces(frame.positions, frame.pairs, *shape), residual)
        coefficients, table = response.solve_ridge(systems["train"], systems["validation"], np.eye(len(systems["train"].rhs)))
        curve = pd.DataFrame(table).assign(head="W1")
        neighbors = NeighborList(radial.cutoff)
        extra = np.stack([
            (three_body_forces(x, neighbors(torch.as_tensor(x, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64)), *shape)
             @ coefficients).reshape(-1, 3)
            for x, b in zip(positions, box)])
        predicted = metrics.thermal_response(radial, positions, box) + extra
        name = "radial+three-body_local"
        score, score_se, per_frame[name] = metrics.response_score(y1, predicted)
        rows.append({"representation": "radial+three-body", "estimator": "local", "term": "W1",
                     "n_coefficients": rows[0]["n_coefficients"] + len(coefficients),
                     **fit_rows(curve, "W1"), "score": score, "score_se": score_se, "scored": name})

    first = rows[0]["scored"]
    for row in rows:
        if row["scored"]:
            difference, difference_se = metrics.paired_score_difference(per_frame[row["scored"]], per_frame[first])
            row.update(score_minus_first=difference, score_minus_first_se=difference_se, n_score_frames=len(positions))
    table = pd.DataFrame(rows).drop(columns="scored")
    out = Path("benchmarks/results/response_capacity.tsv")
    out.parent.mkdir(parents=True, exist_ok=True)
    io.write_table(out, table, comment=(
        f"trf2's thermal terms fitted on the T0 frames of {results} (fm_ref's W0); best_validation_gain: the drop of the "
        "term's validation MSE below no term (W1: (kJ/mol)^4/nm^2), ± SE over blocks; score: held-out score of W1; "
        f"three-body: {shape[0]} radial functions on [{THREE_BODY_R_MIN}, {shape[1]}] nm, orders 1-3, on the radial local residual"))
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(table.to_string(index=False))


if __name__ == "__main__":
    main()
