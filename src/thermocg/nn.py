"""The many-body CG network: HIP-NN-TS trunk, repulsive prior, temperature heads, save/load.

The model (METHOD.md, "The temperature-dependent CG model") is

    W(R; beta) = W_prior(R) + W0(R) + dbeta W1(R) + 1/2 dbeta^2 W2(R),   dbeta = beta - beta0,

or, with ``expansion="reduced"`` (CGModel), the same heads in the Taylor series of beta W
(docs/expansion.md); each W_k a sum of per-bead energies read out of a HIP-NN-TS network (Chigaev et al. 2023, as
published in lanl/hippynn; reimplemented here in plain torch). An optional head "e" learns the
per-bead conditional mean of the FG energy share (local energy matching); it is not part of W.

Units: positions nm, energies kJ/mol, dbeta mol/kJ (so W1 is in (kJ/mol)^2, W2 in (kJ/mol)^3),
forces kJ/(mol nm).

Pairs follow thermocg.neighbors: ``(i, j, shift)`` with displacement
``positions[j] - positions[i] + shift``, and the list must be *full* (each pair as (i, j) and
(j, i)), because bead i's environment is read from the pairs whose first index is i. Pairs beyond
``model.cutoff`` (a Verlet skin) are allowed and ignored. Several frames can be evaluated as one
disjoint system (see :func:`batch_frames`).

How one interaction layer is evaluated (the expensive part, see benchmarks/bench_nn.py):
with sensitivities s_nu(r_p), angular factors Y_c(rhat_p) (c = 1 + 3 + 5 components, and 7 more
at angular order 3) and input features z (N, F_in), the layer needs a^c_i = sum_p Y_c(p) sum_nu s_nu(p) (V_nu z_{j_p}).
We contract V with the features first, Q_j = V z_j (N, nu, F_out), which is one matrix product,
then lay the pairs out in padded per-bead blocks so that the two neighbour sums are batched matrix
products: messages m_p = s(p) @ Q_{j_p} grouped by j, then a_i = Y(i)^T @ m(i) grouped by i. No
tensor of size (pairs x nu x features) or (pairs x 9 x features) is materialised. In the first
layer every bead has the same input (a learned constant embedding: all beads are water), so Q
is one (nu, F_out) matrix and the layer reduces to a tiny product.
"""

import json
import math
import pickle
import zipfile
from io import BytesIO
from pathlib import Path
from typing import Dict, List, NamedTuple, Optional, Tuple

import torch
from torch import Tensor

from thermocg.io import DamagedFileError, atomic_write
from thermocg.pair import pinned_spline, pinned_spline_basis
from thermocg.units import KB

#: How the thermal terms extrapolate in beta (CGModel's ``expansion``).
EXPANSIONS = ("beta", "reduced")

#: Names a head may have: the three orders of W(R; beta) and the per-bead energy "e".
HEAD_NAMES = ("W0", "W1", "W2", "e")
#: Format tag stored in model files (bump when the layout of the file changes).
FILE_FORMAT = "thermocg.nn.CGModel/1"

#: Repulsive prior for water beads: the wall of the repulsive core, which a model trained at T0
#: cannot learn below the closest T0 pairs (0.24 nm at 300 K) but hotter runs reach. It ends where the
#: T0 pair-projected force changes sign (0.2725-0.2775 nm), decays over 0.014 nm and gives about
#: 1500 kJ/(mol nm) at 0.2425 nm, where the FG force is 1800 at every temperature from 250 to 700 K
#: (benchmarks/bench_prior.py). The networks learn the rest on top of it, where the data are.
DEFAULT_PRIOR = {"onset_radius": 0.27, "decay_length": 0.014, "strength": 5.0}


# ---------------------------------------------------------------------------------------------
# Pair geometry: computed once per call, shared by the prior and every interaction layer
# ---------------------------------------------------------------------------------------------


class PairGeometry(NamedTuple):
    """Pairs within the cutoff, with what every layer needs (P pairs, N beads).

    The layers see the pairs in padded per-bead blocks: grouped by their first bead i
    (width_first rows per bead) and, when a layer needs it (width_second > 0), by their second
    bead j. Padding rows hold distance = cutoff and zero angular factors, so they add nothing.
    Per-pair arrays are stored component-major ((9, pairs), not (pairs, 9)): element-wise
    kernels on long contiguous rows are several times faster on CPU than on rows of 3 or 9.
    The harmonics have (order + 1)^2 rows: 9 at angular order 2, 16 at order 3.
    """

    n_beads: int
    first: Tensor  # (P,) i, the bead whose environment the pair belongs to
    distance: Tensor  # (P,) nm
    width_first: int
    distance_by_first: Tensor  # (N * width_first,) nm
    # (9 or 16, N * width_first): angular_harmonics (orders 0-2, or 0-3) times the cutoff taper
    tapered_harmonics_by_first: Tensor
    width_second: int
    distance_by_second: Tensor  # (N * width_second,) nm (empty when unused)
    second_slot_of_first_slot: Tensor  # (N * width_first,) row in the per-j layout (0 for padding)


def padded_slots(index: Tensor, n_rows: int, width: Optional[int] = None) -> Tuple[Tensor, int]:
    """Place P items into n_rows blocks of equal width by their ``index``.

    Returns each item's row in the flattened (n_rows * width) layout, and the width (the largest
    block, at least 1; read from the device unless the caller knows it). On the CPU an index that
    is already sorted skips the sort; on CUDA a stable sort ranks the items, which gives the same
    layout for a sorted index without asking the host whether it is sorted.
    """
    # (a scatter, not torch.bincount, which reads the largest index back from a CUDA device)
    counts = torch.zeros(n_rows, dtype=index.dtype, device=index.device).index_add_(0, index, torch.ones_like(index))
    if width is None:
        width = max(int(counts.max()), 1) if index.numel() > 0 else 1
    block_start = torch.cumsum(counts, 0) - counts
    position = torch.arange(index.numel(), device=index.device)
    if not index.is_cuda and bool((index[1:] >= index[:-1]).all()):
        rank = position - block_start[index]
    else:
        order = torch.argsort(index, stable=index.is_cuda)  # any order inside a block will do
        rank = torch.empty_like(index)
        rank[order] = position - block_start[index[order]]
    return index * width + rank, width


