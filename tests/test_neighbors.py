"""The pair-list convention every model and the MD engine rely on (thermocg.neighbors)."""

import itertools

import numpy as np
import pytest
import torch

from thermocg.neighbors import NeighborList, pair_displacements

BOX = np.array([2.0, 2.3, 2.6])


def random_beads(n=120, seed=0):
    return torch.as_tensor(np.random.default_rng(seed).uniform(0, BOX, size=(n, 3)))


def brute_force_pairs(positions, cutoff):
    """{(i, j): distance} over ordered pairs i != j within cutoff, by the minimum image."""
    x = positions.numpy()
    pairs = {}
    for a, b in itertools.permutations(range(len(x)), 2):
        d = x[b] - x[a]
        d -= BOX * np.round(d / BOX)
        r = np.linalg.norm(d)
        if r < cutoff:
            pairs[(a, b)] = r
    return pairs


def listed_pairs(positions, i, j, shift, cutoff):
    r = pair_displacements(positions, i, j, shift).norm(dim=-1)
    keep = r < cutoff
    return dict(zip(zip(i[keep].tolist(), j[keep].tolist()), r[keep].tolist()))


def test_full_list_holds_every_pair_within_the_cutoff_both_ways():
    positions = random_beads()
    cutoff = 0.7
    i, j, shift = NeighborList(cutoff)(positions, torch.as_tensor(BOX))
    expected = brute_force_pairs(positions, cutoff)
    assert len(expected) > 500
    assert len(i) == len(expected)  # no skin: nothing beyond the cutoff, no duplicates
    got = listed_pairs(positions, i, j, shift, cutoff)
    assert got.keys() == expected.keys()
    assert np.allclose([got[k] for k in expected], list(expected.values()), atol=1e-12)
    # the shift of (j, i) is minus that of (i, j)
    shifts = {(a, b): s for a, b, s in zip(i.tolist(), j.tolist(), shift.tolist())}
    assert all(np.allclose(shifts[(a, b)], -np.asarray(shifts[(b, a)])) for a, b in shifts)


def test_half_list_holds_each_pair_once():
    positions = random_beads()
    cutoff = 0.7
    i, j, shift = NeighborList(cutoff, full_list=False)(positions, torch.as_tensor(BOX))
    expected = brute_force_pairs(positions, cutoff)
    got = listed_pairs(positions, i, j, shift, cutoff)
    assert len(got) == len(i) == len(expected) // 2
    assert {tuple(sorted(pair)) for pair in got} == {tuple(sorted(pair)) for pair in expected}
    assert np.allclose([got[pair] for pair in got], [expected[pair] for pair in got], atol=1e-12)


def test_a_list_with_a_skin_stays_complete_until_it_rebuilds():
    """Random moves of up to 0.02 nm per bead per call: the cached list must always hold every pair
    within the cutoff, and it is rebuilt only once some bead has moved more than skin / 2."""
    rng = np.random.default_rng(1)
    positions = random_beads(seed=1)
    box = torch.as_tensor(BOX)
    cutoff, skin = 0.6, 0.1
    neighbor_list = NeighborList(cutoff, skin=skin)
    neighbor_list(positions, box)
    reference = positions.clone()
    for _ in range(30):
        positions = positions + torch.as_tensor(rng.uniform(-0.02, 0.02, size=positions.shape))
        moved = float((positions - reference).norm(dim=1).max())
        builds = neighbor_list.n_builds
        i, j, shift = neighbor_list(positions, box)
        rebuilt = neighbor_list.n_builds > builds
        assert rebuilt == (moved > skin / 2)
        if rebuilt:
            reference = positions.clone()
        assert listed_pairs(positions, i, j, shift, cutoff).keys() == brute_force_pairs(positions, cutoff).keys()
    assert 2 <= neighbor_list.n_builds <= 25  # it did rebuild, and not on every call


def test_a_changed_box_forces_a_rebuild_and_a_small_box_is_refused():
    positions = random_beads()
    neighbor_list = NeighborList(0.6, skin=0.1)
    neighbor_list(positions, torch.as_tensor(BOX))
    neighbor_list(positions, torch.as_tensor(BOX * 1.001))
    assert neighbor_list.n_builds == 2
    with pytest.raises(ValueError, match="smaller than twice"):
        NeighborList(0.95, skin=0.1)(positions, torch.as_tensor(BOX))
    with pytest.raises(ValueError):
        NeighborList(0.6, skin=-0.1)


def random_walk(neighbor_list, positions, box, rng, calls, max_move, step_bound=None):
    """Move every bead by up to max_move per call; yield (positions, pairs, rebuilt) per call."""
    for _ in range(calls):
        positions = positions + torch.as_tensor(rng.uniform(-max_move, max_move, size=positions.shape))
        builds = neighbor_list.n_builds
        pairs = neighbor_list(positions, box, step_bound)
        yield positions, pairs, neighbor_list.n_builds > builds


