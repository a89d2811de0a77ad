"""How much thermal-response capacity do the T0 data determine? W1 and W2 representations compared, after a default run.

For each representation and estimator, the benchmark fits trf2's thermal terms on the default
run's T0 frames, on fm_ref's frozen W0, with the pipeline's own closed form
(thermocg.train.train_model -> thermocg.response; the ridge chosen by cross-validation over the
training and validation frames, a term kept only if it beats "no term" by two standard errors), and reports per term (W1, and the
second-order fit "W2 + 2 W1/beta0" of the reduced series; trf2's W1 is trf1's):

- n_coefficients of the term, the chosen relative ridge (inf: no term);
- best_ridge, best_cv_gain: the ridge candidate (term != 0) whose cross-validated MSE is
  lowest, and how far below "no term" it is, with its standard error over blocks of frames
  (negative: every candidate of this representation predicts held-out targets worse than
  none; units of the target squared, (kJ/mol)^4/nm^2 for W1);
- score (W1 only): the held-out thermal-response score of the fitted W1
  (thermocg.metrics.response_score, local y1 targets at r = 0.5 nm centred with fm_ref's mean
  force) on the frames no fit saw (the T0 run's test frames and the score run), ± SE, and its
  paired difference to the first row's.

Representations: ``radial`` (nn.PairHead, a cubic spline of the pair distance), ``network`` (a
read-out of the frozen trunk's many-body features), and three many-body terms added to the radial,
local W1, each fitted on its residual and kept only if it beats the radial term alone by two
standard errors (none is offered by the package; this benchmark is what decided that):
``radial+three-body``: per bead i, for angular order l = 1, 2, 3 and radial functions a <= b,
sum_{j,k} h_a(r_ij) h_b(r_ik) P_l(cos theta_jik), the h cubic B-splines on [0.22, --three-body-range] nm;
``radial+coordination``: per bead a cubic spline F(n_i) of its number of first-shell neighbours
n_i (the embedding-function form of many-body potentials; --coordination-basis coefficients,
--coordination-shell where a neighbour stops counting);
``radial+W0``: one coefficient c, W1 += c W0, so that away from T0 W0 itself, its angular part
included, is scaled by 1 + c dbeta (beta0/beta) (the lowest-capacity many-body term there is);
``coefficient``: c fitted without ridge, ± its jackknife SE over blocks of the fitted frames.

With ``--md-coefficients``, what such a term would do if it were determined: the run's model
``--md-model`` (a trf1 or trf2 entry) with W1 += c W0 for each c (and c = 0, the model itself), simulated as the pipeline's cgmd does at
``--md-temperatures`` for each of ``--md-seeds``, eps_g and eps_a against the FG run; written to
benchmarks/results/response_capacity_md.tsv.

    python benchmarks/bench_response_capacity.py [--results results] [--config config/config.yaml]
        [--three-body-radial 3] [--three-body-range 0.40]
        [--coordination-basis 8] [--coordination-shell 0.31 0.35]
        [--md-coefficients 0.3 0.6] [--md-model trf1] [--md-temperatures 700] [--md-seeds 2026 1] [--md-only]

Writes benchmarks/results/response_capacity.tsv and prints it; fits in a temporary folder.
"""

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from thermocg import (
    cgmd,
    io,
    kinds,
    metrics,
    nn,
    observables,
    response,
    train,
    transfer,
    units,
)
from thermocg import config as configuration
from thermocg.config import model_spec_with_defaults, temperature_label
from thermocg.neighbors import NeighborList
from thermocg.pair import pinned_spline_basis

#: Rows of nn.angular_harmonics (order 3) that hold each angular order l >= 1.
ORDER_ROWS = {1: slice(1, 4), 2: slice(4, 9), 3: slice(9, 16)}
#: nm, the three-body term's inner end (where the radial W1 starts too).
THREE_BODY_R_MIN = 0.22
#: neighbours, the upper end of the coordination term's spline (first shells hold 4-7)
COORDINATION_MAX = 12.0
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


