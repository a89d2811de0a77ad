"""Differentiable simulation (DiffSim) refinement of a CG potential against RDFs and ADFs.

Loss (METHOD.md), summed over temperatures T_k simulated at once:
    L = sum_k [ sum_bins (g_theta(r; T_k) - g_FG(r; T_k))^2 + lambda_adf sum_bins (p_theta - p_FG)^2 ]
g_theta and p_theta come from Gaussian-smeared histograms of the frames of a window of Langevin (BAOAB)
steps run with the current parameters; the gradient flows back through the integrator over that
window (truncated backpropagation: the state is detached between windows).

The smeared histogram spreads each value over the bins as a Gaussian of width ``smearing``,
integrated over each bin (w_b = Phi(hi_b) - Phi(lo_b)), so every value carries weight one and the
estimator becomes the plain histogram as smearing -> 0. Smearing lowers peaks, so the target must be
made with the same estimator: build it from FG frames with :func:`make_target` (a plain-histogram
target would bias the refinement towards over-structured models).

Bins and normalisation follow METHOD.md: g(r) on 0.002 nm bins for 0 < r <= min(L)/2, normalised by
the ideal-gas count of N(N-1)/2 pairs; p(theta) of the angle J-I-K for J, K within 0.33 nm of I,
1 degree bins on 0-180 degrees, normalised to integrate to one (1/deg). Shell membership uses a smooth
switch of half-width ``shell_width`` around r_shell (weight w(r_IJ) w(r_IK) per angle) so that the
ADF stays differentiable; shell_width -> 0 is the hard cutoff.

The potential must have continuous forces (the network, a shifted-force LJ, PairCorrection): the
gradient through a trajectory cannot see a force jump at a cutoff, and the refinement then
settles on biased parameters.

Typical use (the lead's rule does this in :func:`refine_model_file`):

    targets = [make_target(beads["positions"], beads["box"], T) for T, beads in fg_frames.items()]
    model, history = refine(model, targets, params=["heads.W1.*", "heads.W2.*"],
                            reference_temperature=T0, n_iterations=100, window=200, lr=1e-4)
"""

import copy
import fnmatch
import logging
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from thermocg import checkpoints
from thermocg.io import write_table
from thermocg.md import BlowUpError, BlowUpGuard, Simulation, baoab_step, default_device
from thermocg.pair import smooth_switch
from thermocg.units import WATER_MASS

log = logging.getLogger(__name__)


# --- differentiable histograms ------------------------------------------------------------------
def smeared_histogram(values, edges, smearing, weights=None):
    """Gaussian-smeared histogram of ``values`` (P,) on uniform ``edges`` (B+1,).

    Each value adds weight (default 1) to bin b as Phi((hi_b - v)/s) - Phi((lo_b - v)/s); only the
    bins within 4 s of the value are visited, so the cost is O(P s / bin_width). smearing = 0 gives
    the plain (non-differentiable) histogram with bins [lo, hi).
    """
    n_bins = len(edges) - 1
    start, width = float(edges[0]), float(edges[1] - edges[0])
    reach = max(1, math.ceil(4.0 * smearing / width)) if smearing > 0 else 0
    lo, hi = start - (reach + 1) * width, float(edges[-1]) + (reach + 1) * width
    keep = (values.detach() >= lo) & (values.detach() < hi)
    values = values[keep]
    weights = None if weights is None else weights[keep]
    histogram = torch.zeros(n_bins, dtype=values.dtype, device=values.device)
    if values.numel() == 0:
        return histogram
    home = torch.floor((values.detach() - start) / width).long()
    offsets = torch.arange(-reach, reach + 2, device=values.device)
    # Same arithmetic as the edges themselves (k * width), so hard binning matches np.histogram.
    local_edges = start + (home[:, None] + offsets).to(values.dtype) * width  # (P, 2 reach + 2)
    if smearing > 0:
        cdf = 0.5 * torch.erf((local_edges - values[:, None]) / (math.sqrt(2.0) * smearing))
    else:
        cdf = (local_edges > values[:, None]).to(values.dtype)
    per_bin = cdf[:, 1:] - cdf[:, :-1]
    if weights is not None:
        per_bin = per_bin * weights[:, None]
    bins = home[:, None] + offsets[:-1]
    inside = (bins >= 0) & (bins < n_bins)
    per_bin = torch.where(inside, per_bin, torch.zeros_like(per_bin))
    return histogram.index_add(0, bins.clamp(0, n_bins - 1).reshape(-1), per_bin.reshape(-1))


