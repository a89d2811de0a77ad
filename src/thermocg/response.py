"""Thermal terms fitted by least squares on top of a frozen, shared W0.

METHOD.md's regression targets have conditional means that are the wanted forces (y0: F, y1:
F_b = dF/dbeta, y2: F_bb), but y1 and y2 carry a per-sample noise 20-50 times their signal
(METHOD.md, "Measured since"). So the thermal terms get only the capacity the data can determine,
and every fit is linear:

* a head whose per-bead energy is linear in its coefficients c, e_i = B_i(R) . c, has forces
  -grad sum_i e_i = G(R) c with G the forces of the basis energies: either radial (``PairHead``:
  cubic B-splines of the pair distance, about 16 coefficients) or a network read-out on the
  frozen trunk (``EnergyHead``: the trunk's per-bead features);
* c minimises sum_frames |G c - y|^2 + lambda c^T P c, P a smoothness penalty (second differences
  of the spline coefficients) or the identity (read-outs);
* lambda is chosen by cross-validation over stretches of consecutive frames (the targets of
  frames a fit did not see are as noisy but unbiased, so their mean squared error is
  |F_b - G c|^2 + noise in expectation); "no term at all" (c = 0) is one of the candidates, so a
  term the data cannot determine comes out as zero instead of as noise.

Every model trained at T0 with energies (em, trf1, trf2) takes W0 (trunk, W0 read-out, prior) from
the force-matched model of the same data, so all reach the same W0 quality at T0: the per-bead
energy head e (local energy matching, u_J) is fitted first on the frozen trunk, then y1 and y2 are
built with that e and W0's mean force, then W1 and W2. Units: energies kJ/mol, W1 (kJ/mol)^2,
W2 (kJ/mol)^3, forces per their head's unit per nm.
"""

import json
import logging
from dataclasses import dataclass

import numpy as np
import torch

from thermocg import io, nn, observables, targets

log = logging.getLogger(__name__)

#: Candidate ridge strengths, relative to the mean diagonal of the normal matrix (plus "no term").
RELATIVE_RIDGES = tuple(10.0 ** k for k in range(-8, 3))
#: Folds of the cross-validation that chooses the ridge, each a stretch of consecutive frames.
N_FOLDS = 5
#: Blocks of consecutive frames for standard errors: frames 0.1 ps apart are correlated.
N_BLOCKS = 10


class NormalEquations:
    """Running G^T G, G^T y and y^T y of a linear least-squares problem (float64), frame by frame.

    The per-frame parts are kept (K x K each) so that an error can be given per frame, and so a
    standard error over frames (frames are the independent samples, components within one are not).
    """

    def __init__(self):
        self.frames = []  # (gram, rhs, target_square, rows) per frame

    def add(self, design, target):
        """design (rows, K), target (rows,) of one frame."""
        design = np.asarray(design, dtype=np.float64)
        target = np.asarray(target, dtype=np.float64)
        self.frames.append((design.T @ design, design.T @ target, float(target @ target), len(target)))

    @property
    def gram(self):
        return sum(frame[0] for frame in self.frames)

    @property
    def rhs(self):
        return sum(frame[1] for frame in self.frames)

    def frame_errors(self, coefficients):
        """(n_frames,) mean squared error of each frame."""
        c = np.asarray(coefficients, dtype=np.float64)
        return np.array([(c @ gram @ c - 2.0 * c @ rhs + square) / rows for gram, rhs, square, rows in self.frames])

    def mean_square_error(self, coefficients):
        return float(np.mean(self.frame_errors(coefficients)))

    def subset(self, indices):
        """The normal equations of the frames at ``indices`` only."""
        subset = NormalEquations()
        subset.frames = [self.frames[i] for i in indices]
        return subset


def smoothness_penalty(n_coefficients):
    """D^T D for second differences of the coefficients (a P-spline penalty), plus the ends."""
    padded = n_coefficients + 2  # the pinned zeros next to each end count as neighbours
    second = np.diff(np.eye(padded), n=2, axis=0)[:, 1:-1]
    return second.T @ second