def test_checks_planned_from_a_step_bound_rebuild_at_the_same_calls_and_skip_most_reads():
    """With a bound that holds (|move| <= sqrt(3) x 0.01 nm per call), the list is read back only
    when it could have expired, yet it rebuilds at exactly the calls where the every-call check
    does, and it always holds every pair within the cutoff."""
    box = torch.as_tensor(BOX)
    cutoff, skin, move = 0.6, 0.1, 0.01
    bound = torch.tensor(3**0.5 * move, dtype=torch.float64)
    exact, planned = NeighborList(cutoff, skin=skin), NeighborList(cutoff, skin=skin)
    start = random_beads(seed=2)
    exact(start, box)
    planned(start, box, lambda: bound)
    walk_exact = random_walk(exact, start, box, np.random.default_rng(3), 60, move)
    walk_planned = random_walk(planned, start, box, np.random.default_rng(3), 60, move, lambda: bound)
    for (positions, _, rebuilt_exact), (_, (i, j, shift), rebuilt) in zip(walk_exact, walk_planned):
        assert rebuilt == rebuilt_exact
        assert listed_pairs(positions, i, j, shift, cutoff).keys() == brute_force_pairs(positions, cutoff).keys()
    assert planned.n_builds == exact.n_builds >= 4
    assert planned.n_late == 0
    assert planned.n_checks <= 0.7 * 60  # the every-call check reads back on all 60 calls


def test_a_step_bound_that_does_not_hold_is_counted_and_made_more_cautious():
    """A bound 100x too small lets calls go past the expiry unchecked: the next check counts it
    as late, rebuilds and doubles the bound's factor."""
    box = torch.as_tensor(BOX)
    neighbor_list = NeighborList(0.6, skin=0.1)
    too_small = torch.tensor(1e-4, dtype=torch.float64)
    positions = random_beads(seed=4)
    neighbor_list(positions, box, lambda: too_small)
    for _ in random_walk(neighbor_list, positions, box, np.random.default_rng(5), 60, 0.02, lambda: too_small):
        pass
    assert neighbor_list.n_late >= 1
    assert neighbor_list.bound_factor == 2.0**neighbor_list.n_late
    assert neighbor_list.n_builds >= 1 + neighbor_list.n_late


@pytest.mark.parametrize("full_list", [True, False])
def test_widths_counted_on_the_host_are_the_layouts_own(full_list):
    # md.ForceField hands these to the fixed pair layout so that it reads nothing back from a GPU.
    from thermocg.nn import pair_layout

    positions = random_beads()
    neighbors = NeighborList(0.5, skin=0.1, full_list=full_list)
    i, j, _ = neighbors(positions, torch.as_tensor(BOX))
    measured = pair_layout(i, j, len(positions))
    assert neighbors.widths() == (measured.width_first, measured.width_second)
    given = pair_layout(i, j, len(positions), True, *neighbors.widths())
    for name in ("slot_first", "slot_second"):
        assert torch.equal(getattr(given, name), getattr(measured, name))


def test_a_saved_list_comes_back_with_its_pairs_and_bookkeeping():
    """state_dict/load_state_dict (DiffSim's checkpoints): the loaded list returns the saved pairs in
    their order at positions where a new list would list others, and rebuilds when the saved one
    would; an empty (invalidated) list comes back empty."""
    positions, box = random_beads(), torch.as_tensor(BOX)
    saved = NeighborList(0.5, skin=0.1)
    saved(positions, box)
    moved = positions + 0.02 * torch.ones_like(positions) * torch.tensor([1.0, -1.0, 0.5], dtype=positions.dtype)
    loaded = NeighborList(0.5, skin=0.1)
    loaded.load_state_dict(saved.state_dict(), positions.device)
    for ours, theirs in zip(saved(moved, box), loaded(moved, box)):
        assert torch.equal(ours, theirs)
    assert not torch.equal(NeighborList(0.5, skin=0.1)(moved, box)[0], saved(moved, box)[0])
    assert loaded.n_builds == saved.n_builds == 1 and loaded.widths() == saved.widths()
    far = positions + 0.06  # beyond half the skin: both rebuild
    assert torch.equal(saved(far, box)[0], loaded(far, box)[0]) and loaded.n_builds == 2
    saved.invalidate()
    empty = NeighborList(0.5, skin=0.1)
    empty.load_state_dict(saved.state_dict(), positions.device)
    assert empty.n_builds == 2 and torch.equal(empty(far, box)[0], saved(far, box)[0])