def _frames(positions, box):
    positions = positions if positions.dim() == 3 else positions[None]
    box = torch.as_tensor(box, dtype=positions.dtype, device=positions.device)
    box = box.expand(positions.shape[0], 3) if box.dim() == 1 else box
    return positions, box


def _minimum_image(displacement, box):
    # round() has zero gradient, so the image shift is a constant for autograd.
    return displacement - box * torch.round(displacement / box)


@dataclass
class SmoothObservables:
    """The differentiable g(r) and p(theta) with their bin and smearing settings (nm, degrees)."""

    rdf_bin_width: float = 0.002
    rdf_r_max: float | None = None
    rdf_smearing: float = 0.002
    adf_r_shell: float = 0.33
    adf_shell_width: float = 0.01
    adf_bin_width_deg: float = 1.0
    adf_smearing_deg: float = 1.0

    def rdf_edges(self, box):
        # Minimum image is exact only up to half the smallest edge.
        limit = 0.5 * float(np.min(np.asarray(box)))
        r_max = limit if self.rdf_r_max is None else min(float(self.rdf_r_max), limit)
        n_bins = int(math.floor(r_max / self.rdf_bin_width + 1e-9))
        return np.arange(n_bins + 1) * self.rdf_bin_width

    def adf_edges(self):
        n_bins = int(round(180.0 / self.adf_bin_width_deg))
        return np.linspace(0.0, 180.0, n_bins + 1)

    def rdf(self, positions, box):
        """g(r) (B,) averaged over frames; positions (F, N, 3) or (N, 3) nm, box (3,) or (F, 3) nm.

        All N(N-1)/2 pairs by minimum image (O(N^2) per frame, fine for N of a few thousand).
        """
        positions, box = _frames(positions, box)
        n = positions.shape[1]
        edges_np = self.rdf_edges(box[0].detach().cpu().numpy())
        edges = torch.as_tensor(edges_np, dtype=positions.dtype, device=positions.device)
        first, second = torch.triu_indices(n, n, offset=1, device=positions.device)
        g = torch.zeros(len(edges) - 1, dtype=positions.dtype, device=positions.device)
        shell_volume = 4.0 / 3.0 * math.pi * (edges[1:] ** 3 - edges[:-1] ** 3)
        for frame, lengths in zip(positions, box):
            distance = _minimum_image(frame[second] - frame[first], lengths).norm(dim=-1)
            counts = smeared_histogram(distance, edges, self.rdf_smearing)
            ideal = (n * (n - 1) / 2) / lengths.prod() * shell_volume
            g = g + counts / ideal
        return g / positions.shape[0]

    def adf(self, positions, box):
        """p(theta) (B,) in 1/deg, averaged over the frames' angle weights."""
        positions, box = _frames(positions, box)
        edges = torch.as_tensor(self.adf_edges(), dtype=positions.dtype, device=positions.device)
        reach = self.adf_r_shell + self.adf_shell_width
        histogram = torch.zeros(len(edges) - 1, dtype=positions.dtype, device=positions.device)
        for frame, lengths in zip(positions, box):
            vectors = _minimum_image(frame[None, :, :] - frame[:, None, :], lengths)  # (N, N, 3): I -> J
            distance = vectors.detach().norm(dim=-1)
            distance.fill_diagonal_(float("inf"))
            centre, neighbour = torch.nonzero(distance < reach, as_tuple=True)  # sorted by centre
            first, second = _pairs_of_neighbours(centre, frame.shape[0])
            a = vectors[centre[first], neighbour[first]]
            b = vectors[centre[second], neighbour[second]]
            ra, rb = a.norm(dim=-1), b.norm(dim=-1)
            cosine = ((a * b).sum(-1) / (ra * rb)).clamp(-1.0 + 1e-6, 1.0 - 1e-6)
            theta = torch.rad2deg(torch.acos(cosine))
            weight = self._shell(ra) * self._shell(rb)
            histogram = histogram + smeared_histogram(theta, edges, self.adf_smearing_deg, weight)
        return histogram / (histogram.sum() * self.adf_bin_width_deg)

    def _shell(self, r):
        if self.adf_shell_width <= 0:
            return (r < self.adf_r_shell).to(r.dtype)
        return smooth_switch(r, self.adf_r_shell - self.adf_shell_width, self.adf_r_shell + self.adf_shell_width)


