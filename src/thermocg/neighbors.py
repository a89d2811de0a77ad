"""Periodic neighbour lists (vesin) with a Verlet skin, returned as torch tensors.

Convention shared by every model and the MD engine: a pair list is ``(i, j, shift)`` with the
displacement of pair p given by ``positions[j[p]] - positions[i[p]] + shift[p]`` (nm). The list is
full (each pair appears as (i, j) and (j, i)) unless ``full_list=False``. Distances are recomputed
in torch from the positions, so they stay differentiable; vesin only supplies the indices.
"""

import numpy as np
import torch
import vesin


def pair_displacements(positions, i, j, shift):
    """Differentiable displacement vectors r_j - r_i + shift (nm) for a pair list."""
    return positions[j] - positions[i] + shift


class NeighborList:
    """Pairs within ``cutoff + skin`` of an orthorhombic periodic box.

    Calling the object returns the cached list until some bead has moved more than ``skin / 2``
    since the last build (or the box changed); then it rebuilds. With ``skin = 0`` it rebuilds on
    every call. ``n_builds`` counts rebuilds, for logs and benchmarks.
    """

    def __init__(self, cutoff, skin=0.0, full_list=True):
        if cutoff <= 0 or skin < 0:
            raise ValueError(f"cutoff must be > 0 and skin >= 0 (nm), got {cutoff}, {skin}")
        self.cutoff = float(cutoff)
        self.skin = float(skin)
        self.full_list = bool(full_list)
        # vesin builds the half list; the full one is mirrored in torch, which is cheaper than
        # asking vesin for it (0.7 vs 1.2 ms for 512 beads at 0.75 nm).
        self._vesin = vesin.NeighborList(cutoff=self.cutoff + self.skin, full_list=False)
        self._reference = None
        self._box = None
        self._pairs = None
        self.n_builds = 0

    def needs_rebuild(self, positions, box):
        if self._pairs is None or self.skin == 0.0:
            return True
        if not torch.equal(box, self._box):
            return True
        moved = (positions.detach() - self._reference).norm(dim=1).max()
        return bool(moved > 0.5 * self.skin)

    def __call__(self, positions, box):
        """positions (N, 3) and box (3,) tensors in nm -> (i, j, shift) on positions' device."""
        box = box.detach()
        if self.needs_rebuild(positions, box):
            self._build(positions, box)
        return self._pairs

    def _build(self, positions, box):
        lengths = box.cpu().double().numpy()
        if np.any(2 * (self.cutoff + self.skin) > lengths):
            raise ValueError(
                f"box {lengths} nm is smaller than twice cutoff+skin = {2 * (self.cutoff + self.skin)} nm"
            )
        points = positions.detach().cpu().double().numpy()
        i, j, cell_shift = self._vesin.compute(points, np.diag(lengths), periodic=True, quantities="ijS", copy=False)
        device, dtype = positions.device, positions.dtype
        i = torch.from_numpy(i.astype(np.int64)).to(device)
        j = torch.from_numpy(j.astype(np.int64)).to(device)
        shift = torch.from_numpy(cell_shift * lengths).to(device=device, dtype=dtype)
        if self.full_list:
            i, j, shift = torch.cat([i, j]), torch.cat([j, i]), torch.cat([shift, -shift])
        self._pairs = (i, j, shift)
        self._reference = positions.detach().clone()
        self._box = box.clone()
        self.n_builds += 1