def coordination_energies(positions, i, j, shift, n_basis, shell):
    """(N, n_basis) per-bead basis energies B_k(n_i) of the coordination term: n_i = sum_j s(r_ij),
    s = 1 inside shell[0], 0 beyond shell[1] nm, a smoothstep between; B_k cubic B-splines on
    [0, COORDINATION_MAX] neighbours. A constant or linear function of n_i is a pair term."""
    distance = (positions[j] - positions[i] + shift).norm(dim=1)
    x = ((shell[1] - distance) / (shell[1] - shell[0])).clamp(0.0, 1.0)
    count = positions.new_zeros(len(positions)).index_add(0, i, x * x * (3.0 - 2.0 * x))
    return pinned_spline_basis(count, 0.0, COORDINATION_MAX, n_basis)


def coordination_forces(positions, pairs, n_basis, shell):
    """(N * 3, K) forces of each coordination basis energy summed over beads, float64 numpy."""
    positions = torch.as_tensor(positions, dtype=torch.float64).detach().requires_grad_(True)
    i, j, shift = pairs
    totals = coordination_energies(positions, i, j, shift.double(), n_basis, shell).sum(0)
    columns = [-torch.autograd.grad(totals[k], positions, retain_graph=True, allow_unused=True)[0] for k in range(len(totals))]
    columns = [torch.zeros_like(positions) if c is None else c for c in columns]
    return torch.stack(columns, -1).reshape(-1, len(totals)).detach().numpy()


def three_body_forces(positions, pairs, n_radial, r_max):
    """(N * 3, K) forces of each three-body basis energy summed over beads, float64 numpy."""
    positions = torch.as_tensor(positions, dtype=torch.float64).detach().requires_grad_(True)
    i, j, shift = pairs
    totals = three_body_energies(positions, i, j, shift.double(), n_radial, r_max).sum(0)
    columns = [-torch.autograd.grad(totals[k], positions, retain_graph=True)[0] for k in range(len(totals))]
    return torch.stack(columns, -1).reshape(-1, len(totals)).numpy()


def w0_forces(model, positions, pairs):
    """(N * 3, 1) W0's force (the basis of W1 += c W0), float64 numpy."""
    dtype = next(model.parameters()).dtype
    i, j, shift = pairs
    force = nn.head_forces(model, torch.as_tensor(positions, dtype=dtype), i, j, shift.to(dtype), heads=("W0",))["W0"]
    return force.double().reshape(-1, 1).numpy()


def least_squares_with_error(system, n_blocks=10):
    """A one-coefficient fit without ridge, and its jackknife standard error over blocks of consecutive frames."""
    def solve(frames):
        return sum(f[1][0] for f in frames) / sum(f[0][0, 0] for f in frames)
    blocks = np.array_split(np.arange(len(system.frames)), n_blocks)
    leave_out = np.array([solve([system.frames[k] for k in np.setdiff1d(np.arange(len(system.frames)), block)])
                          for block in blocks])
    spread = np.sqrt((n_blocks - 1) / n_blocks * np.sum((leave_out - leave_out.mean()) ** 2))
    return float(solve(system.frames)), float(spread)


def with_w0_term(model_path, coefficient, temperature):
    """The model of ``model_path`` with W1 += c W0, at one temperature: W0's read-outs scaled by
    1 + c dbeta (beta0/beta for the reduced series), which is that term exactly at this T."""
    model, metadata = nn.load_model(model_path)
    dbeta = float(units.beta(temperature)) - model.reference_beta
    scale = 1.0 + coefficient * dbeta * (model.reference_beta / (model.reference_beta + dbeta) if model.reduced_expansion else 1.0)
    with torch.no_grad():
        for readout in model.heads["W0"].readouts:
            readout.weight.mul_(scale)
            readout.bias.mul_(scale)
    return model, dict(metadata, name=f"{metadata['name']}+{coefficient:g}W0"), scale


def cg_errors(config, results, model_file, friction_of, temperature, seed, run):
    """CG MD of ``model_file`` at ``temperature`` as the pipeline's cgmd runs it (the friction of
    results/cgmd/``friction_of``), files named ``run``.*: eps_g and eps_a (1/deg) against the FG run."""
    label = temperature_label(temperature)
    fg = results / f"observables/fg/T{label}"
    rdf_fg, adf_fg = io.read_table(fg / "rdf_com.tsv"), io.read_table(fg / "adf.tsv")
    friction = cgmd.read_friction(results / f"cgmd/{friction_of}/friction.json", temperature)
    outputs = {"trajectory": f"{run}.dcd", "topology": f"{run}.pdb", "thermo": f"{run}.tsv", "checkpoint": f"{run}.ckpt"}
    cgmd.simulate(str(model_file), results / f"cg/T{label}/beads.npz", float(temperature), config["reference_temperature"],
                  config["cgmd"], friction, outputs, seed)
    beads = observables.trajectory_beads(outputs["trajectory"], outputs["topology"], config["cgmd"], float(temperature))
    tables, _ = observables.compute_all(beads, config["observables"])
    return {"eps_g": transfer.rdf_error(tables["rdf_com"]["r_nm"], tables["rdf_com"]["g"], rdf_fg["r_nm"], rdf_fg["g"]),
            "eps_a": transfer.adf_error(tables["adf"]["theta_deg"], tables["adf"]["p_per_deg"],
                                        adf_fg["theta_deg"], adf_fg["p_per_deg"])}


