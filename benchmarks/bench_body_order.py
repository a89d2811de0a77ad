"""How much of the T0 mean force a two- plus three-body expansion explains, beside the networks.

Force matching at T0 leaves a fifth of the (noise-free) mean force unexplained, whatever the
network's depth, range or angular order (bench_mean_force.py, bench_fm_capacity.py). This asks
whether that fifth is within reach of three-body terms at all. It fits, by linear least squares on
the T0 training frames, the energy

    W(R) = sum_{i<j} phi(r_ij) + sum_i sum_{j,k in shell(i)} sum_{a<=b,l} c_abl f_a(r_ij) f_b(r_ik) P_l(cos theta_jik)

(phi a cubic B-spline to ``--pair-cutoff``; f_a cubic B-splines on [r_min, rc3]; P_l Legendre
polynomials up to order L; j = k included, which adds a pair term within rc3), for each basis in
``--three-body`` (``RC3:L``, nm and angular order; ``none``: pairs only), with the ridge chosen by
cross-validation over the training frames (thermocg.response.solve_ridge, each coefficient's ridge
relative to its own column's scale). A sum over triplets with P_l up to L is the power spectrum
of the neighbour density up to order L, so L = 8 resolves angles far finer than the networks'
tensor sensitivities (l <= 2 or 3). Each fit and each model in ``--model-file`` is scored as
relative MSE, |F - target|^2 / |target|^2 (train.fit's loss), on the training frames and on the
validation frames (train.split_indices, the later frames of the run), against the forces of
``--archive``: the run's mapped forces, or bench_mean_force.py's averages (without one sample's
noise, so their relative MSE is about what a representation misses of the frames' mean force).

    python benchmarks/bench_body_order.py [--archive results/cg/T300/beads.npz] [--config config/config.yaml]
        [--pair-cutoff 0.9] [--pair-basis 40] [--radial-basis 6] [--r-min 0.2]
        [--three-body none 0.36:2 0.36:4 0.36:8 0.42:8] [--model-file LABEL PATH ...] [--max-frames N]

Writes benchmarks/results/body_order.tsv (one row per basis or model).
"""

import argparse
import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import results_table

from thermocg import config as configuration
from thermocg import io, metrics, nn, response, train
from thermocg.neighbors import NeighborList, pair_displacements
from thermocg.pair import pinned_spline_basis

log = logging.getLogger("bench_body_order")
#: where the table goes (relative to where it runs: the repository root)
OUT = Path("benchmarks/results")


def legendre(c, order):
    """[P_0(c), ..., P_order(c)] by Bonnet's recursion."""
    values = [torch.ones_like(c), c]
    for l in range(1, order):
        values.append(((2 * l + 1) * c * values[l] - l * values[l - 1]) / (l + 1))
    return values[: order + 1]


def three_body_energies(positions, i, j, shift, n_beads, cutoff, order, n_radial, r_min):
    """(n_radial (n_radial + 1) / 2 * (order + 1),) basis energies sum_i sum_{j,k} f_a f_b P_l, a <= b."""
    displacement = pair_displacements(positions, i, j, shift)
    distance = displacement.norm(dim=-1)
    near = distance < cutoff
    first, displacement, distance = i[near], displacement[near], distance[near]
    slots, width = nn.padded_slots(first, n_beads)
    unit = torch.zeros(n_beads * width, 3, dtype=positions.dtype).index_copy(0, slots, displacement / distance[:, None])
    radial = torch.zeros(n_beads * width, n_radial, dtype=positions.dtype).index_copy(
        0, slots, pinned_spline_basis(distance, r_min, cutoff, n_radial))
    unit, radial = unit.view(n_beads, width, 3), radial.view(n_beads, width, n_radial)
    cosine = torch.bmm(unit, unit.transpose(1, 2)).clamp(-1.0, 1.0)  # empty slots have radial 0
    upper = torch.triu_indices(n_radial, n_radial)
    return torch.cat([torch.einsum("iwa,iwv,ivb->ab", radial, p, radial)[upper[0], upper[1]]
                      for p in legendre(cosine, order)])


def design_matrix(positions, box, args, three_body):
    """(N * 3, K) forces of each basis energy of one frame (float64), pairs first."""
    cutoff = max(args.pair_cutoff, three_body[0] if three_body else 0.0)
    x = torch.as_tensor(positions, dtype=torch.float64)
    i, j, shift = NeighborList(cutoff)(x, torch.as_tensor(box, dtype=torch.float64))
    x.requires_grad_(True)
    once = i < j
    distance = pair_displacements(x, i[once], j[once], shift[once]).norm(dim=-1)
    totals = [pinned_spline_basis(distance, args.r_min, args.pair_cutoff, args.pair_basis).sum(0)]
    if three_body:
        totals.append(three_body_energies(x, i, j, shift, len(x), three_body[0], three_body[1], args.radial_basis,
                                          args.r_min))
    columns = [-torch.autograd.grad(total, x, retain_graph=True)[0].reshape(-1) for part in totals for total in part]
    return torch.stack(columns, dim=1).numpy()


