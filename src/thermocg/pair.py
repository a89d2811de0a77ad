"""Pair potentials that follow the thermocg potential interface.

A potential is a ``torch.nn.Module`` with an attribute ``cutoff`` (nm) and
``forward(positions (N, 3), i, j, shift, dbeta) -> W`` (kJ/mol, 0-d tensor), where (i, j, shift)
is a FULL pair list from :class:`thermocg.neighbors.NeighborList` (each pair twice; the pair
terms here evaluate the i < j copy only) and ``dbeta = beta - beta0`` (mol/kJ). Forces are
``-dW/dpositions`` by autograd. The list may hold pairs beyond ``cutoff`` (the Verlet skin);
every term here gives them exactly zero energy and zero gradient.

Terms add up with ``+`` (or :class:`SumPotential`), e.g. ``LennardJones(...) + PairCorrection(...)``.
"""

import math
from typing import Tuple

import torch
from torch import nn

from thermocg.neighbors import pair_displacements
from thermocg.units import KB


def _as_tensor(value, like):
    return torch.as_tensor(value, dtype=like.dtype, device=like.device)


class PairPotential(nn.Module):
    """Base class: W = sum over pairs of u(r_ij; dbeta) for r_ij < cutoff.

    The full list holds every pair as (i, j) and (j, i); only the i < j copy is evaluated, which
    halves the work compared with summing both and halving.
    """

    def __init__(self, cutoff):
        super().__init__()
        if cutoff <= 0:
            raise ValueError(f"cutoff must be > 0 nm, got {cutoff}")
        self.cutoff = float(cutoff)

    def pair_energy(self, r, dbeta):
        """u(r; dbeta) in kJ/mol for distances r (nm); subclasses define it."""
        raise NotImplementedError

    def forward(self, positions, i, j, shift, dbeta=0.0):
        once = torch.nonzero(i < j).squeeze(1)
        r = pair_displacements(positions, i[once], j[once], shift[once]).norm(dim=-1)
        dbeta = _as_tensor(dbeta, r)
        # where() keeps pairs in the Verlet skin at exactly zero energy and zero gradient.
        energy = torch.where(r < self.cutoff, self.pair_energy(r, dbeta), torch.zeros_like(r))
        return energy.sum()

    def __add__(self, other):
        return SumPotential(self, other)


class SumPotential(nn.Module):
    """Sum of potentials; its cutoff is the largest of the terms' (each term masks its own)."""

    def __init__(self, *terms):
        super().__init__()
        flat = []
        for term in terms:
            flat.extend(term.terms if isinstance(term, SumPotential) else [term])
        if not flat:
            raise ValueError("SumPotential needs at least one term")
        self.terms = nn.ModuleList(flat)

    @property
    def cutoff(self):
        return max(float(term.cutoff) for term in self.terms)

    def forward(self, positions, i, j, shift, dbeta=0.0):
        return sum(term(positions, i, j, shift, dbeta) for term in self.terms)

    def __add__(self, other):
        return SumPotential(self, other)


class LennardJones(PairPotential):
    """u(r) = 4 epsilon [(sigma/r)^12 - (sigma/r)^6], truncated at ``cutoff``.

    ``shift`` says what is made continuous at the cutoff: "energy" subtracts u(cutoff) (the
    forces, hence the dynamics, are those of plain truncation), "force" also subtracts
    (r - cutoff) u'(cutoff) (shifted-force LJ: force continuous too), None leaves u as is.
    Differentiable simulation needs "force": autograd through a trajectory cannot see the force
    jump of a truncated potential (when a pair crosses the cutoff depends on the parameters), so
    its gradients are biased. epsilon (kJ/mol) and sigma (nm) are parameters, so DiffSim can refine
    them (names ``epsilon`` and ``sigma``); ``learnable=False`` makes them buffers.
    Temperature independent: dbeta is ignored.
    """

    def __init__(self, epsilon, sigma, cutoff, shift="energy", learnable=True):
        super().__init__(cutoff)
        if epsilon <= 0 or sigma <= 0:
            raise ValueError(f"epsilon and sigma must be > 0, got {epsilon}, {sigma}")
        if shift not in ("energy", "force", None):
            raise ValueError(f"shift must be 'energy', 'force' or None, got {shift!r}")
        epsilon = torch.tensor(float(epsilon), dtype=torch.float64)
        sigma = torch.tensor(float(sigma), dtype=torch.float64)
        if learnable:
            self.epsilon = nn.Parameter(epsilon)
            self.sigma = nn.Parameter(sigma)
        else:
            self.register_buffer("epsilon", epsilon)
            self.register_buffer("sigma", sigma)
        self.shift = shift

    def _lj(self, r):
        s6 = (self.sigma / r) ** 6
        return 4.0 * self.epsilon * (s6 * s6 - s6)

    def pair_energy(self, r, dbeta=None):
        energy = self._lj(r)
        if self.shift is not None:
            cutoff = _as_tensor(self.cutoff, r)
            energy = energy - self._lj(cutoff)
            if self.shift == "force":
                s6 = (self.sigma / cutoff) ** 6
                slope = -24.0 * self.epsilon * (2.0 * s6 * s6 - s6) / cutoff  # u'(cutoff)
                energy = energy - (r - cutoff) * slope
        return energy

    def extra_repr(self):
        return (
            f"epsilon={float(self.epsilon):.6g} kJ/mol, sigma={float(self.sigma):.6g} nm, "
            f"cutoff={self.cutoff} nm, shift={self.shift}"
        )


