"""Regression targets for force matching and thermal response force matching (METHOD.md).

Every target is a per-frame sample whose conditional mean given the CG configuration R is the
wanted quantity, so a model fitted to it by least squares learns that quantity:

    y0_I = f_I                                                     E[y0 | R] = F_I
    y1_I = -(f_I - F_I(R)) (u - c)                                 E[y1 | R] = dF_I/dbeta
    y1_I = -(f_I - F_I(R)) sum_{J in N(I)} (u_J - e_J(R))          (local, truncated at r_loc)
    y2_I =  (f_I - F_I(R)) ([sum_{J in N(I)} (u_J - e_J(R))]^2 - s_I(R))   E[y2 | R] = d2F_I/dbeta2 (local)
    y2_I =  (f_I - F_I(R)) ((u - E(R))^2 - s(R)),  E(R) = sum_J e_J(R)

F(R) is the current model's mean force and e_J(R) its per-bead energy head; both must be close to
the true conditional means, because their errors leak into the targets:
    E[y1 | R] = F_b + dF (mu - c)                 with dF = F_model - F_true, mu = <u>_R
    E[y2 | R] = F_bb + 2 d Cov(f, u) - dF (Var(u) + d^2 - s)   with sum e = mu - d.
So y1 with a constant c is unbiased only for an exact F; with c = E(R) = mu the F error cancels.
Likewise y2 without s (METHOD.md's form) carries -dF Var(u), first order in the mean-force error
and multiplied by the large conditional energy variance; s(R), a fitted model of the conditional
mean of the squared residual (Var(u) + d^2), cancels it (it is the third cumulant's own centring).

Shapes: forces and mean forces (..., N, 3); total energy u (...); per-bead energies (..., N).
Leading dimensions are frames. Local sums use one pair list for all leading dimensions; for frames
with different lists, flatten them to (B * N) beads and offset each frame's indices by frame * N.
Targets are detached (they are data, not part of the model's graph) and come back in the dtype of
``forces``; energy differences are formed in the energies' own dtype first, since u is large
compared with its fluctuations (keep u in float64).
"""

import torch

from thermocg.neighbors import NeighborList, pair_displacements
from thermocg.units import beta as inverse_temperature


def force_matching_target(forces):
    """y0 = f: the mapped forces themselves (E[y0 | R] = F)."""
    return forces.detach()


def _deviation(forces, mean_forces):
    return (forces.detach() - mean_forces.detach()).to(forces.dtype)


def first_order_global_target(forces, mean_forces, energy, energy_reference):
    """y1_I = -(f_I - F_I) (u - c) with the global FG energy u (...,).

    ``energy_reference`` is c: a constant (e.g. the training-set mean of u) or a per-frame
    tensor that depends on R only, such as E(R) = sum_J e_J(R), which also cancels the bias from an
    inexact mean force (see the module docstring).
    """
    energy = energy.detach()
    residual = energy - torch.as_tensor(energy_reference, dtype=energy.dtype, device=energy.device)
    return -_deviation(forces, mean_forces) * residual.to(forces.dtype)[..., None, None]


def local_pairs(positions, box, r_loc, neighbor_list=None):
    """Full pair list (i, j) of beads closer than ``r_loc`` (nm) in a periodic box, one frame.

    ``neighbor_list`` may be a NeighborList with cutoff r_loc (any skin) to reuse between frames;
    pairs in its skin are dropped here so that N(I) is exactly the beads within r_loc.
    """
    if neighbor_list is None:
        neighbor_list = NeighborList(r_loc)
    if neighbor_list.cutoff != r_loc:
        raise ValueError(f"neighbor_list cutoff {neighbor_list.cutoff} != r_loc {r_loc}")
    i, j, shift = neighbor_list(positions, box)
    distance = pair_displacements(positions.detach(), i, j, shift).norm(dim=-1)
    keep = distance < r_loc
    return i[keep], j[keep]


def local_energy_sum(values, pairs):
    """sum_{J in N(I)} values_J for every bead I, with N(I) = I plus its partners in ``pairs``.

    values (..., N); pairs is a full list (i, j) or (i, j, shift) (shift is ignored) in which each
    neighbour appears once per bead, i.e. no periodic images of the same bead.
    """
    i, j = pairs[0], pairs[1]
    return values.index_add(-1, i, values[..., j])


def local_energy_residual(bead_energies, bead_energy_means, pairs):
    """sum_{J in N(I)} (u_J - e_J(R)), shape (..., N), in the energies' dtype."""
    residual = bead_energies.detach() - bead_energy_means.detach()
    return local_energy_sum(residual, pairs)


def first_order_local_target(forces, mean_forces, bead_energies, bead_energy_means, pairs):
    """y1_I = -(f_I - F_I) sum_{J in N(I)} (u_J - e_J): the local thermal response target."""
    residual = local_energy_residual(bead_energies, bead_energy_means, pairs)
    return -_deviation(forces, mean_forces) * residual.to(forces.dtype)[..., None]


def second_order_local_target(forces, mean_forces, bead_energies, bead_energy_means, pairs, squared_residual_means):
    """y2_I = (f_I - F_I) ([sum_{J in N(I)} (u_J - e_J)]^2 - s_I), s_I (..., N) the model of the
    squared residual's conditional mean (zeros give METHOD.md's uncentred form)."""
    residual = local_energy_residual(bead_energies, bead_energy_means, pairs)
    centred = residual**2 - squared_residual_means.detach()
    return _deviation(forces, mean_forces) * centred.to(forces.dtype)[..., None]


def second_order_global_target(forces, mean_forces, energy, bead_energy_means, squared_residual_mean):
    """y2_I = (f_I - F_I) ((u - E(R))^2 - s) with E(R) = sum_J e_J(R); u and s (...,), e (..., N)."""
    residual = energy.detach() - bead_energy_means.detach().sum(-1)
    centred = residual**2 - squared_residual_mean.detach()
    return _deviation(forces, mean_forces) * centred.to(forces.dtype)[..., None, None]


def finite_difference_response(force_plus, force_minus, temperature, delta_t):
    """(F(T0 + dT) - F(T0 - dT)) / (beta(T0 + dT) - beta(T0 - dT)): dF/dbeta at T0, error O(dT^2)."""
    beta_plus = float(inverse_temperature(temperature + delta_t))
    beta_minus = float(inverse_temperature(temperature - delta_t))
    return (force_plus - force_minus) / (beta_plus - beta_minus)


def finite_difference_second_response(force_plus, force_center, force_minus, temperature, delta_t):
    """d2F/dbeta2 at T0 from models at T0 - dT, T0, T0 + dT.

    Three-point formula on the uneven beta grid; its first-order error term is proportional to
    the difference of the two beta steps, which is O(dT^2), so the result is O(dT^2) accurate.
    """
    b_plus = float(inverse_temperature(temperature + delta_t))
    b_center = float(inverse_temperature(temperature))
    b_minus = float(inverse_temperature(temperature - delta_t))
    slope_plus = (force_plus - force_center) / (b_plus - b_center)
    slope_minus = (force_center - force_minus) / (b_center - b_minus)
    return 2.0 * (slope_plus - slope_minus) / (b_plus - b_minus)


def energy_matching_response(energy_force, mean_force, beta):
    """F_b = (F_E - F) / beta with F_E = -grad E(R), E(R) = <u>_R (energy-matching route)."""
    return (energy_force - mean_force) / beta