def _pairs_of_neighbours(centre, n_beads):
    """Indices (p, q), p < q, of every two entries of a centre-sorted pair list sharing a centre."""
    counts = torch.bincount(centre, minlength=n_beads)
    end = torch.cumsum(counts, 0)[centre]  # one past the last entry of this entry's centre
    index = torch.arange(len(centre), device=centre.device)
    later = end - index - 1  # entries after this one with the same centre
    first = torch.repeat_interleave(index, later)
    start_of_run = torch.repeat_interleave(torch.cumsum(later, 0) - later, later)
    second = first + 1 + torch.arange(len(first), device=centre.device) - start_of_run
    return first, second


def rdf_centres(edges):
    return 0.5 * (np.asarray(edges)[1:] + np.asarray(edges)[:-1])


# --- targets ------------------------------------------------------------------------------------
@dataclass
class Target:
    """What one temperature is fitted to: g (and p) on bin centres, and a starting configuration.

    rdf_r (nm) / rdf_g and adf_theta (deg) / adf_p (1/deg) are interpolated onto the refinement's
    own bins; positions (N, 3) nm and box (3,) nm start that temperature's simulation.
    """

    temperature: float
    positions: np.ndarray
    box: np.ndarray
    rdf_r: np.ndarray
    rdf_g: np.ndarray
    adf_theta: np.ndarray | None = None
    adf_p: np.ndarray | None = None


def make_target(positions, box, temperature, observables=None, start_frame=-1, with_adf=True, chunk=20):
    """Target from (FG-mapped) frames with the same smeared estimator the refinement uses.

    positions (F, N, 3) nm, box (3,) or (F, 3) nm; the frame ``start_frame`` starts the simulation.
    """
    observables = observables or SmoothObservables()
    positions = torch.as_tensor(np.asarray(positions, dtype=np.float64))
    positions, box_t = _frames(positions, torch.as_tensor(np.asarray(box, dtype=np.float64)))
    with torch.no_grad():
        g, p, n = 0.0, 0.0, positions.shape[0]
        for lo in range(0, n, chunk):
            weight = min(chunk, n - lo) / n
            g = g + weight * observables.rdf(positions[lo:lo + chunk], box_t[lo:lo + chunk])
            if with_adf:
                p = p + weight * observables.adf(positions[lo:lo + chunk], box_t[lo:lo + chunk])
    box_np = box_t[start_frame].numpy()
    target = Target(float(temperature), positions[start_frame].numpy(), box_np,
                    rdf_centres(observables.rdf_edges(box_np)), g.numpy())
    if with_adf:
        target.adf_theta, target.adf_p = rdf_centres(observables.adf_edges()), p.numpy()
    return target


# --- parameter selection ------------------------------------------------------------------------
def select_parameters(module, params=None):
    """[(name, parameter)] chosen by ``params``: None (every parameter that requires grad), a
    name or fnmatch pattern or a list of them (e.g. ["heads.w1.*", "b"]), or a callable
    (name, parameter) -> bool."""
    named = list(module.named_parameters())
    if params is None:
        chosen = [(name, p) for name, p in named if p.requires_grad]
    elif callable(params):
        chosen = [(name, p) for name, p in named if params(name, p)]
    else:
        patterns = [params] if isinstance(params, str) else list(params)
        for pattern in patterns:
            if not any(fnmatch.fnmatchcase(name, pattern) for name, _ in named):
                raise ValueError(f"no parameter matches {pattern!r}; parameters: {[n for n, _ in named]}")
        chosen = [(name, p) for name, p in named if any(fnmatch.fnmatchcase(name, pat) for pat in patterns)]
    if not chosen:
        raise ValueError("no parameters selected for refinement")
    return chosen