#: The highest angular orders a model may have (CGModel's angular_order); order l has 2 l + 1 rows.
ANGULAR_ORDERS = (2, 3)


def angular_harmonics(unit: Tensor, order: int = 2) -> Tensor:
    """(3, P) unit vectors -> ((order + 1)^2, P): [1], rhat (3), rhat rhat^T - I/3 (5) and, for
    order 3, the traceless part of rhat rhat rhat (7).

    Each order l is written in an orthonormal basis of the traceless symmetric rank-l tensors, so
    the dot product of two unit vectors' order-l rows is the Frobenius product of their tensors:
    1, c, c^2 - 1/3 and c^3 - 3 c / 5 for c = u . v (Legendre P_l(c) times 1, 1, 2/3, 2/5). And
    the Euclidean norm of a sum of such rows is the Frobenius norm of the summed tensor.
    Four neighbours at the corners of a regular tetrahedron sum to zero at orders 1 and 2: only
    order 3 tells tetrahedral order (water's first shell) from an isotropic environment.
    """
    if order != 2 and order != 3:  # ANGULAR_ORDERS, spelled out for TorchScript
        raise ValueError(f"angular order must be 2 or 3, got {order}")
    x, y, z = unit.unbind(0)
    sqrt2, sqrt6 = math.sqrt(2.0), math.sqrt(6.0)
    xx, yy, zz = x * x, y * y, z * z
    rows = [
        torch.ones_like(x), x, y, z,
        sqrt2 * x * y, sqrt2 * x * z, sqrt2 * y * z, (xx - yy) / sqrt2, (2.0 * zz - xx - yy) / sqrt6,
    ]  # fmt: skip
    if order >= 3:
        five_zz_minus_one = 5.0 * zz - 1.0
        rows += [
            0.5 * y * (3.0 * xx - yy), sqrt6 * x * y * z, math.sqrt(0.15) * y * five_zz_minus_one,
            z * (5.0 * zz - 3.0) / math.sqrt(10.0), math.sqrt(0.15) * x * five_zz_minus_one,
            math.sqrt(1.5) * z * (xx - yy), 0.5 * x * (xx - 3.0 * yy),
        ]  # fmt: skip
    return torch.stack(rows)


def cutoff_taper(distance: Tensor, cutoff: float) -> Tensor:
    """cos^2(pi r / (2 r_c)): 1 at r = 0, and 0 with zero slope at r = r_c (use for r <= r_c only)."""
    return torch.cos((0.5 * math.pi / cutoff) * distance).square()


class PairLayout(NamedTuple):
    """Where each listed pair sits in the padded per-bead blocks: fixed for one pair list.

    Computed once per neighbour-list build (:func:`pair_layout`); with it, :func:`pair_geometry`
    masks the pairs beyond the cutoff instead of dropping them, so a call has fixed shapes and
    reads nothing back from the device.
    """

    slot_first: Tensor  # (P,) row of each pair in the (N * width_first) layout grouped by i
    width_first: int
    slot_second: Tensor  # (P,) row in the layout grouped by j (empty when unused)
    width_second: int


def pair_layout(
    i: Tensor, j: Tensor, n_beads: int, by_second: bool = True,
    width_first: Optional[int] = None, width_second: Optional[int] = None,
) -> PairLayout:  # fmt: skip
    """The padded layout of every listed pair (see :class:`PairLayout`); the widths (the most
    pairs of one bead as first and as second member) when the caller knows them, so that nothing
    is read back from the device."""
    slot_first, first_width = padded_slots(i, n_beads, width_first)
    slot_second, second_width = torch.zeros(0, dtype=torch.long, device=i.device), 0
    if by_second:
        slot_second, second_width = padded_slots(j, n_beads, width_second)
    return PairLayout(slot_first, first_width, slot_second, second_width)


def pair_geometry(
    positions: Tensor,
    i: Tensor,
    j: Tensor,
    shift: Tensor,
    cutoff: float,
    dtype: torch.dtype,
    by_second: bool = True,
    layout: Optional[PairLayout] = None,
    angular_order: int = 2,
) -> PairGeometry:
    """Differentiable pair geometry (in ``dtype``) of the pairs closer than ``cutoff`` (nm).

    ``by_second=False`` skips the per-j layout (only layers whose inputs differ between beads
    need it). Without ``layout`` the pairs beyond the cutoff (a Verlet skin) are dropped and the
    padded blocks are laid out anew; with the list's :class:`PairLayout` (made with the same
    ``by_second``) they stay in their slots with the values of padding (distance = cutoff, zero
    harmonics), which gives the same energy up to the order of the float sums.
    ``angular_order``: the highest order of the harmonics (:func:`angular_harmonics`).
    """
    n_beads = positions.shape[0]
    coordinates = positions.t()
    displacement = (coordinates.index_select(1, j) - coordinates.index_select(1, i) + shift.t()).to(dtype)  # (3, P)
    distance = torch.sqrt(displacement.square().sum(0))
    first, second = i, j
    inside = distance.detach() < cutoff
    if layout is None and not bool(inside.all()):  # a Verlet skin: drop the pairs beyond the cutoff
        keep = torch.nonzero(inside).squeeze(1)
        first, second = i.index_select(0, keep), j.index_select(0, keep)
        displacement, distance = displacement.index_select(1, keep), distance.index_select(0, keep)
    unit = displacement / distance
    taper = cutoff_taper(distance, cutoff)
    if layout is None:
        layout = pair_layout(first, second, n_beads, by_second)
    else:
        # where() gives the masked pairs exactly zero gradient, as if they had been dropped; masking
        # the taper, one row, masks every harmonic.
        distance = torch.where(inside, distance, torch.full_like(distance, cutoff))
        taper = torch.where(inside, taper, torch.zeros_like(taper))
    harmonics = angular_harmonics(unit, angular_order) * taper

    slot_first, width_first = layout.slot_first, layout.width_first
    distance_by_first = distance.new_full((n_beads * width_first,), cutoff).index_copy(0, slot_first, distance)
    harmonics_by_first = harmonics.new_zeros(harmonics.shape[0], n_beads * width_first).index_copy(
        1, slot_first, harmonics
    )
    distance_by_second, width_second = distance.new_zeros(0), 0
    second_slot_of_first_slot = torch.zeros(0, dtype=torch.long, device=positions.device)
    if by_second:
        slot_second, width_second = layout.slot_second, layout.width_second
        distance_by_second = distance.new_full((n_beads * width_second,), cutoff).index_copy(0, slot_second, distance)
        # Padding rows point at row 0: whatever they fetch is multiplied by zero harmonics.
        second_slot_of_first_slot = torch.zeros(n_beads * width_first, dtype=torch.long, device=positions.device)
        second_slot_of_first_slot[slot_first] = slot_second
    return PairGeometry(
        n_beads=n_beads,
        first=first,
        distance=distance,
        width_first=width_first,
        distance_by_first=distance_by_first,
        tapered_harmonics_by_first=harmonics_by_first,
        width_second=width_second,
        distance_by_second=distance_by_second,
        second_slot_of_first_slot=second_slot_of_first_slot,
    )