def solve_ridge(system, penalty, n_folds=N_FOLDS, gap_frames=0):
    """Coefficients minimising the error + lambda c^T P c on all of ``system``'s frames, lambda chosen by cross-validation.

    The targets are as noisy on every frame, but unbiased, so the error a fit makes on frames it did
    not see measures |F_b - G c|^2 + noise. The frames (in time order) are cut into ``n_folds``
    stretches of consecutive frames; each candidate is fitted on all stretches but one and scored on
    that one, so that every frame scores a fit that did not see it (only the frames at a
    stretch's ends have correlated neighbours in its fit; ``gap_frames`` leaves that many frames on
    each side of the scored stretch out of its fit as well: on the default run gaps of up to 50 frames,
    5 ps, choose the same ridges: benchmarks/bench_cv_gap.py). A term is kept only if its
    cross-validated error beats "no term" (c = 0) by more than two standard errors (paired, over
    blocks of consecutive frames), and then the ridge with the least cross-validated error is fitted on
    every frame. Not the strongest ridge within one standard error of the best (the one-standard-error
    rule): a stronger ridge shrinks a thermal term towards zero, and the term's force is multiplied by
    dbeta away from T0, so the shrinkage becomes a systematic under-correction at the temperatures
    that matter (on a second FG draw of the default config, the rule's ridge, 1000x the best, left
    trf1's RDF error beyond the noise at 450-700 K at 0.45-0.54 of fm_ref's, the best at 0.18-0.25;
    docs/default_runs.md, "A second FG draw").
    Returns (coefficients, table rows [{relative_ridge, train_mse, cross_validation_mse, gain_se,
    chosen}]); relative_ridge inf is c = 0; train_mse is the error of the fit on every frame;
    gain_se is the standard error of the cross-validated error's difference to "no term".
    """
    n_frames = len(system.frames)
    if n_frames < n_folds:
        raise ValueError(f"cross-validation needs at least {n_folds} frames, got {n_frames}")
    gram, rhs = system.gram, system.rhs
    scale = np.trace(gram) / len(rhs)
    # A coefficient that neither the data nor the penalty touch (a read-out's constant has no force)
    # is left at zero: solving for it too would make every candidate singular.
    free = (np.diag(gram) != 0) | (np.diag(penalty) != 0)

    def fit(gram, rhs, ridge):
        coefficients = np.zeros(len(rhs))
        if np.isfinite(ridge):
            coefficients[free] = np.linalg.solve((gram + ridge * scale * penalty)[np.ix_(free, free)], rhs[free])
        return coefficients

    # each fold's frames, and the normal equations of all the others but the gap beside the fold
    folds = []
    for fold in np.array_split(np.arange(n_frames), n_folds):
        left_out = system.subset(range(max(0, fold[0] - gap_frames), min(n_frames, fold[-1] + 1 + gap_frames)))
        folds.append((system.subset(fold), gram - left_out.gram, rhs - left_out.rhs))
    candidates, errors = [], []
    for ridge in (float("inf"), *sorted(RELATIVE_RIDGES, reverse=True)):
        try:
            coefficients = fit(gram, rhs, ridge)
            held_out = [held.frame_errors(fit(rest_gram, rest_rhs, ridge)) for held, rest_gram, rest_rhs in folds]
        except np.linalg.LinAlgError:
            continue
        candidates.append((ridge, coefficients))
        errors.append(np.concatenate(held_out))
    best = int(np.argmin([e.mean() for e in errors]))
    # paired, over blocks of consecutive frames (they are correlated)
    gain_se = [observables.block_standard_error(errors[0] - e, N_BLOCKS) for e in errors]
    chosen = best if errors[0].mean() - errors[best].mean() > 2.0 * gain_se[best] else 0
    rows = [{"relative_ridge": ridge, "train_mse": system.mean_square_error(c), "cross_validation_mse": float(e.mean()),
             "gain_se": se, "chosen": k == chosen}
            for k, ((ridge, c), e, se) in enumerate(zip(candidates, errors, gain_se))]
    return candidates[chosen][1], rows


# ---------------------------------------------------------------------------------------------
# Linear heads: basis energies and forces, and writing fitted coefficients back
# ---------------------------------------------------------------------------------------------


def _trunk_features(model, head_name, geometry):
    trunk = model.trunks[model.trunk_of[head_name]]
    return model.heads[head_name].features(trunk(geometry))


def basis_energies(model, head_name, geometry):
    """(N, K) per-bead basis energies of a head (its energy is basis . coefficients)."""
    head = model.heads[head_name]
    if isinstance(head, nn.PairHead):
        return head.basis_per_bead(geometry)
    features = _trunk_features(model, head_name, geometry)
    return torch.cat([features, torch.ones_like(features[:, :1])], dim=1)  # the bias: a constant energy