def learning_rates(lr, names):
    """{name: Adam learning rate} for the refined parameters ``names``: ``lr`` is one rate for all, or
    {name or fnmatch pattern: rate}, the first matching pattern giving a parameter its rate. Adam moves
    a parameter by about its rate per step, so parameters of different scales (spline coefficients
    of order 1-10, network weights of order 0.1) need rates of their own."""
    if not isinstance(lr, dict):
        return {name: float(lr) for name in names}
    unused = [pattern for pattern in lr if not any(fnmatch.fnmatchcase(name, pattern) for name in names)]
    if unused:
        raise ValueError(f"learning rates given for {unused}, which match no refined parameter; refined: {names}")
    rates = {}
    for name in names:
        pattern = next((pattern for pattern in lr if fnmatch.fnmatchcase(name, pattern)), None)
        if pattern is None:
            raise ValueError(f"no learning rate given for the refined parameter {name!r} (patterns: {list(lr)})")
        rates[name] = float(lr[pattern])
    return rates


# --- the refinement loop ------------------------------------------------------------------------
@dataclass
class _Temperature:
    """One temperature of the refinement: its simulation and its target curves on our bins."""

    sim: Simulation
    g_target: torch.Tensor
    p_target: torch.Tensor | None
    label: str


def _interpolate(x_new, x, y):
    return np.interp(x_new, np.asarray(x), np.asarray(y), left=0.0, right=float(np.asarray(y)[-1]))


def simulate_window(sim, *, observables, window, sample_every, with_adf=False):
    """Run ``window`` differentiable BAOAB steps of ``sim`` (a :class:`thermocg.md.Simulation`)
    from its current state, detached; return (g, p or None, end state (x, v, f, energy)).

    g and p, from the frames taken every ``sample_every`` steps, are differentiable with respect to
    the potential's parameters through every step of the window. ``sim`` itself is not advanced.
    """
    x, v = sim.positions.detach(), sim.velocities.detach()
    # The first half kick uses F(x0; theta): recompute it inside the graph (only x0, v0 are detached).
    energy, f = sim.force_field(x, create_graph=True)
    frames = []
    for step in range(1, window + 1):
        x, v, f, energy = baoab_step(x, v, f, sim.force_field, sim.dt, sim.inv_mass, sim.c1, sim.noise_std,
                                     sim.generator, create_graph=True)
        if step % sample_every == 0:
            frames.append(x)
    frames = torch.stack(frames)
    g = observables.rdf(frames, sim.box)
    p = observables.adf(frames, sim.box) if with_adf else None
    return g, p, (x, v, f, energy)


def window_loss(sim, g_target, *, observables, window, sample_every, p_target=None, lambda_adf=0.0):
    """METHOD.md's loss sum_bins (g - g_target)^2 [+ lambda_adf sum_bins (p - p_target)^2] of one
    differentiable window (see :func:`simulate_window`; the ADF term where ``p_target`` is given).

    Returns (loss, {"rdf": its RDF term[, "adf": its ADF term before lambda_adf]}, end state).
    """
    g, p, end = simulate_window(sim, observables=observables, window=window, sample_every=sample_every,
                                with_adf=p_target is not None)
    terms = {"rdf": ((g - g_target) ** 2).sum()}
    loss = terms["rdf"]
    if p is not None:
        terms["adf"] = ((p - p_target) ** 2).sum()
        loss = loss + lambda_adf * terms["adf"]
    return loss, terms, end