# ---------------------------------------------------------------------------------------------
# Repulsive prior
# ---------------------------------------------------------------------------------------------


class RepulsivePrior(torch.nn.Module):
    """Pair repulsion U(r) = A [exp(-x) - 1 + x - x^2/2], x = (r - r_on)/lambda, for r < r_on; 0 beyond.

    U, its force and the force's derivative all vanish at the onset r_on (C^2), U > 0 and the
    force is repulsive everywhere below it, and U grows like A exp((r_on - r)/lambda) at short
    range. Parameters are fixed (not trained): onset_radius and decay_length in nm, strength A
    in kJ/mol. ``enabled=False`` gives a prior that is zero everywhere.
    """

    def __init__(self, onset_radius: float, decay_length: float, strength: float, enabled: bool = True):
        super().__init__()
        if onset_radius <= 0 or decay_length <= 0 or strength < 0:
            raise ValueError(
                f"prior needs onset_radius > 0, decay_length > 0 (nm), strength >= 0 (kJ/mol); "
                f"got {onset_radius}, {decay_length}, {strength}"
            )
        self.onset_radius = float(onset_radius)
        self.decay_length = float(decay_length)
        self.strength = float(strength)
        self.enabled = bool(enabled)

    def pair_energy(self, distance: Tensor) -> Tensor:
        """U(r) in kJ/mol for distances r in nm."""
        x = torch.clamp((distance - self.onset_radius) / self.decay_length, max=0.0)
        return self.strength * (torch.expm1(-x) + x - 0.5 * x * x)

    def forward(self, geometry: PairGeometry) -> Tensor:
        """Per-bead prior energy (N,): half of each pair's U to each bead (the list is full)."""
        per_bead = torch.zeros(geometry.n_beads, dtype=geometry.distance.dtype, device=geometry.distance.device)
        if not self.enabled:
            return per_bead
        return per_bead.index_add(0, geometry.first, 0.5 * self.pair_energy(geometry.distance))


# ---------------------------------------------------------------------------------------------
# HIP-NN-TS layers
# ---------------------------------------------------------------------------------------------


class InverseSensitivity(torch.nn.Module):
    """Gaussians in 1/r: g_nu(r) = exp(-sigma_nu^2 (1/r - 1/mu_nu)^2 / 2).

    The HIP-NN sensitivity is s_nu(r) = g_nu(r) cos^2(pi r / (2 r_c)) for r < r_c; the taper is
    applied to the angular factors instead (see PairGeometry), which gives the same sums with
    one pass less over the (pairs x sensitivities) array. mu (nm) starts at the reciprocals of an
    even grid between 1/soft_max and 1/soft_min, sigma (nm) at 2 n soft_min, as in hippynn; both
    are learned.
    """

    def __init__(self, n_sensitivities: int, soft_min: float, soft_max: float, cutoff: float):
        super().__init__()
        if not 0 < soft_min < soft_max <= cutoff:
            raise ValueError(f"need 0 < soft_min < soft_max <= cutoff, got {soft_min}, {soft_max}, {cutoff}")
        inverse_grid = torch.linspace(1.0 / soft_max, 1.0 / soft_min, n_sensitivities, dtype=torch.float64)
        self.mu = torch.nn.Parameter((1.0 / inverse_grid).to(torch.get_default_dtype()))
        self.sigma = torch.nn.Parameter(torch.full((n_sensitivities,), 2.0 * n_sensitivities * soft_min))

    def forward(self, distance: Tensor) -> Tensor:
        """(P,) distances in nm -> (P, n_sensitivities)."""
        scaled = (1.0 / distance.unsqueeze(1) - 1.0 / self.mu) * (self.sigma * math.sqrt(0.5))
        # Capped so that exp never underflows (exp's underflow path is slow on CPUs): exp(-50) ~ 2e-22.
        return torch.exp(-scaled.square().clamp(max=50.0))


