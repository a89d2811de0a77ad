"""Known-answer tests of the thermal response targets (thermocg.targets).

Synthetic "FG" system: CG coordinate r in [0, 2] and a hidden coordinate s with
    u(r, s) = a(r) + b(r) s^2 / 2,   b > 0.
At fixed r, s is Gaussian with variance 1 / (beta b), so exactly
    W(r; beta) = a + ln b / (2 beta),        F = -a' - b' / (2 beta b),
    dF/dbeta   = b' / (2 beta^2 b),          d2F/dbeta2 = -b' / (beta^3 b),
    <u>_r      = a + 1 / (2 beta),           Cov_r(f, u) = -dF/dbeta,
and the mapped force is f = -du/dr = -a' - b' s^2 / 2. r is drawn uniformly (only conditional
quantities matter) and s exactly from its conditional Gaussian. Targets are regressed on r by least
squares on a Chebyshev basis, then compared with the analytic curves on a grid.
"""

import numpy as np
import pytest
import torch
from numpy.polynomial import chebyshev

from thermocg import targets
from thermocg.units import beta as inverse_temperature

BETA = 0.4  # mol/kJ, about 300 K
DEGREE = 6  # Chebyshev degree; truncation error for cos(2r) on [0, 2] is ~1e-5
GRID = np.linspace(0.0, 2.0, 101)
N_SAMPLES = 4_000_000


def a(r):
    return 1.5 * torch.cos(1.5 * r)


def a_prime(r):
    return -2.25 * torch.sin(1.5 * r)


def b(r):
    return 5.0 * torch.exp(0.8 * torch.sin(2.0 * r))


def b_prime(r):
    return b(r) * 1.6 * torch.cos(2.0 * r)


def mean_force(r, beta=BETA):
    return -a_prime(r) - b_prime(r) / (2 * beta * b(r))


def mean_energy(r, beta=BETA):
    return a(r) + 1.0 / (2 * beta)


def response(r, beta=BETA):
    """Analytic dF/dbeta."""
    return b_prime(r) / (2 * beta**2 * b(r))


def second_response(r, beta=BETA):
    """Analytic d2F/dbeta2."""
    return -b_prime(r) / (beta**3 * b(r))


def sample(shape, seed, beta=BETA):
    """r, mapped force f and energy u, drawn exactly; every array has the given shape."""
    gen = torch.Generator().manual_seed(seed)
    r = 2.0 * torch.rand(shape, generator=gen, dtype=torch.float64)
    s = torch.randn(shape, generator=gen, dtype=torch.float64) / torch.sqrt(beta * b(r))
    u = a(r) + b(r) * s**2 / 2
    f = -a_prime(r) - b_prime(r) * s**2 / 2
    return r, f, u


class Regression:
    """Least squares of samples y(r) on Chebyshev polynomials in r, evaluated on GRID."""

    def __init__(self, r):
        self.design = chebyshev.chebvander(r.numpy().ravel() - 1.0, DEGREE)
        self.gram = self.design.T @ self.design

    def __call__(self, y):
        coef = np.linalg.solve(self.gram, self.design.T @ y.numpy().ravel())
        return torch.as_tensor(chebyshev.chebval(GRID - 1.0, coef))


def on_grid(function):
    return function(torch.as_tensor(GRID))


def rel_err(estimate, reference):
    """sqrt(mean (estimate - reference)^2) / sqrt(mean reference^2) over all elements."""
    return float(((estimate - reference) ** 2).mean().sqrt() / (reference**2).mean().sqrt())


@pytest.fixture(scope="module")
def single():
    """One bead per frame: forces (n, 1, 1) (a 1-d coordinate), energies (n,), per-bead (n, 1)."""
    r, f, u = sample((N_SAMPLES, 1), seed=1)
    return {"r": r, "f": f[..., None], "u": u[:, 0], "F": mean_force(r)[..., None], "fit": Regression(r)}


def test_force_matching_target_regresses_to_mean_force(single):
    y0 = targets.force_matching_target(single["f"])
    assert rel_err(single["fit"](y0), on_grid(mean_force)) < 0.01


def test_first_order_global_recovers_response_for_any_constant(single):
    truth = on_grid(response)
    mean_u = float(single["u"].mean())
    spread = float(single["u"].std())
    fits = []
    for c in (mean_u, mean_u + 2 * spread):
        y1 = targets.first_order_global_target(single["f"], single["F"], single["u"], c)
        fits.append(single["fit"](y1))
        assert rel_err(fits[-1], truth) < 0.03
    # Same samples, so the difference is pure noise -(f - F)(c2 - c1) with mean zero.
    assert rel_err(fits[1], fits[0]) < 0.03