def fit_basis(frames, positions, forces, box, args, three_body):
    """(train rel. MSE, validation rel. MSE, n_coefficients, chosen relative ridge) of one basis."""
    systems = {}
    for part, indices in frames.items():
        systems[part] = response.NormalEquations()
        for frame in indices:
            systems[part].add(design_matrix(positions[frame], box[frame], args, three_body), forces[frame].reshape(-1))
    scale = np.diag(systems["train"].gram).copy()
    penalty = np.diag(scale / scale.mean())  # each column's ridge relative to its own size
    coefficients, rows = response.solve_ridge(systems["train"], penalty)
    ridge = next(row["relative_ridge"] for row in rows if row["chosen"])
    return (*(systems[part].mean_square_error(coefficients) / np.mean(forces[frames[part]] ** 2) for part in frames),
            len(coefficients), ridge)


def three_body_spec(text):
    """``RC3:L`` -> (rc3 nm, L); ``none`` -> None (pairs only)."""
    if text == "none":
        return None
    try:
        cutoff, order = text.split(":")
        spec = float(cutoff), int(order)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected RC3:L (nm:order) or none, got {text!r}")
    if spec[0] <= 0 or spec[1] < 0:
        raise argparse.ArgumentTypeError(f"need rc3 > 0 nm and L >= 0, got {text!r}")
    return spec


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archive", default="results/cg/T300/beads.npz", help="T0 bead archive (positions, forces)")
    parser.add_argument("--config", default="config/config.yaml", help="the config of the run (its frame split)")
    parser.add_argument("--pair-cutoff", type=float, default=0.9, help="nm")
    parser.add_argument("--pair-basis", type=int, default=40, help="B-splines of the pair term")
    parser.add_argument("--radial-basis", type=int, default=6, help="B-splines f_a of the three-body terms")
    parser.add_argument("--r-min", type=float, default=0.2, help="nm, where every spline starts (below the closest T0 pairs)")
    parser.add_argument("--three-body", nargs="+", type=three_body_spec,
                        default=[None, (0.36, 2), (0.36, 4), (0.36, 8), (0.42, 8)],
                        help="RC3:L (nm, angular order) per basis, or none")
    parser.add_argument("--model-file", nargs=2, action="append", default=[], metavar=("LABEL", "PATH"))
    parser.add_argument("--max-frames", type=int, help="only the first N training and validation frames")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(1)

    training = configuration.load(args.config)["training"]
    beads = io.load_frames(args.archive)
    split = train.split_indices(len(beads["time"]), training["validation_fraction"], training["test_fraction"],
                                training["frame_stride"])
    frames = {part: split[part][: args.max_frames] for part in ("train", "validation")}
    positions, forces, box = beads["positions"], beads["forces"], beads["box"]

    rows = []
    for label, path in args.model_file:
        model, _ = nn.load_model(path)
        errors = {}
        for part, indices in frames.items():
            predicted = np.asarray(metrics.model_forces(model, positions[indices], box[indices], 0.0), dtype=np.float64)
            errors[part] = np.mean((predicted - forces[indices]) ** 2) / np.mean(forces[indices] ** 2)
        rows.append({"basis": label, "n_coefficients": sum(p.numel() for p in model.parameters()),
                     "relative_ridge": float("nan"), "train_relative_mse": errors["train"],
                     "validation_relative_mse": errors["validation"], "seconds": float("nan")})
    for three_body in args.three_body:
        start = time.perf_counter()
        train_error, validation_error, n_coefficients, ridge = fit_basis(frames, positions, forces, box, args, three_body)
        label = "pairs" if three_body is None else f"pairs + three-body rc3 {three_body[0]} nm, L {three_body[1]}"
        rows.append({"basis": label, "n_coefficients": n_coefficients, "relative_ridge": ridge,
                     "train_relative_mse": train_error, "validation_relative_mse": validation_error,
                     "seconds": time.perf_counter() - start})
        log.info("%s: train %.4f, validation %.4f", label, train_error, validation_error)
    print(f"{len(frames['train'])} training, {len(frames['validation'])} validation frames of {args.archive}")
    results_table.write(pd.DataFrame(rows), OUT / "body_order.tsv")


if __name__ == "__main__":
    main()