class TensorSensitivityInteraction(torch.nn.Module):
    """HIP-NN-TS interaction layer with l = 0, 1, 2 (hippynn's InteractLayerQuad), and l = 3 with
    ``angular_order=3``.

    out_i = a^0_i + sum_{l >= 1} alpha_l * sqrt(|a^l_i|^2 + eps) + W z_i + b,
    a^l_i = sum_{j in N(i)} sum_nu s_nu(r_ij) Y_l(rhat_ij) V_nu z_j (Y_l: :func:`angular_harmonics`).
    The alpha_l are ``vector_scale``, ``quadrupole_scale`` and ``octupole_scale``. With
    ``uniform_input`` every bead's input is taken to be z_0 (the first layer on identical beads).
    """

    def __init__(
        self,
        n_in: int,
        n_out: int,
        n_sensitivities: int,
        soft_min: float,
        soft_max: float,
        cutoff: float,
        norm_eps: float,
        uniform_input: bool,
        angular_order: int = 2,
    ):
        super().__init__()
        if angular_order not in ANGULAR_ORDERS:
            raise ValueError(f"angular_order must be one of {ANGULAR_ORDERS}, got {angular_order}")
        self.n_in = n_in
        self.n_out = n_out
        self.n_sensitivities = n_sensitivities
        self.norm_eps = float(norm_eps)
        self.uniform_input = bool(uniform_input)
        self.n_harmonics = (angular_order + 1) ** 2
        self.harmonic_sizes = [2 * order + 1 for order in range(angular_order + 1)]
        self.sensitivity = InverseSensitivity(n_sensitivities, soft_min, soft_max, cutoff)
        self.weights = torch.nn.Parameter(torch.empty(n_sensitivities, n_out, n_in))  # V
        self.self_interaction = torch.nn.Linear(n_in, n_out)  # W z + b
        self.vector_scale = torch.nn.Parameter(torch.empty(n_out))  # alpha_1
        self.quadrupole_scale = torch.nn.Parameter(torch.empty(n_out))  # alpha_2
        torch.nn.init.xavier_normal_(self.weights)
        torch.nn.init.xavier_normal_(self.self_interaction.weight)
        torch.nn.init.normal_(self.vector_scale)
        torch.nn.init.normal_(self.quadrupole_scale)
        if angular_order >= 3:  # only then, so that the files of order-2 models keep their layout
            self.octupole_scale = torch.nn.Parameter(torch.empty(n_out))  # alpha_3
            torch.nn.init.normal_(self.octupole_scale)

    def environment(self, features: Tensor, geometry: PairGeometry) -> List[Tensor]:
        """[a^0 (N, n_out), a^1 (N, 3, n_out), a^2 (N, 5, n_out), (a^3 (N, 7, n_out))] for every bead."""
        n_beads = geometry.n_beads
        harmonics = geometry.tapered_harmonics_by_first.view(self.n_harmonics, n_beads, geometry.width_first)
        harmonics = harmonics.transpose(0, 1)
        if self.uniform_input:
            # Q = V z_0 is the same for every neighbour: sum Y s over the pairs first, (N, harmonics, nu).
            sens = self.sensitivity(geometry.distance_by_first).view(n_beads, geometry.width_first, -1)
            angular_sens = torch.bmm(harmonics, sens)
            contracted = torch.matmul(self.weights, features[0])  # (nu, n_out)
            env = torch.mm(angular_sens.reshape(-1, self.n_sensitivities), contracted)
            parts = env.view(n_beads, self.n_harmonics, self.n_out).split(self.harmonic_sizes, dim=1)
        else:
            # Q_j = V z_j for every bead in one matrix product: (N, nu, n_out).
            weights_flat = self.weights.permute(2, 0, 1).reshape(self.n_in, self.n_sensitivities * self.n_out)
            contracted = torch.mm(features, weights_flat).view(n_beads, self.n_sensitivities, self.n_out)
            # Messages m_p = sum_nu s_nu(p) Q_{j_p}, as a batched product over pairs grouped by j.
            sens = self.sensitivity(geometry.distance_by_second).view(n_beads, geometry.width_second, -1)
            messages = torch.bmm(sens, contracted).view(n_beads * geometry.width_second, self.n_out)
            # Regroup the messages by i and sum them with their angular factors: (N, harmonics, n_out).
            messages_by_first = messages.index_select(0, geometry.second_slot_of_first_slot)
            env = torch.bmm(harmonics, messages_by_first.view(n_beads, geometry.width_first, self.n_out))
            parts = env.split(self.harmonic_sizes, dim=1)  # split: its backward is one cat
        return [parts[0].squeeze(1)] + list(parts[1:])

    def forward(self, features: Tensor, geometry: PairGeometry) -> Tensor:
        parts = self.environment(features, geometry)
        norms = [torch.sqrt(part.square().sum(dim=1) + self.norm_eps) for part in parts[1:]]
        out = parts[0] + self.vector_scale * norms[0] + self.quadrupole_scale * norms[1]
        if hasattr(self, "octupole_scale"):
            out = out + self.octupole_scale * norms[2]
        if self.uniform_input:
            return out + self.self_interaction(features[0])
        return out + self.self_interaction(features)


class ResidualDense(torch.nn.Module):
    """z + Linear(softplus(Linear(z))): hippynn's residual atom layer."""

    def __init__(self, n_features: int):
        super().__init__()
        self.inner = torch.nn.Linear(n_features, n_features)
        self.residual = torch.nn.Linear(n_features, n_features)
        torch.nn.init.xavier_normal_(self.inner.weight)

    def forward(self, features: Tensor) -> Tensor:
        return features + self.residual(torch.nn.functional.softplus(self.inner(features)))


class InteractionBlock(torch.nn.Module):
    """Residual interaction layer followed by residual dense layers."""

    def __init__(
        self, n_features, n_sensitivities, soft_min, soft_max, cutoff, n_dense_layers, norm_eps, uniform_input,
        angular_order=2,
    ):  # fmt: skip
        super().__init__()
        self.interaction = TensorSensitivityInteraction(
            n_features, n_features, n_sensitivities, soft_min, soft_max, cutoff, norm_eps, uniform_input, angular_order
        )
        self.interaction_residual = torch.nn.Linear(n_features, n_features)
        self.dense = torch.nn.ModuleList([ResidualDense(n_features) for _ in range(n_dense_layers)])

    def forward(self, features: Tensor, geometry: PairGeometry) -> Tensor:
        update = self.interaction(features, geometry)
        features = features + self.interaction_residual(torch.nn.functional.softplus(update))
        for layer in self.dense:
            features = layer(features)
        return features