def test_first_order_with_inexact_mean_force_is_biased_by_constant_reference(single):
    # A model force off by delta adds delta (<u>_r - c) to E[y1]; c = E(R) = <u>_r removes it.
    delta = 1.0
    model_force = single["F"] + delta
    c = float(single["u"].mean())
    y1_const = targets.first_order_global_target(single["f"], model_force, single["u"], c)
    expected = on_grid(lambda r: response(r) + delta * (mean_energy(r) - c))
    assert rel_err(single["fit"](y1_const), expected) < 0.03
    assert rel_err(single["fit"](y1_const), on_grid(response)) > 0.15

    y1_cond = targets.first_order_global_target(single["f"], model_force, single["u"], mean_energy(single["r"][:, 0]))
    assert rel_err(single["fit"](y1_cond), on_grid(response)) < 0.03


def uncentred(energy):
    """A squared-residual model of zero: METHOD.md's y2, (f - F) (u - E)^2."""
    return torch.zeros_like(energy)


def squared_residual_mean(energy, beta=BETA):
    """E[(u - <u>_r)^2 | r] = Var(b s^2 / 2) = 1 / (2 beta^2), the same at every r."""
    return torch.full_like(energy, 0.5 / beta**2)


def test_second_order_global_recovers_second_derivative(single):
    e = mean_energy(single["r"])  # the exact conditional mean, as a per-bead energy (n, 1)
    for centring in (uncentred, squared_residual_mean):  # an exact F: the centring changes nothing
        y2 = targets.second_order_global_target(single["f"], single["F"], single["u"], e, centring(single["u"]))
        assert rel_err(single["fit"](y2), on_grid(second_response)) < 0.05


def test_second_order_centring_cancels_the_mean_force_error(single):
    # With F_model = F + delta, E[(f - F_model) (u - E)^2] = F_bb - delta Var(u | r): first order in
    # delta, times the conditional energy variance. Subtracting that variance from (u - E)^2 cancels it.
    delta = 3.0  # F_bb is about 25 here, the bias 9.4
    e = mean_energy(single["r"])
    model_force = single["F"] + delta
    y2_plain = targets.second_order_global_target(single["f"], model_force, single["u"], e, uncentred(single["u"]))
    expected = on_grid(lambda r: second_response(r) - delta * 0.5 / BETA**2)
    assert rel_err(single["fit"](y2_plain), expected) < 0.05
    assert rel_err(single["fit"](y2_plain), on_grid(second_response)) > 0.2
    y2 = targets.second_order_global_target(single["f"], model_force, single["u"], e, squared_residual_mean(single["u"]))
    assert rel_err(single["fit"](y2), on_grid(second_response)) < 0.05


@pytest.mark.parametrize("d", [1.0 / BETA, -2.0 / BETA])
def test_second_order_bias_with_shifted_energy(single, d):
    # sum_J e_J = <u>_R - d  =>  E[y2] = kappa + 2 d Cov(f, u) = F_bb - 2 d F_b (METHOD.md).
    # Here F_bb = -2 F_b / beta, so d = 1/beta doubles F_bb and d = -2/beta flips its sign
    # (the opposite sign of the bias term would give 0 and 3 F_bb instead).
    e = mean_energy(single["r"]) - d
    y2 = targets.second_order_global_target(single["f"], single["F"], single["u"], e, uncentred(single["u"]))
    expected = on_grid(lambda r: second_response(r) - 2 * d * response(r))
    fit = single["fit"](y2)
    assert rel_err(fit, expected) < 0.05
    assert rel_err(fit, on_grid(second_response)) > 0.3


def test_local_matches_global_with_lower_variance():
    # Independent copies of the synthetic system, one per bead on a ring; N(I) = {I-1, I, I+1}.
    # No correlations between beads, so truncation costs nothing and both estimators agree.
    n_frames, n_beads = 80_000, 32
    r, f, u_bead = sample((n_frames, n_beads), seed=2)
    forces, mean_forces = f[..., None], mean_force(r)[..., None]
    e = mean_energy(r)
    ring = torch.arange(n_beads)
    pairs = (torch.cat([ring, ring]), torch.cat([(ring + 1) % n_beads, (ring - 1) % n_beads]))

    y_local = targets.first_order_local_target(forces, mean_forces, u_bead, e, pairs)
    y_global = targets.first_order_global_target(forces, mean_forces, u_bead.sum(-1), e.sum(-1))
    fit = Regression(r)
    truth = on_grid(response)
    assert rel_err(fit(y_local), truth) < 0.03
    assert rel_err(fit(y_global), truth) < 0.03
    # Only the bead's own energy carries a third cumulant with f_I, so local y2 is exact too.
    y2_local = targets.second_order_local_target(forces, mean_forces, u_bead, e, pairs, uncentred(e))
    assert rel_err(fit(y2_local), on_grid(second_response)) < 0.05

    # With x = f - F and w = u_J - <u_J>: E[x^2 w^2] - F_b^2 = 56 k, E[x^2] E[w^2] = 4 k (same k for
    # every r), so the conditional variances are (56 + 4 (M - 1)) k and (56 + 4 * 2) k.
    exact = response(r)[..., None]
    ratio = float(((y_global - exact) ** 2).mean() / ((y_local - exact) ** 2).mean())
    assert ratio == pytest.approx((56 + 4 * (n_beads - 1)) / (56 + 4 * 2), rel=0.1)