def basis_forces(model, head_name, positions, i, j, shift):
    """(N * 3, K) forces of each basis energy summed over beads, kJ/(mol nm) per coefficient unit."""
    positions = positions.detach().requires_grad_(True)
    geometry = model.pair_geometry(positions, i, j, shift, positions.dtype)
    totals = basis_energies(model, head_name, geometry).sum(0)
    columns = []
    for k in range(len(totals)):
        if not totals.requires_grad:  # a constant basis energy has no force
            columns.append(torch.zeros_like(positions))
            continue
        (gradient,) = torch.autograd.grad(totals[k], positions, retain_graph=True, allow_unused=True)
        columns.append(torch.zeros_like(positions) if gradient is None else -gradient)
    return torch.stack(columns, dim=-1).reshape(-1, len(totals)).detach()


def set_coefficients(model, head_name, coefficients):
    """Write fitted basis coefficients into the head (PairHead: spline; EnergyHead: read-outs)."""
    head = model.heads[head_name]
    c = torch.as_tensor(np.asarray(coefficients), dtype=next(head.parameters()).dtype)
    with torch.no_grad():
        if isinstance(head, nn.PairHead):
            head.coefficients.copy_(c)
            return
        n_features = head.readouts[0].weight.shape[1]
        for k, readout in enumerate(head.readouts):
            readout.weight.copy_(c[k * n_features : (k + 1) * n_features].unsqueeze(0) / head.scale)
            readout.bias.zero_()
        head.readouts[0].bias.fill_(float(c[-1]) / head.scale)


def penalty_for(model, head_name, n_coefficients):
    if isinstance(model.heads[head_name], nn.PairHead):
        return smoothness_penalty(n_coefficients)
    penalty = np.eye(n_coefficients)
    penalty[-1, -1] = 0.0  # the constant has no force: leave it free
    return penalty


# ---------------------------------------------------------------------------------------------
# The fit
# ---------------------------------------------------------------------------------------------


def share_w0(model, base):
    """Copy the trunk, the W0 read-out and the prior of ``base`` into ``model`` and freeze them."""
    if base.config["n_features"] != model.config["n_features"] or base.cutoff != model.cutoff:
        raise ValueError("the W0 model's network differs from this model's: both must come from the same network settings")
    state = {k: v for k, v in base.state_dict().items() if k.startswith(("trunks.", "heads.W0.", "prior."))}
    missing = [k for k in state if k not in model.state_dict()]
    if missing:
        raise ValueError(f"cannot share W0: this model has no {missing[:3]}")
    model.load_state_dict(state, strict=False)
    for name, parameter in model.named_parameters():
        if name in state:
            parameter.requires_grad_(False)


def _host(tensor):
    """A float64 numpy copy of a tensor on any device: the normal equations are summed on the host."""
    return tensor.detach().double().cpu().numpy()


def _mean_force(model, frame):
    """Prior + W0 force at T0 (N, 3), detached."""
    heads = ("W0", "prior") if model.prior.enabled else ("W0",)
    forces = nn.head_forces(model, frame.positions, *frame.pairs, heads=heads)
    return sum(forces.values())


def energy_system(model, frames):
    """The normal equations of the e head's fit to the per-bead FG energies u_J (local energy matching)."""
    system = NormalEquations()
    for frame in frames:
        system.add(_energy_design(model, frame), _host(frame.bead_energies))
    return system


def _energy_fit(model, frames):
    """Fit the e head to the per-bead FG energies u_J (local energy matching)."""
    system = energy_system(model, frames)
    coefficients, rows = solve_ridge(system, penalty_for(model, "e", len(system.rhs)))
    set_coefficients(model, "e", coefficients)
    return coefficients, rows


def _energy_residual(estimator, frame, bead_means):
    """The energy residual y1 and y2 use: local (N,) sums over N(I) of u_J - e_J, or global (1,) u - E."""
    if estimator == "local":
        return targets.local_energy_residual(frame.bead_energies, bead_means.double(), frame.local_pairs)
    return (frame.energy - bead_means.double().sum()).reshape(1)


def _energy_design(model, frame, summed=False):
    """(N, K) per-bead basis of the e head (trunk features + 1), or (1, K) summed over beads; float64 numpy."""
    with torch.no_grad():
        geometry = model.pair_geometry(frame.positions, *frame.pairs, frame.positions.dtype)
        design = basis_energies(model, "e", geometry).double()
    return _host(design.sum(0, keepdim=True) if summed else design)