class HipnnTrunk(torch.nn.Module):
    """Learned constant bead embedding followed by interaction blocks; returns every block's output."""

    def __init__(
        self, n_features, n_sensitivities, soft_min, soft_max, cutoff, n_interaction_layers, n_dense_layers, norm_eps,
        angular_order=2,
    ):  # fmt: skip
        super().__init__()
        self.embedding = torch.nn.Parameter(torch.randn(n_features))
        # Only the first layer sees identical inputs on every bead (the embedding).
        block_args = (n_features, n_sensitivities, soft_min, soft_max, cutoff, n_dense_layers, norm_eps)
        self.blocks = torch.nn.ModuleList(
            [
                InteractionBlock(*block_args, uniform_input=(k == 0), angular_order=angular_order)
                for k in range(n_interaction_layers)
            ]
        )

    def forward(self, geometry: PairGeometry) -> List[Tensor]:
        features = self.embedding.unsqueeze(0).expand(geometry.n_beads, -1)
        outputs: List[Tensor] = []
        for block in self.blocks:
            features = block(features, geometry)
            outputs.append(features)
        return outputs


class EnergyHead(torch.nn.Module):
    """Hierarchical per-bead energy: scale * sum over blocks of a linear read-out of its features."""

    def __init__(self, n_features: int, n_blocks: int, scale: float):
        super().__init__()
        self.scale = float(scale)
        self.readouts = torch.nn.ModuleList([torch.nn.Linear(n_features, 1) for _ in range(n_blocks)])

    def features(self, block_outputs: List[Tensor]) -> Tensor:
        """(N, n_blocks * n_features): what the read-outs are linear in (their biases aside)."""
        return torch.cat(block_outputs, dim=1)

    def forward(self, block_outputs: List[Tensor], geometry: PairGeometry) -> Tensor:
        energy = torch.zeros_like(block_outputs[0][:, 0])
        for k, readout in enumerate(self.readouts):
            energy = energy + readout(block_outputs[k]).squeeze(1)
        return self.scale * energy


class PairHead(torch.nn.Module):
    """Per-bead energy from one radial pair function: 1/2 sum_j phi(r_ij), phi a cubic B-spline.

    phi(r) = sum_k c_k B_k(r) on [r_min, cutoff], ``n_basis`` coefficients (``coefficients``, in
    the head's energy unit), three more pinned to zero at each end so that phi and its first two
    derivatives vanish at r_min and at the cutoff; phi = 0 outside (the prior's region below
    r_min). The energy is linear in the coefficients, so they can be fitted by least squares
    (thermocg.response); a low-capacity alternative to a network head for the thermal terms.
    Same call as :class:`EnergyHead` (block outputs unused), so both live in one ModuleDict.
    """

    def __init__(self, n_basis: int, r_min: float, cutoff: float):
        super().__init__()
        if not 0 < r_min < cutoff or n_basis < 1:
            raise ValueError(f"a pair head needs 0 < r_min < cutoff (nm) and n_basis >= 1, got {r_min}, {cutoff}, {n_basis}")
        self.n_basis = int(n_basis)
        self.r_min = float(r_min)
        self.cutoff = float(cutoff)
        self.coefficients = torch.nn.Parameter(torch.zeros(self.n_basis))

    def basis(self, distance: Tensor) -> Tensor:
        """(P,) distances in nm -> (P, n_basis) values of the B-splines B_k(r)."""
        return pinned_spline_basis(distance, self.r_min, self.cutoff, self.n_basis)

    def basis_per_bead(self, geometry: PairGeometry) -> Tensor:
        """(N, n_basis): each bead's share 1/2 sum_j B_k(r_ij) (the pair list is full)."""
        values = self.basis(geometry.distance)
        per_bead = values.new_zeros(geometry.n_beads, self.n_basis)
        return per_bead.index_add(0, geometry.first, 0.5 * values)

    def forward(self, block_outputs: List[Tensor], geometry: PairGeometry) -> Tensor:
        pair_energy = pinned_spline(geometry.distance, self.r_min, self.cutoff, self.coefficients)
        return pair_energy.new_zeros(geometry.n_beads).index_add(0, geometry.first, 0.5 * pair_energy)


# ---------------------------------------------------------------------------------------------
# The CG model
# ---------------------------------------------------------------------------------------------