def refine(potential, targets, *, params=None, n_iterations=50, window=200, sample_every=10, warmup_steps=None,
           dt=0.002, friction=1.0, masses=WATER_MASS, reference_temperature=None, lambda_adf=1.0,
           observables=None, lr=1e-3, lr_decay=1.0, betas=(0.9, 0.999), max_grad_norm=1.0, average_last=0,
           skin=0.1, seed=0, dtype=torch.float32, device=None, guard=None, max_restarts=5, history_path=None,
           checkpoint=None, inputs=None):
    """Refine ``potential`` in place so that its simulated RDF/ADF match ``targets`` (list of Target).

    Each iteration runs one differentiable window of ``window`` BAOAB steps per temperature
    (frames every ``sample_every`` steps), backpropagates the summed loss, clips the gradient
    norm to ``max_grad_norm`` and takes one Adam step. ``lr`` is a float or a dict
    {parameter name or pattern: lr} (per-parameter step sizes, e.g. for epsilon in kJ/mol and sigma
    in nm; see :func:`learning_rates`),
    multiplied by ``lr_decay`` after every iteration (1: constant); ``betas`` are Adam's (a lower
    first one, e.g. 0.5, damps the oscillations of strongly coupled parameters such as epsilon
    and sigma).
    ``params`` chooses what is refined (see :func:`select_parameters`); the others are frozen
    during the call and their requires_grad flags restored after. Each temperature first runs
    ``warmup_steps`` (default: one window) plain steps from its start frame. The potential sees
    dbeta = beta(T_k) - beta(reference_temperature) (None: dbeta = 0 everywhere).

    The gradient is stochastic (a few frames per window), so the parameters keep jittering around
    the optimum; ``average_last = k > 0`` returns the mean of the parameters the last k windows
    ran with (iterate averaging) instead of the last iterate.

    Blow-up guard: if a window gives a non-finite loss or gradient, or its end state fails
    ``guard`` (:class:`thermocg.md.BlowUpGuard`), the parameters, optimiser and states go back to the
    last good iteration and the learning rate is halved; after ``max_restarts`` it raises BlowUpError.

    Returns (potential, history) with history a DataFrame, one row per iteration (loss, its parts
    per temperature, gradient norm, learning-rate factor, restarts, scalar parameter values,
    relative_change of the refined parameters from their start, kinetic temperatures, averaged: whether
    the window's parameters enter the returned mean, seconds); written as TSV to ``history_path``
    after every iteration.

    ``checkpoint``: a file written after every iteration (parameters, optimiser, the simulations'
    states with their neighbour lists and random streams, the loss curve so far). A call that finds
    one made with the same settings, targets, starting parameters and ``inputs`` (name -> file, see
    :mod:`thermocg.checkpoints`) continues from it, bit for bit on CPU as if never stopped; the
    caller removes it once it has saved the result.
    """
    if window % sample_every:
        raise ValueError("window must be a multiple of sample_every")
    if not 0 <= average_last <= n_iterations:
        raise ValueError("average_last must lie in [0, n_iterations]")
    chosen = select_parameters(potential, params)
    chosen_ids = {id(p) for _, p in chosen}
    flags = {name: p.requires_grad for name, p in potential.named_parameters()}
    for _, p in potential.named_parameters():
        p.requires_grad_(id(p) in chosen_ids)
    warmup_steps = window if warmup_steps is None else warmup_steps
    observables, guard = observables or SmoothObservables(), guard or BlowUpGuard()
    fingerprint = None
    if checkpoint is not None:
        fingerprint = checkpoints.fingerprint({
            "parameters": [name for name, _ in chosen], "n_iterations": n_iterations, "window": window,
            "sample_every": sample_every, "warmup_steps": warmup_steps, "dt": dt, "friction": friction,
            "reference_temperature": reference_temperature, "lambda_adf": lambda_adf,
            "observables": asdict(observables), "lr": lr, "lr_decay": lr_decay, "betas": list(betas),
            "max_grad_norm": max_grad_norm, "average_last": average_last, "skin": skin, "seed": seed,
            "dtype": str(dtype), "guard": asdict(guard), "max_restarts": max_restarts,
            "masses": checkpoints.array_digest(masses),
            "targets": [[t.temperature, checkpoints.array_digest(t.positions, t.box, t.rdf_r, t.rdf_g, t.adf_theta,
                                                                 t.adf_p)] for t in targets],
            "start": checkpoints.array_digest(*(p for p in potential.state_dict().values())),
        }, inputs)
    try:
        run = _Refinement(potential, targets, chosen, window=window, sample_every=sample_every, dt=dt,
                          friction=friction, masses=masses, reference_temperature=reference_temperature,
                          lambda_adf=lambda_adf, observables=observables, lr=lr, lr_decay=lr_decay, betas=betas,
                          max_grad_norm=max_grad_norm, skin=skin, seed=seed, dtype=dtype, device=device,
                          guard=guard, max_restarts=max_restarts, history_path=history_path)
        saved = checkpoints.load(checkpoint, fingerprint) if checkpoint is not None else None
        if saved is None:
            run.warm_up(warmup_steps)
        else:
            run.load_state_dict(torch.load(saved, map_location=run.sims[0].device, weights_only=True))
            log.info("resumed DiffSim from %s after iteration %d of %d", checkpoint, run.iteration, n_iterations)

        def save(state):
            checkpoints.save(checkpoint, fingerprint, lambda handle: torch.save(state, handle))

        history = run.iterate(n_iterations, average_last, save if checkpoint is not None else None)
    finally:
        for name, p in potential.named_parameters():
            p.requires_grad_(flags[name])
    return potential, history