def md_with_w0_term(config, results, name, coefficients, temperatures, seeds, folder):
    """eps of model ``name`` with W1 += c W0 for each c (0 included) at each temperature and CG seed."""
    rows = []
    fitted = results / f"models/{name}/model.pt"
    for temperature in temperatures:
        label = temperature_label(temperature)
        for coefficient in [0.0, *coefficients]:
            model, metadata, scale = with_w0_term(fitted, coefficient, temperature)
            path = Path(folder) / f"c{coefficient:g}_T{label}.pt"
            nn.save_model(path, model, metadata)
            for seed in seeds:
                start = time.perf_counter()
                errors = cg_errors(config, results, path, name, temperature, seed, Path(folder) / f"c{coefficient:g}_T{label}_seed{seed}")
                rows.append({"T_K": temperature, "coefficient": coefficient, "w0_scale": scale, "seed": seed, **errors,
                             "seconds": time.perf_counter() - start})
                print(rows[-1], flush=True)
    return pd.DataFrame(rows)


def fit_rows(curve, head):
    """The chosen ridge of one term's fit table (rows whose head is ``head``), and the ridge candidate
    (term != 0) with the largest drop of the cross-validated MSE below 'no term' (negative: every
    candidate predicts held-out targets worse than none)."""
    term = curve[curve["head"] == head].reset_index(drop=True)
    no_term = np.isinf(term["relative_ridge"])
    if no_term.all():
        raise RuntimeError(f"the {head} fit has no candidate but 'no term' (every ridge failed)")
    gains = term.loc[no_term, "cross_validation_mse"].iloc[0] - term["cross_validation_mse"]
    best = gains[~no_term].idxmax()
    return {"chosen_ridge": float(term.loc[term["chosen"].astype(bool), "relative_ridge"].iloc[0]),
            "best_ridge": float(term.loc[best, "relative_ridge"]),
            "best_cv_gain": float(gains[best]), "best_cv_gain_se": float(term.loc[best, "gain_se"])}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--results", default="results")
    parser.add_argument("--config", default="config/config.yaml")
    parser.add_argument("--three-body-radial", type=int, default=3, help="radial functions of the three-body term")
    parser.add_argument("--three-body-range", type=float, default=0.40, help="outer end of the three-body term, nm")
    parser.add_argument("--coordination-basis", type=int, default=8, help="spline coefficients of the coordination term")
    parser.add_argument("--coordination-shell", type=float, nargs=2, default=[0.31, 0.35], help="nm, where s(r) falls from 1 to 0")
    parser.add_argument("--md-coefficients", type=float, nargs="*", default=[], help="c of W1 += c W0 to simulate, kJ/mol")
    parser.add_argument("--md-model", default="trf1", help="the model entry (kind trf1 or trf2) to run with W1 += c W0")
    parser.add_argument("--md-temperatures", type=float, nargs="+", default=[700.0], help="K")
    parser.add_argument("--md-seeds", type=int, nargs="+", default=[2026, 1])
    parser.add_argument("--md-only", action="store_true", help="only the runs of --md-coefficients, no fits")
    args = parser.parse_args()
    torch.set_num_threads(1)
    config = configuration.load(args.config)
    results = Path(args.results)
    if args.md_coefficients:
        if config["models"].get(args.md_model, {}).get("kind") not in kinds.RESPONSE_KINDS:
            parser.error(f"--md-model {args.md_model}: not an entry of kind {' or '.join(sorted(kinds.RESPONSE_KINDS))} in {args.config}")
        with tempfile.TemporaryDirectory() as folder:
            table = md_with_w0_term(config, results, args.md_model, args.md_coefficients, args.md_temperatures, args.md_seeds, folder)
        out = Path("benchmarks/results/response_capacity_md.tsv")
        out.parent.mkdir(parents=True, exist_ok=True)
        io.write_table(out, table, comment=(
            f"{args.md_model} of {results} with W1 += c W0 (c in kJ/mol; W0 scaled by w0_scale at T), CG MD as the pipeline's cgmd; "
            "eps_g, eps_a (1/deg) against the FG run at T"))
        print(table.groupby(["T_K", "coefficient"])[["w0_scale", "eps_g", "eps_a"]].agg(["mean", "std"]).to_string())
    if args.md_only:
        return
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

        # Many-body terms on the radial, local W1's residual, on the frames that fit used.
        radial = fitted["radial_local"]
        training = config["training"]
        n_frames = len(io.load_frames(beads[label])["time"])
        split = train.split_indices(n_frames, training["validation_fraction"], training["test_fraction"],
                                    training["response_frame_stride"])
        beta0 = float(units.beta(config["reference_temperature"]))
        shape = (args.three_body_radial, args.three_body_range)
        extra_terms = {  # name: (N * 3, K) forces of the term's basis energies, from positions and pairs
            "three-body": lambda x, pairs: three_body_forces(x, pairs, *shape),
            "W0": lambda x, pairs: w0_forces(radial, x, pairs),
            "coordination": lambda x, pairs: coordination_forces(x, pairs, args.coordination_basis, args.coordination_shell),
        }
        systems = {term: response.NormalEquations() for term in extra_terms}
        for part in ("train", "validation"):  # in time order: one cross-validated fit
            frames = train.load_frames(beads[label], split[part], radial.cutoff, beta0, torch.float32, "cpu",
                                       energies[label], R_LOC)
            for frame in frames:
                target, _ = response.frame_targets(radial, "trf1", "local", frame)
                w1_force = nn.head_forces(radial, frame.positions, *frame.pairs, heads=("W1",))["W1"].double()
                residual = (target - w1_force).reshape(-1).numpy()
                for term, basis in extra_terms.items():
                    systems[term].add(basis(frame.positions, frame.pairs), residual)
        neighbors = NeighborList(radial.cutoff)
        score_pairs = [neighbors(torch.as_tensor(x, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64))
                       for x, b in zip(positions, box)]
        radial_response = metrics.thermal_response(radial, positions, box)
        for term, basis in extra_terms.items():
            coefficients, table = response.solve_ridge(systems[term], np.eye(len(systems[term].rhs)))
            curve = pd.DataFrame(table).assign(head="W1")
            extra = np.stack([(basis(x, pairs) @ coefficients).reshape(-1, 3) for x, pairs in zip(positions, score_pairs)])
            predicted = radial_response + extra
            name = f"radial+{term}_local"
            score, score_se, per_frame[name] = metrics.response_score(y1, predicted)
            rows.append({"representation": f"radial+{term}", "estimator": "local", "term": "W1",
                         "n_coefficients": rows[0]["n_coefficients"] + len(coefficients),
                         **fit_rows(curve, "W1"), "score": score, "score_se": score_se, "scored": name})
            if len(coefficients) == 1:
                rows[-1]["coefficient"], rows[-1]["coefficient_se"] = least_squares_with_error(systems[term])
            print(rows[-1], flush=True)

    first = rows[0]["scored"]
    for row in rows:
        if row["scored"]:
            difference, difference_se = metrics.paired_score_difference(per_frame[row["scored"]], per_frame[first])
            row.update(score_minus_first=difference, score_minus_first_se=difference_se, n_score_frames=len(positions))
    table = pd.DataFrame(rows).drop(columns="scored")
    out = Path("benchmarks/results/response_capacity.tsv")
    out.parent.mkdir(parents=True, exist_ok=True)
    io.write_table(out, table, comment=(
        f"trf2's thermal terms fitted on the T0 frames of {results} (fm_ref's W0); best_cv_gain: the drop of the "
        "term's cross-validated MSE below no term (W1: (kJ/mol)^4/nm^2), ± SE over blocks; score: held-out score of W1; "
        f"three-body: {shape[0]} radial functions on [{THREE_BODY_R_MIN}, {shape[1]}] nm, orders 1-3, coordination F(n_i), and W0 (W1 += c W0), "
        "each on the radial local residual; coefficient: c without ridge ± jackknife SE"))
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(table.to_string(index=False))


if __name__ == "__main__":
    main()