def _squared_residual_fit(model, estimator, frames):
    """Fit s(R), the conditional mean of the squared energy residual, on e's basis (per bead for the
    local residual, summed for the global one; ridge by cross-validation).

    y2 centred with s has no bias from the mean-force error dF (targets.py); returns (coefficients, rows).
    """
    system = NormalEquations()
    for frame in frames:
        with torch.no_grad():
            bead_means = model.per_bead_energies(frame.positions, *frame.pairs)["e"]
        squared = _host(_energy_residual(estimator, frame, bead_means) ** 2)
        system.add(_energy_design(model, frame, estimator != "local"), squared)
    return solve_ridge(system, penalty_for(model, "e", len(system.rhs)))


def _targets(kind, estimator, frame, mean_force, bead_means, squared_residual_means):
    """y1 (and y2 for trf2) of one frame at T0, as (N, 3) arrays."""
    f = frame.forces.double()
    mean = mean_force.double()
    means = bead_means.double()
    if estimator == "local":
        y1 = targets.first_order_local_target(f, mean, frame.bead_energies, means, frame.local_pairs)
        y2 = None if kind != "trf2" else targets.second_order_local_target(
            f, mean, frame.bead_energies, means, frame.local_pairs, squared_residual_means)
        return y1, y2
    y1 = targets.first_order_global_target(f[None], mean[None], frame.energy[None], means.sum()[None])[0]
    y2 = None if kind != "trf2" else targets.second_order_global_target(
        f[None], mean[None], frame.energy[None], means[None], squared_residual_means)[0]
    return y1, y2


def frame_targets(model, kind, estimator, frame, squared_residual=None):
    """y1 (and y2 for trf2, else None) of one T0 frame, (N, 3) float64, built with the model's W0
    mean force and its fitted e head; ``squared_residual``: the coefficients of
    :func:`_squared_residual_fit` (trf2 only)."""
    mean_force = _mean_force(model, frame)
    with torch.no_grad():
        bead_means = model.per_bead_energies(frame.positions, *frame.pairs)["e"]
    squared_residual_means = None
    if squared_residual is not None:
        squared_residual_means = torch.as_tensor(_energy_design(model, frame, estimator != "local") @ squared_residual,
                                                 device=frame.positions.device)
    return _targets(kind, estimator, frame, mean_force, bead_means, squared_residual_means)


@dataclass
class ThermalSystems:
    """What the thermal terms of one T0 data set are fitted from (:func:`thermal_systems`)."""

    e_coefficients: np.ndarray  # the fitted e head
    heads: dict  # "W1" (and "W2") -> NormalEquations on their shared basis
    rows: list  # the table rows of e (and of s, the squared residual's fit)


def thermal_systems(model, estimator, frames):
    """Fit e in place, then build the normal equations of the model's thermal heads (W1, and W2 if
    it has one) on their shared basis.

    ``frames``: the T0 frames in time order (thermocg.train.Frame, with bead energies and, for the
    local estimator, local pairs). W0 must already be set. With the reduced expansion W2's system is
    of W2 + 2 W1 / beta0 (:func:`solve_thermal_terms`). The per-frame basis forces are nearly all of
    the cost: models that differ only in their kind (trf1, trf2) share one set (:func:`save_systems`).
    """
    e_coefficients, e_rows = _energy_fit(model, frames)
    rows = [dict(row, head="e") for row in e_rows]
    thermal = [h for h in ("W1", "W2") if h in model.heads]
    systems = {head: NormalEquations() for head in thermal}
    if not thermal:
        return ThermalSystems(e_coefficients, systems, rows)
    kind = "trf2" if "W2" in thermal else "trf1"  # the targets _targets builds
    squared_residual = None
    if "W2" in thermal:
        squared_residual, variance_rows = _squared_residual_fit(model, estimator, frames)
        rows += [dict(row, head="squared_residual") for row in variance_rows]
    for number, frame in enumerate(frames):
        y1, y2 = frame_targets(model, kind, estimator, frame, squared_residual)
        if y2 is not None and model.reduced_expansion:
            y2 = y2 + (2.0 / model.reference_beta) * y1
        design = _host(basis_forces(model, thermal[0], frame.positions, *frame.pairs))  # W1 and W2 share one basis
        for head, y in (("W1", y1), ("W2", y2)):
            if head in thermal:
                systems[head].add(design, _host(y.reshape(-1)))
        if number % 50 == 0:
            log.info("targets: frame %d/%d", number + 1, len(frames))
    return ThermalSystems(e_coefficients, systems, rows)