def test_finite_difference_helpers_are_second_order_in_dt():
    t0 = 300.0
    r = torch.linspace(0.0, 2.0, 21, dtype=torch.float64)
    beta0 = float(inverse_temperature(t0))

    def force_at(t):
        return mean_force(r, float(inverse_temperature(t)))

    errors1, errors2 = [], []
    for dt in (40.0, 20.0, 10.0):
        fd1 = targets.finite_difference_response(force_at(t0 + dt), force_at(t0 - dt), t0, dt)
        fd2 = targets.finite_difference_second_response(force_at(t0 + dt), force_at(t0), force_at(t0 - dt), t0, dt)
        errors1.append(rel_err(fd1, response(r, beta0)))
        errors2.append(rel_err(fd2, second_response(r, beta0)))
    assert errors1[-1] < 0.01 and errors2[-1] < 0.01
    for errors in (errors1, errors2):
        for coarse, fine in zip(errors, errors[1:]):
            assert coarse / fine == pytest.approx(4.0, rel=0.15)


def test_energy_matching_route_is_exact_for_the_synthetic_system():
    r = torch.linspace(0.0, 2.0, 21, dtype=torch.float64)
    energy_force = -a_prime(r)  # -d<u>_r/dr
    fb = targets.energy_matching_response(energy_force, mean_force(r), BETA)
    torch.testing.assert_close(fb, response(r))


def test_local_pairs_and_sums_match_brute_force():
    gen = torch.Generator().manual_seed(3)
    box = torch.tensor([2.0, 2.2, 2.4], dtype=torch.float64)
    positions = torch.rand((60, 3), generator=gen, dtype=torch.float64) * box
    values = torch.randn((4, 60), generator=gen, dtype=torch.float64)
    r_loc = 0.6

    delta = positions[None, :, :] - positions[:, None, :]
    delta -= box * torch.round(delta / box)
    within = delta.norm(dim=-1) < r_loc  # includes the bead itself
    expected = values @ within.to(values.dtype).T

    from thermocg.neighbors import NeighborList

    for neighbor_list in (None, NeighborList(r_loc, skin=0.2)):
        pairs = targets.local_pairs(positions, box, r_loc, neighbor_list)
        torch.testing.assert_close(targets.local_energy_sum(values, pairs), expected)


def test_shapes_dtypes_and_detach():
    gen = torch.Generator().manual_seed(4)
    n_frames, n_beads = 3, 5
    forces = torch.randn((n_frames, n_beads, 3), generator=gen)
    mean_forces = torch.randn((n_frames, n_beads, 3), generator=gen, requires_grad=True)
    bead_u = torch.randn((n_frames, n_beads), generator=gen, dtype=torch.float64) - 1e4
    e = torch.randn((n_frames, n_beads), generator=gen, dtype=torch.float64, requires_grad=True)
    pairs = (torch.tensor([0, 1, 3, 4]), torch.tensor([1, 0, 4, 3]))
    u = bead_u.sum(-1)
    results = [
        targets.force_matching_target(forces),
        targets.first_order_global_target(forces, mean_forces, u, -5e4),
        targets.first_order_local_target(forces, mean_forces, bead_u, e, pairs),
        targets.second_order_local_target(forces, mean_forces, bead_u, e, pairs, torch.zeros_like(bead_u)),
        targets.second_order_global_target(forces, mean_forces, u, e, torch.zeros_like(u)),
    ]
    for y in results:
        assert y.shape == (n_frames, n_beads, 3)
        assert y.dtype == torch.float32
        assert not y.requires_grad

    # Bead 2 has no neighbours, so its local residual is its own; beads 0 and 1 share theirs.
    residual = (bead_u - e).detach()
    deviation = forces - mean_forces.detach()
    torch.testing.assert_close(results[2][:, 2], -deviation[:, 2] * residual[:, 2, None].float())
    torch.testing.assert_close(results[3][:, 0], deviation[:, 0] * (residual[:, 0] + residual[:, 1])[:, None].float() ** 2)
    total = (u - e.detach().sum(-1)).float()
    torch.testing.assert_close(results[4], deviation * total[:, None, None] ** 2)