class _Refinement:
    """The state of one refine() call: simulations, optimiser, last good snapshot, history rows."""

    def __init__(self, potential, targets, chosen, *, window, sample_every, dt, friction, masses,
                 reference_temperature, lambda_adf, observables, lr, lr_decay, betas, max_grad_norm, skin, seed,
                 dtype, device, guard, max_restarts, history_path):
        self.window, self.sample_every, self.lambda_adf = window, sample_every, lambda_adf
        self.observables, self.guard, self.max_restarts = observables, guard, max_restarts
        self.max_grad_norm, self.lr_decay, self.history_path = max_grad_norm, lr_decay, history_path
        self.chosen = chosen
        self.parameters = [p for _, p in chosen]
        self.temperatures = []
        for k, target in enumerate(targets):
            label = f"T{target.temperature:g}"
            if any(t.temperature == target.temperature for t in targets[:k]):
                label += f"_{k}"  # several targets at one temperature (e.g. independent replicas)
            sim = Simulation(potential, target.positions, target.box, target.temperature, masses=masses, dt=dt,
                             friction=friction, reference_temperature=reference_temperature, skin=skin,
                             seed=seed + k, dtype=dtype, device=device)
            as_t = lambda a: torch.as_tensor(a, device=sim.device).to(dtype)  # noqa: E731
            g_target = as_t(_interpolate(rdf_centres(observables.rdf_edges(target.box)), target.rdf_r, target.rdf_g))
            p_target = None
            if target.adf_p is not None and lambda_adf > 0:
                p_target = as_t(_interpolate(rdf_centres(observables.adf_edges()), target.adf_theta, target.adf_p))
            self.temperatures.append(_Temperature(sim, g_target, p_target, label))
        self.sims = [temperature.sim for temperature in self.temperatures]

        self.start = [p.detach().clone() for p in self.parameters]
        rates = learning_rates(lr, [name for name, _ in chosen])
        self.optimizer = torch.optim.Adam([{"params": [p], "lr": rates[name]} for name, p in chosen],
                                          betas=tuple(betas))
        self.base_rates = [group["lr"] for group in self.optimizer.param_groups]
        self.lr_factor, self.restarts, self.rows = 1.0, 0, []
        self.iteration, self.good = 0, None
        self.averages = [torch.zeros_like(p) for p in self.parameters]

    def warm_up(self, steps):
        """Plain steps from each start frame; the state after them is the first good one."""
        for temperature in self.temperatures:
            temperature.sim.run(steps)
            reason = self.guard.check(temperature.sim)
            if reason is not None:
                raise BlowUpError(temperature.sim.step, f"{temperature.label} warm-up: {reason}")
        self.good = self.snapshot()

    def state_dict(self):
        """Everything the next iterations depend on (a checkpoint's payload)."""
        return {
            "iteration": self.iteration, "parameters": [p.detach() for p in self.parameters],
            "optimizer": self.optimizer.state_dict(), "lr_factor": self.lr_factor, "restarts": self.restarts,
            "rows": self.rows, "averages": self.averages, "good": self.good,
            "simulations": [_tensors(sim.state_dict(exact=True)) for sim in self.sims],
        }

    def load_state_dict(self, state):
        with torch.no_grad():
            for p, saved in zip(self.parameters, state["parameters"]):
                p.copy_(saved)
        self.optimizer.load_state_dict(state["optimizer"])
        for sim, saved in zip(self.sims, state["simulations"]):
            sim.load_state_dict(saved)
        self.iteration, self.lr_factor, self.restarts = int(state["iteration"]), state["lr_factor"], state["restarts"]
        self.rows, self.averages, self.good = state["rows"], state["averages"], state["good"]

    def snapshot(self):
        return {
            "params": [p.detach().clone() for p in self.parameters],
            "optimizer": copy.deepcopy(self.optimizer.state_dict()),
            "states": [(sim.positions.clone(), sim.velocities.clone(), sim.step) for sim in self.sims],
        }

    def restore(self, snapshot):
        with torch.no_grad():
            for p, saved in zip(self.parameters, snapshot["params"]):
                p.copy_(saved)
        self.optimizer.load_state_dict(snapshot["optimizer"])
        for sim, (x, v, step) in zip(self.sims, snapshot["states"]):
            sim.positions, sim.velocities, sim.step = x.clone(), v.clone(), step
            sim.refresh()

    def relative_change(self):
        """|theta - theta_start| / |theta_start| over every refined parameter (the change if theta_start = 0)."""
        moved = sum(float(((p.detach() - p0) ** 2).sum()) for p, p0 in zip(self.parameters, self.start))
        size = sum(float((p0**2).sum()) for p0 in self.start)
        return math.sqrt(moved / size) if size > 0 else math.sqrt(moved)

    def set_rates(self, iteration):
        for group, base in zip(self.optimizer.param_groups, self.base_rates):
            group["lr"] = base * self.lr_factor * self.lr_decay**iteration

    def one_window(self):
        """Simulate and backpropagate every temperature; returns (row, failure or None)."""
        self.optimizer.zero_grad(set_to_none=True)
        total, row, ends = 0.0, {}, []
        for temperature in self.temperatures:
            sim = temperature.sim
            try:
                loss, terms, end = window_loss(sim, temperature.g_target, observables=self.observables,
                                               window=self.window, sample_every=self.sample_every,
                                               p_target=temperature.p_target, lambda_adf=self.lambda_adf)
            except (RuntimeError, ValueError) as error:  # e.g. the neighbour list on exploded positions
                return row, f"{temperature.label}: {error}"
            for term, value in terms.items():
                row[f"loss_{term}_{temperature.label}"] = value.item()
            if not torch.isfinite(loss):
                return row, f"{temperature.label}: non-finite loss"
            loss.backward()  # one temperature at a time: only one window's graph in memory
            total += loss.item()
            ends.append((temperature, end))
        grad_norm = float(torch.nn.utils.clip_grad_norm_(self.parameters, self.max_grad_norm))
        if not math.isfinite(grad_norm):
            return row, "non-finite gradient"
        for temperature, (x, v, f, energy) in ends:
            sim = temperature.sim
            sim.positions, sim.velocities = x.detach(), v.detach()
            sim.forces, sim.energy, sim.step = f.detach(), energy.detach(), sim.step + self.window
            reason = self.guard.check(sim)
            if reason is not None:
                return row, f"{temperature.label}: {reason}"
            row[f"T_kin_{temperature.label}"] = sim.kinetic_temperature()
        return {"loss": total, **row, "grad_norm": grad_norm}, None

    def iterate(self, n_iterations, average_last, save=None):
        """Iterations from ``self.iteration`` to ``n_iterations``; ``save(state_dict)`` after each."""
        while self.iteration < n_iterations:
            iteration, clock = self.iteration, time.perf_counter()
            row, failure = self.one_window()
            if failure is not None:
                self.restarts += 1
                self.restore(self.good)
                if self.restarts > self.max_restarts:
                    raise BlowUpError(iteration, f"DiffSim gave up after {self.max_restarts} restarts: {failure}")
                self.lr_factor *= 0.5
                self.set_rates(iteration)
                log.warning("iteration %d blew up (%s): back to the last good state, lr x %g", iteration, failure,
                            self.lr_factor)
                continue
            row = {"iteration": iteration, **row, "lr_factor": self.lr_factor * self.lr_decay**iteration,
                   "restarts": self.restarts}
            for name, p in self.chosen:
                if p.numel() == 1:  # the values this window ran with, before the update
                    row[name] = p.item()
            row["relative_change"] = self.relative_change()
            row["averaged"] = iteration >= n_iterations - average_last  # never with average_last = 0
            if row["averaged"]:
                for average, p in zip(self.averages, self.parameters):
                    average += p.detach() / average_last
            self.good = self.snapshot()  # parameters that just ran cleanly, and the states they reached
            self.optimizer.step()
            row["seconds"] = time.perf_counter() - clock
            self.rows.append(row)
            # One window's loss scatters by 13-38% about its expectation (a few frames per
            # temperature), so it looks flat while that halves: how far the parameters moved shows
            # the refinement at work.
            log.info("DiffSim iteration %d/%d: loss %.5g, |grad| %.3g, run with parameters %.1f%% away from the start",
                     iteration + 1, n_iterations, row["loss"], row["grad_norm"], 100 * row["relative_change"])
            if self.history_path is not None:
                write_table(self.history_path, pd.DataFrame(self.rows),
                            comment="DiffSim loss curve (thermocg.diffsim.refine)")
            self.iteration = iteration + 1
            self.set_rates(self.iteration)
            if save is not None:
                save(self.state_dict())
        if average_last:
            with torch.no_grad():
                for average, p in zip(self.averages, self.parameters):
                    p.copy_(average)
        return pd.DataFrame(self.rows)