def solve_thermal_terms(model, systems):
    """Set e and choose the ridges of and set the thermal heads the model has (W1, W2) from
    ``systems`` (:func:`thermal_systems`, which may hold more heads); returns the table rows.

    With the reduced expansion (nn.CGModel) the second-order term that "no term" leaves out is the
    curvature of beta W, d2(beta W)/dbeta2 = 2 W1 + beta0 W2, not W2: so W2's fit is of
    W2 + 2 W1 / beta0 (target y2 + 2 y1 / beta0), and W2 follows by subtracting 2 W1 / beta0 (W1
    and W2 share one basis). A curvature the data cannot determine then leaves trf2 = trf1.
    """
    set_coefficients(model, "e", systems.e_coefficients)
    second_order = "W2" in model.heads
    rows = [row for row in systems.rows if second_order or row["head"] != "squared_residual"]
    curvature_of_reduced = model.reduced_expansion
    fitted = {}
    for head in ("W1", "W2"):
        if head not in model.heads:
            continue
        if head not in systems.heads:
            raise ValueError(f"no normal equations for the {head} head")
        system = systems.heads[head]
        coefficients, head_rows = solve_ridge(system, penalty_for(model, head, len(system.rhs)))
        fitted[head] = coefficients
        if head == "W2" and curvature_of_reduced:
            coefficients = coefficients - (2.0 / model.reference_beta) * fitted["W1"]
        set_coefficients(model, head, coefficients)
        label = "W2 + 2 W1/beta0" if head == "W2" and curvature_of_reduced else head  # what the fit is of
        chosen = next(row for row in head_rows if row["chosen"])
        log.info("%s: relative ridge %g, cross-validated MSE %.6g (no term: %.6g; standard error of the difference %.3g)",
                 label, chosen["relative_ridge"], chosen["cross_validation_mse"], head_rows[0]["cross_validation_mse"],
                 chosen["gain_se"])
        rows += [dict(row, head=label) for row in head_rows]
    return rows


def fit_thermal_terms(model, estimator, frames):
    """Fit e, then W1 and W2 where the model has them, in place; returns the fit table (one row per
    candidate): :func:`thermal_systems` then :func:`solve_thermal_terms`."""
    return solve_thermal_terms(model, thermal_systems(model, estimator, frames))


def save_systems(path, systems, fingerprint):
    """Write :func:`thermal_systems`'s result with ``fingerprint`` (a JSON-able dict of what it was
    built from: frames, W0 and the response settings)."""
    heads = sorted(systems.heads)  # W1 at least: only trf1 and trf2 entries have their systems saved
    frames = systems.heads[heads[0]].frames
    arrays = {
        "e_coefficients": systems.e_coefficients,
        "gram": np.stack([frame[0] for frame in frames]),  # one basis for every head
        "n_rows": np.array([frame[3] for frame in frames], dtype=np.int64),
    }
    for head in heads:
        arrays[f"rhs_{head}"] = np.stack([frame[1] for frame in systems.heads[head].frames])
        arrays[f"target_square_{head}"] = np.array([frame[2] for frame in systems.heads[head].frames])
    metadata = {"heads": heads, "rows": systems.rows, "fingerprint": fingerprint}
    io.save_frames(path, metadata=json.dumps(metadata), **arrays)


def load_systems(path, fingerprint):
    """Read :func:`save_systems`'s file; its fingerprint must equal ``fingerprint``: normal equations
    of other frames, another W0 or other response settings would fit a model to the wrong data."""
    arrays = io.load_frames(path)
    metadata = json.loads(str(arrays["metadata"]))
    if metadata["fingerprint"] != json.loads(json.dumps(fingerprint)):
        raise ValueError(f"{path} was built from other frames, W0 or response settings than this model's "
                         f"(its fingerprint {metadata['fingerprint']}, this model's {fingerprint}): remake it")
    heads = {}
    for head in metadata["heads"]:
        heads[head] = NormalEquations()
        heads[head].frames = [(gram, rhs, float(square), int(rows)) for gram, rhs, square, rows in zip(
            arrays["gram"], arrays[f"rhs_{head}"], arrays[f"target_square_{head}"], arrays["n_rows"])]
    return ThermalSystems(arrays["e_coefficients"], heads, metadata["rows"])
