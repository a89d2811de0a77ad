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

    Reading the displacement back from the device is a host synchronisation, which on a GPU stalls
    the queue of every MD step. A caller that knows how far a bead can move between two calls
    (``step_bound``, a function returning a 0-d tensor in nm, e.g. from the velocities and forces)
    gets the check only when the bound says the list could have expired: with headroom
    h = skin/2 - displacement at a check, the next ``floor(h / step_bound)`` calls skip it. Where
    the bound holds, the list is rebuilt at exactly the call where an every-call check would rebuild
    it (so the trajectory is the same bit for bit); a device-side running maximum of the
    displacement, read at the next check, counts the calls that went past the bound with an expired
    list (``n_late``; each also makes the bound more cautious). The box is compared at checks only.
    """

    #: At most this many calls between two checks.
    MAX_CALLS_BETWEEN_CHECKS = 50

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
        self._host_half_list = None  # (i, j, n_beads) of the last build, on the host
        self.n_builds = 0
        self.n_checks = 0  # host reads of the displacement (calls with a step_bound only)
        self.n_late = 0  # calls that used an expired list because a step_bound did not hold
        self.bound_factor = 1.0  # multiplies step_bound; doubled after each late call
        self._unchecked_calls = 0
        self._largest_move = None  # device: largest displacement seen since the last check

    def needs_rebuild(self, positions, box):
        if self._pairs is None or self.skin == 0.0:
            return True
        if not torch.equal(box, self._box):
            return True
        moved = (positions.detach() - self._reference).norm(dim=1).max()
        return bool(moved > 0.5 * self.skin)

    def __call__(self, positions, box, step_bound=None):
        """positions (N, 3) and box (3,) tensors in nm -> (i, j, shift) on positions' device."""
        box = box.detach()
        if step_bound is None:
            if self.needs_rebuild(positions, box):
                self._build(positions, box)
            return self._pairs
        if self._pairs is None or self.skin == 0.0:
            self._build(positions, box)
            return self._pairs
        moved = (positions.detach() - self._reference).norm(dim=1).max()
        if self._unchecked_calls > 0:
            self._unchecked_calls -= 1
            self._largest_move = torch.maximum(self._largest_move, moved)
            return self._pairs
        self._check(positions, box, moved, step_bound)
        return self._pairs

    def widths(self):
        """The most pairs of one bead as first and as second member of the current list (the widths
        of thermocg.nn.pair_layout), counted on the host copy: nothing is read back from a GPU."""
        i, j, n_beads = self._host_half_list
        first, second = (np.bincount(index, minlength=n_beads) for index in (i, j))
        if self.full_list:  # each bead is first and second member of as many pairs
            first = second = first + second
        return max(int(first.max(initial=0)), 1), max(int(second.max(initial=0)), 1)

    def state_dict(self):
        """The current list and its bookkeeping as host tensors and numbers: with
        :meth:`load_state_dict` a continued run sees the same pairs in the same order, and so makes
        the same floating-point sums, as one that never stopped (a rebuild would not)."""
        if self._pairs is None:
            return {"built": False, "n_builds": self.n_builds, "bound_factor": self.bound_factor}
        i, j, n_beads = self._host_half_list
        return {
            "built": True, "pairs": [t.cpu() for t in self._pairs], "reference": self._reference.cpu(),
            "box": self._box.cpu(), "half_list": [torch.from_numpy(i), torch.from_numpy(j)], "n_beads": n_beads,
            "largest_move": self._largest_move.cpu(), "unchecked_calls": self._unchecked_calls,
            "n_builds": self.n_builds, "n_checks": self.n_checks, "n_late": self.n_late,
            "bound_factor": self.bound_factor,
        }

    def load_state_dict(self, state, device):
        """Continue with a list saved by :meth:`state_dict`, its tensors moved to ``device``."""
        self.n_builds, self.bound_factor = int(state["n_builds"]), float(state["bound_factor"])
        if not state["built"]:
            self.invalidate()
            return
        self._pairs = tuple(torch.as_tensor(t).to(device) for t in state["pairs"])
        self._reference = torch.as_tensor(state["reference"]).to(device)
        self._box = torch.as_tensor(state["box"]).to(device)
        i, j = (torch.as_tensor(t).numpy() for t in state["half_list"])
        self._host_half_list = (i, j, int(state["n_beads"]))
        self._largest_move = torch.as_tensor(state["largest_move"]).to(device)
        self._unchecked_calls = int(state["unchecked_calls"])
        self.n_checks, self.n_late = int(state["n_checks"]), int(state["n_late"])

    def invalidate(self):
        """Drop the cached list: the next call rebuilds it (counters and bound_factor are kept)."""
        self._pairs = None

    def _check(self, positions, box, moved, step_bound):
        """One host read: rebuild if the list expired, else plan how many calls may skip the check."""
        box_changed = (box != self._box).any().to(moved.dtype)
        moved_now, largest_before, bound, changed = torch.stack(
            [moved, self._largest_move, step_bound().to(moved.dtype), box_changed]).tolist()
        self.n_checks += 1
        half_skin = 0.5 * self.skin
        late = largest_before > half_skin  # an earlier unchecked call already had an expired list
        if late:
            self.n_late += 1
            self.bound_factor *= 2.0
        if late or changed or moved_now > half_skin:
            self._build(positions, box)
            moved_now = 0.0
        bound *= self.bound_factor
        calls = int((half_skin - moved_now) / bound) if bound > 0 else self.MAX_CALLS_BETWEEN_CHECKS
        self._unchecked_calls = min(calls, self.MAX_CALLS_BETWEEN_CHECKS)

    def _build(self, positions, box):
        # One read-back of box and positions; the list goes to the device without a wait (a copy
        # from pageable host memory is staged at once, so the host arrays may go right after).
        read_back = torch.cat([box.detach().double(), positions.detach().double().reshape(-1)]).cpu().numpy()
        lengths, points = read_back[:3], read_back[3:].reshape(-1, 3)
        if np.any(2 * (self.cutoff + self.skin) > lengths):
            raise ValueError(
                f"box {lengths} nm is smaller than twice cutoff+skin = {2 * (self.cutoff + self.skin)} nm"
            )
        i, j, cell_shift = self._vesin.compute(points, np.diag(lengths), periodic=True, quantities="ijS", copy=False)
        i, j = i.astype(np.int64), j.astype(np.int64)
        self._host_half_list = (i, j, len(points))
        device, dtype = positions.device, positions.dtype
        i = torch.from_numpy(i).to(device, non_blocking=True)
        j = torch.from_numpy(j).to(device, non_blocking=True)
        shift = torch.from_numpy(cell_shift * lengths).to(dtype).to(device, non_blocking=True)
        if self.full_list:
            i, j, shift = torch.cat([i, j]), torch.cat([j, i]), torch.cat([shift, -shift])
        self._pairs = (i, j, shift)
        self._reference = positions.detach().clone()
        self._box = box.clone()
        self._largest_move = torch.zeros((), dtype=dtype, device=device)
        self._unchecked_calls = 0
        self.n_builds += 1