class CGModel(torch.nn.Module):
    """W(R; beta) = prior + W0 + dbeta W1 + 1/2 dbeta^2 W2 from per-bead HIP-NN-TS energies.

    Arguments (all plain values, stored in ``model.config`` and in saved files):
      n_features, n_sensitivities, n_interaction_layers, n_dense_layers: network size.
      cutoff (nm): range of the interaction layers (and the pair range the model needs).
      angular_order: the highest order l of the layers' angular sensitivities, 2 (hippynn's
        HIP-NN-TS) or 3 (adds the octupole, the lowest order at which a tetrahedral first shell
        differs from an isotropic one: :func:`angular_harmonics`).
      sensitivity_soft_min, sensitivity_soft_max (nm): initial range of the sensitivities.
      heads: which per-bead energy heads exist, a subset of ("W0", "W1", "W2", "e").
      head_scales: {head: factor} multiplying that head's read-out (default 1), to give the
        thermal heads their natural size at initialisation (W1 in (kJ/mol)^2, W2 in (kJ/mol)^3).
      separate_trunks: False = one shared trunk; True = one trunk per head (no coupling).
      pair_heads: heads that are radial pair functions (:class:`PairHead`) instead of network
        read-outs, e.g. ("W1", "W2") for low-capacity thermal terms.
      pair_basis: dict(n_basis, r_min nm) of the pair heads' splines (they end at the cutoff).
      prior: dict(onset_radius nm, decay_length nm, strength kJ/mol) or None for no prior.
      norm_eps: the eps under the tensor-norm square roots (hippynn's cusp regulariser).
      dtype: "float32" or "float64".
      energy_matching_beta0 (mol/kJ): for the energy-matching model (em): with heads W0 and e, the
        first-order term is W1 = (E - W_prior - W0) / beta0, E = sum_J e_J, so F_b = (F_E - F) / beta0
        (METHOD.md, energy-entropy view). None for every other model.
      expansion: how W1 = dW/dbeta and W2 = d2W/dbeta2 (at beta0) extrapolate to another beta:
        "beta": the Taylor series of W in dbeta, W0 + dbeta W1 + dbeta^2 W2 / 2 (METHOD.md);
        "reduced": the Taylor series of the reduced free energy beta W, whose first derivative is
        the conditional energy <u>_R, truncated at the model's highest order and divided by beta:
        W0 + dbeta (beta0 / beta) W1 with W1 only (exact for T-independent energy and entropy,
        W = E - T S), W0 + dbeta W1 + dbeta^2 (beta0 / beta) W2 / 2 with W2.
        Both agree to the model's order at beta0.
      reference_beta (mol/kJ): beta0, needed by the "reduced" expansion.
    """

    __jit_unused_properties__ = ["config"]

    def __init__(
        self,
        n_features: int = 128,
        n_sensitivities: int = 20,
        n_interaction_layers: int = 1,
        n_dense_layers: int = 3,
        cutoff: float = 0.6,
        angular_order: int = 2,
        sensitivity_soft_min: float = 0.22,
        sensitivity_soft_max: float = 0.55,
        heads=("W0", "W1", "W2"),
        head_scales=None,
        separate_trunks: bool = False,
        pair_heads=(),
        pair_basis=None,
        prior=DEFAULT_PRIOR,
        norm_eps: float = 1e-6,
        dtype: str = "float32",
        energy_matching_beta0=None,
        expansion: str = "beta",
        reference_beta=None,
    ):
        super().__init__()
        heads = list(heads)
        unknown = [name for name in heads if name not in HEAD_NAMES]
        if not heads or unknown or len(set(heads)) != len(heads):
            raise ValueError(f"heads must be distinct names from {HEAD_NAMES}, got {heads}")
        head_scales = {name: float(value) for name, value in (head_scales or {}).items()}
        if any(name not in heads for name in head_scales):
            raise ValueError(f"head_scales {head_scales} names a head not in {heads}")
        if set(pair_heads) - set(heads) or "e" in pair_heads:
            raise ValueError(f"pair_heads must be heads of the model other than 'e', got {list(pair_heads)}")
        pair_heads = [name for name in heads if name in set(pair_heads)]
        pair_basis = {"n_basis": int(pair_basis["n_basis"]), "r_min": float(pair_basis["r_min"])} if pair_heads else None
        if n_interaction_layers < 1:
            raise ValueError("n_interaction_layers must be >= 1")
        if prior is not None:
            prior = {key: float(prior[key]) for key in ("onset_radius", "decay_length", "strength")}
            if prior["onset_radius"] > cutoff:
                raise ValueError(f"prior onset {prior['onset_radius']} nm is beyond the cutoff {cutoff} nm")
        if dtype not in ("float32", "float64"):
            raise ValueError(f"dtype must be 'float32' or 'float64', got {dtype}")
        if energy_matching_beta0 is not None and not ({"W0", "e"} <= set(heads) and "W1" not in heads):
            raise ValueError("energy matching needs heads W0 and e, and no W1 (W1 follows from them)")
        if expansion not in EXPANSIONS:
            raise ValueError(f"expansion must be one of {EXPANSIONS}, got {expansion!r}")
        if expansion == "reduced" and not (reference_beta is not None and reference_beta > 0):
            raise ValueError(f"the reduced expansion needs reference_beta = beta0 > 0 (mol/kJ), got {reference_beta}")

        self._config = {
            "n_features": int(n_features),
            "n_sensitivities": int(n_sensitivities),
            "n_interaction_layers": int(n_interaction_layers),
            "n_dense_layers": int(n_dense_layers),
            "cutoff": float(cutoff),
            "angular_order": int(angular_order),
            "sensitivity_soft_min": float(sensitivity_soft_min),
            "sensitivity_soft_max": float(sensitivity_soft_max),
            "heads": heads,
            "head_scales": head_scales,
            "separate_trunks": bool(separate_trunks),
            "pair_heads": pair_heads,
            "pair_basis": pair_basis,
            "prior": prior,
            "norm_eps": float(norm_eps),
            "dtype": dtype,
            "energy_matching_beta0": None if energy_matching_beta0 is None else float(energy_matching_beta0),
            "expansion": expansion,
            "reference_beta": None if reference_beta is None else float(reference_beta),
        }
        self.cutoff = float(cutoff)
        self.angular_order = int(angular_order)
        self.n_interaction_layers = int(n_interaction_layers)
        self.head_names: List[str] = heads
        self.energy_matching = energy_matching_beta0 is not None
        self.energy_matching_beta0 = float(energy_matching_beta0 or 1.0)
        self.reduced_expansion = expansion == "reduced"
        self.reference_beta = float(reference_beta or 1.0)
        self.second_order = "W2" in heads

        def make_trunk():
            return HipnnTrunk(
                n_features, n_sensitivities, sensitivity_soft_min, sensitivity_soft_max, cutoff,
                n_interaction_layers, n_dense_layers, norm_eps, angular_order,
            )  # fmt: skip

        trunk_names = heads if separate_trunks else ["shared"]
        self.trunks = torch.nn.ModuleDict({name: make_trunk() for name in trunk_names})
        self.trunk_of: Dict[str, str] = {name: (name if separate_trunks else "shared") for name in heads}
        self.heads = torch.nn.ModuleDict({
            name: PairHead(pair_basis["n_basis"], pair_basis["r_min"], cutoff) if name in pair_heads
            else EnergyHead(n_features, n_interaction_layers, head_scales.get(name, 1.0))
            for name in heads
        })
        if prior is None:
            self.prior = RepulsivePrior(1.0, 1.0, 0.0, enabled=False)
        else:
            self.prior = RepulsivePrior(**prior)
        # Empty buffer that follows .to(dtype/device): its dtype is the one the network computes in.
        self.register_buffer("dtype_reference", torch.zeros(0), persistent=False)
        self.to(getattr(torch, dtype))

    @property
    def config(self) -> dict:
        """Constructor arguments as plain values (dtype follows the parameters)."""
        config = json.loads(json.dumps(self._config))
        config["dtype"] = str(self.dtype_reference.dtype).removeprefix("torch.")
        return config

    @torch.jit.export
    def pair_layout(
        self, i: Tensor, j: Tensor, n_beads: int, width_first: Optional[int] = None, width_second: Optional[int] = None
    ) -> PairLayout:  # fmt: skip
        """The padded layout of a pair list, to pass as ``layout`` while the list does not change
        (the widths as for :func:`pair_layout`)."""
        return pair_layout(i, j, n_beads, self.n_interaction_layers > 1, width_first, width_second)

    def pair_geometry(
        self, positions: Tensor, i: Tensor, j: Tensor, shift: Tensor, dtype: torch.dtype,
        layout: Optional[PairLayout] = None,
    ) -> PairGeometry:  # fmt: skip
        """The :func:`pair_geometry` this model's layers read (its cutoff, angular order and layouts), in ``dtype``."""
        by_second = self.n_interaction_layers > 1
        return pair_geometry(positions, i, j, shift, self.cutoff, dtype, by_second, layout, self.angular_order)

    @torch.jit.export
    def per_bead_energies(
        self, positions: Tensor, i: Tensor, j: Tensor, shift: Tensor, layout: Optional[PairLayout] = None
    ) -> Dict[str, Tensor]:
        """{head: (N,) per-bead energy} for every head, and the prior under "prior".

        ``layout``: this list's :meth:`pair_layout` (no per-call host synchronisation), or None.
        """
        geometry = self.pair_geometry(positions, i, j, shift, self.dtype_reference.dtype, layout)
        energies: Dict[str, Tensor] = {"prior": self.prior(geometry)}
        block_outputs: Dict[str, List[Tensor]] = {}
        for name, trunk in self.trunks.items():
            block_outputs[name] = trunk(geometry)
        for name, head in self.heads.items():
            energies[name] = head(block_outputs[self.trunk_of[name]], geometry)
        return energies

    @torch.jit.export
    def expansion_coefficients(self, dbeta: Tensor) -> Tuple[Tensor, Tensor]:
        """(c1, c2) with W = W0 + c1 W1 + c2 W2 at beta0 + dbeta (see ``expansion``); shape of dbeta."""
        c1 = dbeta
        c2 = 0.5 * dbeta * dbeta
        if self.reduced_expansion:
            ratio = self.reference_beta / (self.reference_beta + dbeta)
            if self.second_order:
                c2 = c2 * ratio
            else:
                c1 = c1 * ratio
        return c1, c2

    @torch.jit.export
    def total_energy(self, energies: Dict[str, Tensor], dbeta: Tensor) -> Tensor:
        """Sum of prior + W0 + c1 W1 + c2 W2 over beads (:meth:`expansion_coefficients`); dbeta 0-d or (N,) per bead."""
        c1, c2 = self.expansion_coefficients(dbeta)
        per_bead = energies["prior"]
        if "W0" in energies:
            per_bead = per_bead + energies["W0"]
        if "W1" in energies:
            per_bead = per_bead + c1 * energies["W1"]
        if "W2" in energies:
            per_bead = per_bead + c2 * energies["W2"]
        if self.energy_matching:
            # W1 = (E - W(beta0)) / beta0, W(beta0) = prior + W0: then d(beta W)/dbeta = E at beta0 and
            # F_b = (F_E - F) / beta0 with F the model's whole mean force (METHOD.md)
            at_t0 = energies["prior"] + energies["W0"]
            per_bead = per_bead + c1 * (energies["e"] - at_t0) / self.energy_matching_beta0
        return per_bead.sum()

    def forward(
        self, positions: Tensor, i: Tensor, j: Tensor, shift: Tensor, dbeta: Tensor, layout: Optional[PairLayout] = None
    ) -> Tensor:
        """W(R; beta) in kJ/mol, dbeta = beta - beta0 in mol/kJ (0-d, or (N,) for mixed batches)."""
        return self.total_energy(self.per_bead_energies(positions, i, j, shift, layout), dbeta)