def _tensors(tree):
    """numpy arrays and scalars in a nested dict as tensors (what torch.load(weights_only=True) reads)."""
    if isinstance(tree, dict):
        return {key: _tensors(value) for key, value in tree.items()}
    if isinstance(tree, (np.ndarray, np.generic)):
        return torch.as_tensor(tree)
    return tree


def refine_model_file(model_path, beads_paths, temperatures, reference_temperature, settings, model_out, curve_out,
                      seed=0, threads=1, checkpoint=None):
    """The refine_diffsim rule: refine a saved model against the mapped FG frames of ``temperatures``.

    Targets are built from every mapped FG frame of each temperature with the same smeared
    estimator the refinement uses (its smearing from ``settings``, the config's ``diffsim``
    section). Writes the refined model (name ``<model>_diffsim``, same file format) and the loss curve.
    ``checkpoint``: written after every iteration, resumed by a rerun with the same settings and
    input files (see :func:`refine`), removed once the outputs are written.
    """
    from thermocg import io, nn

    torch.set_num_threads(threads)
    model, metadata = nn.load_model(model_path)
    with_adf = settings["lambda_adf"] > 0
    smooth = SmoothObservables(rdf_smearing=settings["rdf_smearing"], adf_smearing_deg=settings["adf_smearing"])
    targets, masses = [], None
    for path, temperature in zip(beads_paths, temperatures):
        beads = io.load_frames(path)
        masses = beads["masses"]
        targets.append(make_target(beads["positions"], beads["box"], temperature, observables=smooth,
                                   with_adf=with_adf))
    log.info("refining %s (%s) at %s K on %s", metadata["name"], ", ".join(settings["parameters"]), temperatures,
             default_device())
    refined, history = refine(
        model, targets, params=settings["parameters"], n_iterations=settings["iterations"], window=settings["window"],
        sample_every=settings["sample_every"], dt=settings["timestep"], friction=settings["friction"],
        masses=masses, reference_temperature=reference_temperature, lambda_adf=settings["lambda_adf"],
        observables=smooth, lr=settings["learning_rate"], max_grad_norm=settings["max_grad_norm"],
        average_last=settings["average_last"], seed=seed, dtype=next(model.parameters()).dtype, history_path=curve_out,
        checkpoint=checkpoint,
        inputs={"model": model_path, **{f"beads_{k}": path for k, path in enumerate(beads_paths)}},
    )
    metadata = dict(metadata, name=f"{metadata['name']}_diffsim", refined_from=metadata["name"], diffsim=settings,
                    trained_at_K=sorted(set(metadata["trained_at_K"]) | {float(t) for t in temperatures}))
    nn.save_model(model_out, refined, metadata)
    if checkpoint is not None:
        Path(checkpoint).unlink(missing_ok=True)  # outputs written: a rerun must refine again
    return refined, history