def smooth_switch(r, r_on, r_off):
    """1 for r <= r_on, 0 for r >= r_off, quintic in between (value, slope, curvature continuous)."""
    x = ((r - r_on) / (r_off - r_on)).clamp(0.0, 1.0)
    return 1.0 - x**3 * (10.0 - 15.0 * x + 6.0 * x * x)


def _pinned_spline_support(r: torch.Tensor, r_min: float, cutoff: float, n_basis: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """The four B-splines each distance touches: (P, 4) columns and (P, 4) values; the pinned ones
    (and every one outside [r_min, cutoff]) get column n_basis and value 0."""
    n_intervals = n_basis + 3
    t = (r - r_min) * (n_intervals / (cutoff - r_min))
    inside = (t >= 0) & (t < n_intervals)
    interval = torch.floor(t.detach()).clamp(0, n_intervals - 1).long()
    u = t - interval.to(t.dtype)
    u2, u3 = u * u, u * u * u
    weights = torch.stack([(1 - u) ** 3, 3 * u3 - 6 * u2 + 4, -3 * u3 + 3 * u2 + 3 * u + 1, u3], dim=1) / 6.0
    # interval m uses padded coefficients m..m+3, i.e. free ones m-3..m; the pinned ones go to a spare column
    column = interval.unsqueeze(1) + torch.arange(4, device=r.device) - 3
    free = (column >= 0) & (column < n_basis) & inside.unsqueeze(1)
    return torch.where(free, column, torch.full_like(column, n_basis)), torch.where(free, weights, torch.zeros_like(weights))


def pinned_spline_basis(r: torch.Tensor, r_min: float, cutoff: float, n_basis: int) -> torch.Tensor:
    """(P,) distances (nm) -> (P, n_basis): uniform cubic B-splines B_k(r) on [r_min, cutoff].

    n_basis + 3 intervals; the three further coefficients at each end are pinned to zero, so any
    sum_k c_k B_k(r) vanishes with its first two derivatives at r_min and at the cutoff, and is
    zero outside. Each distance touches at most four basis functions.
    """
    column, weights = _pinned_spline_support(r, r_min, cutoff, n_basis)
    values = torch.zeros(r.shape[0], n_basis + 1, dtype=r.dtype, device=r.device)
    return values.scatter_add(1, column, weights)[:, :n_basis]


def pinned_spline(r: torch.Tensor, r_min: float, cutoff: float, coefficients: torch.Tensor) -> torch.Tensor:
    """(P,) distances (nm) -> (P,) sum_k c_k B_k(r) (:func:`pinned_spline_basis`), from the four
    coefficients each distance touches: no (P, n_basis) matrix, so what an MD step pays."""
    column, weights = _pinned_spline_support(r, r_min, cutoff, coefficients.shape[0])
    padded = torch.cat([coefficients.to(r.dtype), coefficients.new_zeros(1).to(r.dtype)])
    return (weights * padded[column]).sum(1)


class PairCorrection(PairPotential):
    """Temperature-dependent pair term u(r; dbeta) = a(r) + dbeta b(r) on a cubic spline.

    a(r) and b(r) are uniform cubic B-splines on [r_min, cutoff] with ``n_basis`` free
    coefficients each (parameters ``a`` in kJ/mol and ``b`` in (kJ/mol)^2, the corrections to W0
    and W1; DiffSim can refine either by name). Three coefficients pinned to zero at each end make
    the spline vanish with its first two derivatives at r_min and at the cutoff, so energy and
    force go smoothly to zero; outside [r_min, cutoff] the term is zero (the prior's region below).
    Each pair touches only four coefficients, so the cost does not grow with ``n_basis``.
    Coefficients start at zero: the correction starts switched off.
    """

    def __init__(self, cutoff, n_basis=24, r_min=0.2):
        super().__init__(cutoff)
        if not 0 < r_min < cutoff or n_basis < 1:
            raise ValueError("need 0 < r_min < cutoff and n_basis >= 1")
        self.r_min = float(r_min)
        self.spacing = (self.cutoff - self.r_min) / (n_basis + 3)  # nm between knots
        self.a = nn.Parameter(torch.zeros(n_basis, dtype=torch.float64))
        self.b = nn.Parameter(torch.zeros(n_basis, dtype=torch.float64))

    def pair_energy(self, r, dbeta=0.0):
        shape = r.shape
        basis = pinned_spline_basis(r.reshape(-1), self.r_min, self.cutoff, len(self.a))
        dbeta = _as_tensor(dbeta, r)
        return (basis @ self.a.to(r.dtype)).reshape(shape) + dbeta * (basis @ self.b.to(r.dtype)).reshape(shape)

    def extra_repr(self):
        return f"n_basis={len(self.a)}, r_min={self.r_min} nm, cutoff={self.cutoff} nm"


def reduced_lj_units(epsilon, sigma, mass):
    """Time unit tau = sigma sqrt(m / epsilon) in ps and k_B T / epsilon conversion helpers.

    Returns a dict with ``tau`` (ps), ``density(rho_star)`` (beads/nm^3) and
    ``temperature(t_star)`` (K), to set up textbook LJ state points in OpenMM units.
    """
    return {
        "tau": sigma * math.sqrt(mass / epsilon),
        "density": lambda rho_star: rho_star / sigma**3,
        "temperature": lambda t_star: t_star * epsilon / KB,
    }