# ---------------------------------------------------------------------------------------------
# Forces
# ---------------------------------------------------------------------------------------------


def _track(positions: Tensor) -> Tensor:
    """Positions that autograd can differentiate against (kept as is when already tracked)."""
    return positions if positions.requires_grad else positions.detach().requires_grad_(True)


def energy_and_forces(model, positions, i, j, shift, dbeta, create_graph=False):
    """(W(R; beta) kJ/mol, forces -dW/dR (N, 3) kJ/(mol nm)).

    With ``create_graph=True`` both stay differentiable (force-matching losses, DiffSim);
    otherwise they are returned detached.
    """
    positions = _track(positions)
    dbeta = torch.as_tensor(dbeta, dtype=positions.dtype, device=positions.device)
    energy = model(positions, i, j, shift, dbeta)
    (gradient,) = torch.autograd.grad(energy, positions, create_graph=create_graph)
    if not create_graph:
        energy, gradient = energy.detach(), gradient.detach()
    return energy, -gradient


def head_energies_and_forces(model, positions, i, j, shift, heads=("W0", "W1", "W2"), create_graph=False):
    """({head: (N,) per-bead energy} for every head and "prior", {head: (N, 3) -grad sum_beads head}).

    ``heads`` names the forces wanted (any of the model's heads, or "prior"). One forward pass,
    one backward pass per head.
    """
    positions = _track(positions)
    energies = model.per_bead_energies(positions, i, j, shift)
    forces = {}
    for k, name in enumerate(heads):
        keep_graph = create_graph or k < len(heads) - 1
        (gradient,) = torch.autograd.grad(
            energies[name].sum(), positions, create_graph=create_graph, retain_graph=keep_graph
        )
        forces[name] = -gradient if create_graph else -gradient.detach()
    if not create_graph:
        energies = {name: value.detach() for name, value in energies.items()}
    return energies, forces


def head_forces(model, positions, i, j, shift, heads=("W0", "W1", "W2"), create_graph=False):
    """{head: (N, 3) force -grad of that head's summed per-bead energy} (kJ/(mol nm) x its units)."""
    return head_energies_and_forces(model, positions, i, j, shift, heads, create_graph)[1]


def batch_frames(frames):
    """Join frames [(positions (N_k, 3), i, j, shift), ...] into one disjoint system.

    Returns (positions, i, j, shift, frame_of_bead): pair indices are offset so that frames never
    interact; per-bead outputs and forces split back with frame_of_bead (or by the N_k).
    """
    positions, firsts, seconds, shifts, frame_of_bead = [], [], [], [], []
    offset = 0
    for index, (pos, i, j, shift) in enumerate(frames):
        positions.append(pos)
        firsts.append(i + offset)
        seconds.append(j + offset)
        shifts.append(shift)
        frame_of_bead.append(torch.full((pos.shape[0],), index, dtype=torch.long, device=pos.device))
        offset += pos.shape[0]
    cat = torch.cat
    return cat(positions), cat(firsts), cat(seconds), cat(shifts), cat(frame_of_bead)


def tune_cpu_allocator():
    """Make glibc malloc keep freed memory for reuse (process-wide; call once at start-up on CPU).

    Each call of the model allocates tens of MB of temporaries. By default glibc hands large
    freed blocks back to the OS and every later call page-faults them in again, which on a
    virtual machine can cost as much as the arithmetic (measured for 512 beads: 1.4x on an
    energy+force call, 2.5x on an interaction layer alone). Raising the mmap and trim thresholds
    keeps the blocks in the heap. Returns False where this is not glibc (nothing changed).
    """
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # from glibc's malloc.h
    return bool(mallopt(m_mmap_threshold, 1 << 30)) and bool(mallopt(m_trim_threshold, 2**31 - 1))


# ---------------------------------------------------------------------------------------------
# Saving and loading
# ---------------------------------------------------------------------------------------------


def save_model(path, model, metadata):
    """Write config + state_dict + metadata (plain JSON-like values) atomically; no pickled code.

    ``metadata`` is what the caller wants to keep with the weights, for example T0 (K), beta0
    (mol/kJ), units, the training config and the data hash; it must be JSON-serialisable so that
    ``torch.load(path, weights_only=True)`` can read the file back.
    """
    try:
        metadata = json.loads(json.dumps(metadata))
    except TypeError as error:
        raise TypeError(f"metadata must hold plain JSON values (str, numbers, lists, dicts): {error}") from error
    payload = {
        "format": FILE_FORMAT,
        "config": model.config,
        "state_dict": {name: value.detach().cpu() for name, value in model.state_dict().items()},
        "metadata": metadata,
        "units": {"positions": "nm", "energy": "kJ/mol", "dbeta": "mol/kJ", "cutoff": "nm"},
    }
    # through a buffer: torch.save names the archive after the file, and the temporary name is random
    buffer = BytesIO()
    torch.save(payload, buffer)
    atomic_write(path, lambda tmp: Path(tmp).write_bytes(buffer.getvalue()))


def load_model(path, map_location="cpu"):
    """Read a file written by :func:`save_model` -> (CGModel in eval mode, metadata dict). Another kind of
    file raises ValueError saying so; a damaged model file raises DamagedFileError."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{path} is a folder, not a {FILE_FORMAT} file (results/models/<name>/model.pt)")
    _refuse_other_archives(path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except pickle.UnpicklingError as error:  # a file of another kind: text, a table
        raise ValueError(f"{path} is not a {FILE_FORMAT} file (results/models/<name>/model.pt): {error}") from error
    except (OSError, RuntimeError, EOFError) as error:  # torch reports a damaged zip as RuntimeError
        raise DamagedFileError.of(path, error) from error
    if payload.get("format") != FILE_FORMAT:
        raise ValueError(f"{path} is not a {FILE_FORMAT} file (format {payload.get('format')!r})")
    model = CGModel(**payload["config"])
    model.load_state_dict(payload["state_dict"])
    return model.to(map_location).eval(), payload["metadata"]


def check_reference_temperature(model, reference_temperature):
    """Raise ValueError where T0 = ``reference_temperature`` (K) is not one ``model`` can run with: the reduced
    expansion's beta0/beta factor is built on the model's own T0, so another T0 would move dbeta but not that
    factor (the beta series has no such factor: any T0 is a consistent, if different, model)."""
    if isinstance(model, CGModel) and model.reduced_expansion:
        own = 1.0 / (KB * model.reference_beta)
        if not math.isclose(float(reference_temperature), own, rel_tol=1e-9):
            raise ValueError(f"T0 = {float(reference_temperature):g} K: this model's reduced expansion is built on its "
                             f"own T0, {own:g} K (another T0 would shift dbeta but not its beta0/beta factor)")


def _refuse_other_archives(path):
    """ValueError for a readable zip archive that torch.save did not write, e.g. a bead archive (.npz) or an
    exported TorchScript file: not a damaged model file, another kind of file."""
    if not zipfile.is_zipfile(path):
        return
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
    if any("/code/" in name for name in names):
        raise ValueError(f"{path} is an exported TorchScript file, not a {FILE_FORMAT} file: load it with "
                         "thermocg.export.load_exported")
    if not any(name.endswith("/data.pkl") for name in names):
        raise ValueError(f"{path} is a zip archive of {', '.join(names[:3])}..., not a {FILE_FORMAT} file "
                         "(results/models/<name>/model.pt)")
