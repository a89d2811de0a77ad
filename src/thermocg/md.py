"""CG molecular dynamics: Langevin (BAOAB) or NVE (velocity Verlet) in a periodic orthorhombic box.

Forces come from a potential that follows the thermocg interface (see :mod:`thermocg.pair`):
``W = potential(positions, i, j, shift, dbeta)`` with dbeta = beta(T) - beta(T0), F = -dW/dR.

BAOAB (Leimkuhler and Matthews) for one step of length dt, friction gamma (1/ps):
    B: v += dt/2 F/m     A: x += dt/2 v     O: v = c1 v + sqrt((1 - c1^2) k_B T / m) xi,  c1 = exp(-gamma dt)
    A: x += dt/2 v       (new forces)       B: v += dt/2 F/m
Without O it is velocity Verlet (NVE). Positions are never wrapped: they stay continuous in time, as
in every thermocg frame file, so the trajectory gives the unwrapped MSD directly.

Centre-of-mass momentum: in NVE the initial velocities have zero total momentum and pair forces keep
it zero (to rounding), so the kinetic temperature uses 3N - 3 degrees of freedom. Langevin friction
and noise act on every bead independently, so the total momentum is not conserved: it is itself
thermalised (per component <P^2> = N m k_B T, relaxing at rate gamma). It is left alone, not
removed (removing it would bias the thermostat), the kinetic temperature uses 3N degrees of freedom,
and the thermo log reports |P| so that a drift would show.

Determinism: one seeded ``torch.Generator`` draws the initial velocities and the noise; on CPU the
same seed gives the same numbers. Checkpoints (:mod:`thermocg.checkpoints`) hold positions,
velocities, the generator state, the step and the frames and thermo rows so far. The neighbour list
is rebuilt (and forces recomputed) at every checkpoint, so a run resumed from a checkpoint sees the
same pair list, hence the same floating-point sums, as the uninterrupted run: on CPU the resumed
trajectory is bit-identical.
"""

import logging
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from thermocg import checkpoints
from thermocg.io import atomic_write, cg_topology, save_dcd, write_table
from thermocg.neighbors import NeighborList, pair_displacements
from thermocg.nn import check_reference_temperature
from thermocg.units import KB, WATER_MASS

log = logging.getLogger(__name__)

# nm. Measured at 8 fs, 512 beads (water density, r_c 0.6 nm): rebuilds every ~5 steps at 0.1 nm
# cost more than the extra pairs of a larger skin; 0.15 nm was fastest for the default network
# and within 5% of the best (0.2 nm) for a pair potential.
DEFAULT_SKIN = 0.15

#: Margin on Simulation.step_bound: beads may speed up between two neighbour-list checks.
STEP_BOUND_SAFETY = 1.5

THERMO_COLUMNS = [
    "step",
    "time_ps",
    "T_kin_K",
    "potential_kJ_mol",
    "kinetic_kJ_mol",
    "total_kJ_mol",
    "momentum_amu_nm_ps",
    "ns_per_day",
]


def default_device():
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def dbeta_for(temperature, reference_temperature):
    """beta(T) - beta(T0) in mol/kJ."""
    return 1.0 / (KB * temperature) - 1.0 / (KB * reference_temperature)


class ForceField:
    """A potential, its neighbour list and the dbeta of one temperature: positions -> (W, F).

    ``create_graph=True`` keeps the force graph so that something computed from the forces (the
    next positions, in DiffSim) can be differentiated with respect to the potential's parameters.

    ``fixed_pair_layout``: a potential that has ``pair_layout(i, j, n_beads)`` (thermocg.nn.CGModel)
    gets the padded per-bead layout of the pair list computed once per neighbour-list build and
    masks the pairs beyond its cutoff, instead of filtering them on every call: no host
    synchronisation per call and fixed tensor shapes between builds (what a GPU wants). The sums
    then run over padded blocks of another width, so the numbers differ from the filtered path at
    round-off. None (default): on CUDA only, so that CPU runs keep their numbers.
    """

    def __init__(self, potential, box, dbeta=0.0, skin=DEFAULT_SKIN, fixed_pair_layout=None):
        self.potential = potential
        self.box = box
        self.dbeta = torch.as_tensor(float(dbeta), dtype=box.dtype, device=box.device)
        self.neighbor_list = NeighborList(float(potential.cutoff), skin=skin)
        if fixed_pair_layout is None:
            fixed_pair_layout = box.device.type == "cuda"
        self.fixed_pair_layout = bool(fixed_pair_layout) and hasattr(potential, "pair_layout")
        self._layout, self._layout_build = None, None

    def pairs(self, positions, step_bound=None):
        """The pair list at these positions (see NeighborList for ``step_bound``)."""
        return self.neighbor_list(positions, self.box, step_bound)

    def rebuild(self, positions):
        """Force a neighbour-list rebuild at these positions (used at checkpoints)."""
        self.neighbor_list.invalidate()
        return self.pairs(positions)

    def load_neighbor_list(self, state):
        """Continue with a neighbour list saved by its ``state_dict()`` (the pair layout is redone)."""
        self.neighbor_list.load_state_dict(state, self.box.device)
        self._layout, self._layout_build = None, None

    def _pair_layout(self, i, j, n_beads):
        """The potential's layout of the current list, computed once per neighbour-list build."""
        if self._layout_build != self.neighbor_list.n_builds:
            # The widths counted on the list's host copy: the layout then reads nothing back from the device.
            self._layout = self.potential.pair_layout(i, j, n_beads, *self.neighbor_list.widths())
            self._layout_build = self.neighbor_list.n_builds
        return self._layout

    def __call__(self, positions, create_graph=False, step_bound=None):
        i, j, shift = self.pairs(positions, step_bound)
        layout = {}
        if self.fixed_pair_layout:
            layout = {"layout": self._pair_layout(i, j, positions.shape[0])}
        with torch.enable_grad():
            if not positions.requires_grad:
                positions = positions.detach().requires_grad_(True)
            energy = self.potential(positions, i, j, shift, self.dbeta, **layout)
            (gradient,) = torch.autograd.grad(energy, positions, create_graph=create_graph)
        if not create_graph:
            energy = energy.detach()
        return energy, -gradient


def baoab_step(positions, velocities, forces, force_field, dt, inv_mass, c1=None, noise_std=None,
               generator=None, create_graph=False, step_bound=None):
    """One BAOAB step (velocity Verlet when ``c1`` is None). Out of place, so it is differentiable.

    inv_mass (N, 1) in 1/amu; noise_std (N, 1) = sqrt((1 - c1^2) k_B T / m) in nm/ps; step_bound
    as for thermocg.neighbors.NeighborList (None: the list is checked at every force call).
    Returns positions, velocities, forces and potential energy at the end of the step.
    """
    velocities = velocities + (0.5 * dt) * forces * inv_mass
    positions = positions + (0.5 * dt) * velocities
    if c1 is not None:
        noise = torch.randn(velocities.shape, generator=generator, dtype=velocities.dtype,
                            device=velocities.device)
        velocities = c1 * velocities + noise_std * noise
    positions = positions + (0.5 * dt) * velocities
    energy, forces = force_field(positions, create_graph=create_graph, step_bound=step_bound)
    velocities = velocities + (0.5 * dt) * forces * inv_mass
    return positions, velocities, forces, energy


def maxwell_boltzmann(masses, temperature, generator, remove_com=False):
    """Velocities (N, 3) in nm/ps drawn at ``temperature`` K for masses (N, 1) in amu."""
    noise = torch.randn((masses.shape[0], 3), generator=generator, dtype=masses.dtype, device=masses.device)
    velocities = noise * torch.sqrt(KB * temperature / masses)
    if remove_com:
        velocities = velocities - (masses * velocities).sum(0) / masses.sum()
    return velocities


class BlowUpError(RuntimeError):
    """The simulation became unphysical; ``step``, ``reason``, ``last_good`` (a path or None) and
    ``timestep_ps`` (the run's step, None where unknown)."""

    def __init__(self, step, reason, last_good=None, last_good_step=None, timestep_ps=None):
        self.step, self.reason, self.last_good, self.last_good_step = step, reason, last_good, last_good_step
        self.timestep_ps = timestep_ps
        where = f"; last good frame (step {last_good_step}) saved to {last_good}" if last_good else ""
        super().__init__(f"simulation blew up at step {step}: {reason}{where}")


@dataclass
class BlowUpGuard:
    """Checks every ``interval`` steps (and at every step that writes output).

    Fails on non-finite energy/positions/velocities, on two beads closer than ``min_distance`` nm,
    and on a kinetic temperature above ``max_temperature_factor`` x the target (a runaway).
    """

    min_distance: float = 0.1
    max_temperature_factor: float = 3.0
    interval: int = 10

    def check(self, sim):
        """The reason the state is bad, or None."""
        finite = torch.isfinite(sim.energy) & torch.isfinite(sim.positions).all() & torch.isfinite(sim.velocities).all()
        if not bool(finite):
            return "non-finite energy, positions or velocities"
        i, j, shift = sim.force_field.pairs(sim.positions)
        if len(i):
            closest = float(pair_displacements(sim.positions, i, j, shift).norm(dim=-1).min())
            if closest < self.min_distance:
                return f"beads {closest:.4f} nm apart (< {self.min_distance} nm)"
        t_kin = sim.kinetic_temperature()
        if t_kin > self.max_temperature_factor * sim.temperature:
            return f"kinetic temperature {t_kin:.1f} K > {self.max_temperature_factor} x {sim.temperature} K"
        return None


class Simulation:
    """State and integrator of one CG simulation at one temperature.

    positions (N, 3) nm and box (3,) nm (array-like); masses in amu (scalar or (N,));
    temperature and reference_temperature in K (the potential sees dbeta = beta(T) - beta(T0);
    reference_temperature=None means T0 = T, dbeta = 0); dt in ps; friction in 1/ps;
    integrator "langevin" (BAOAB) or "nve" (velocity Verlet); skin in nm; fixed_pair_layout: see
    :class:`ForceField`.
    Velocities default to Maxwell-Boltzmann at T (zero total momentum in NVE).
    """

    def __init__(self, potential, positions, box, temperature, *, masses=WATER_MASS, dt=0.002,
                 friction=1.0, integrator="langevin", reference_temperature=None, skin=DEFAULT_SKIN, seed=0,
                 dtype=torch.float32, device=None, velocities=None, fixed_pair_layout=None):
        if integrator not in ("langevin", "nve"):
            raise ValueError(f"integrator must be 'langevin' or 'nve', got {integrator!r}")
        if dt <= 0 or temperature <= 0 or (integrator == "langevin" and friction <= 0):
            raise ValueError("dt, temperature and (for Langevin) friction must be > 0")
        self.device = torch.device(device) if device is not None else default_device()
        self.dtype = dtype
        self.positions = self._tensor(positions).reshape(-1, 3).clone()
        n = self.positions.shape[0]
        self.box = self._tensor(box).reshape(3)
        self.masses = (self._tensor(masses) * torch.ones(n, dtype=dtype, device=self.device)).reshape(n, 1)
        self.inv_mass = 1.0 / self.masses
        self.temperature = float(temperature)
        if reference_temperature is not None:
            check_reference_temperature(potential, reference_temperature)
        self.reference_temperature = float(temperature if reference_temperature is None else reference_temperature)
        self.dt = float(dt)
        self.friction = float(friction)
        self.integrator = integrator
        self.seed = int(seed)
        self.potential = potential.to(device=self.device, dtype=dtype)
        self.force_field = ForceField(self.potential, self.box,
                                      dbeta_for(self.temperature, self.reference_temperature), skin=skin,
                                      fixed_pair_layout=fixed_pair_layout)
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(self.seed)
        if integrator == "langevin":
            self.c1 = math.exp(-self.friction * self.dt)
            self.noise_std = torch.sqrt((1.0 - self.c1**2) * KB * self.temperature * self.inv_mass)
        else:
            self.c1 = self.noise_std = None
        if velocities is None:
            velocities = maxwell_boltzmann(self.masses, self.temperature, self.generator,
                                           remove_com=integrator == "nve")
        self.velocities = self._tensor(velocities).reshape(n, 3).clone()
        self.step = 0
        self.refresh()

    def _tensor(self, value):
        if torch.is_tensor(value):
            return value.detach().to(device=self.device, dtype=self.dtype)
        return torch.as_tensor(np.asarray(value, dtype=np.float64), device=self.device).to(self.dtype)

    @property
    def n_beads(self):
        return self.positions.shape[0]

    @property
    def degrees_of_freedom(self):
        return 3 * self.n_beads - (3 if self.integrator == "nve" else 0)

    def refresh(self):
        """Rebuild the neighbour list and recompute forces at the current positions."""
        self.force_field.rebuild(self.positions)
        self.energy, self.forces = self.force_field(self.positions)

    def step_bound(self):
        """How far (nm) a bead can move in the next step, as a 0-d tensor on the device.

        A step moves a bead by dt (v + dt/2 a) plus the noise's share: bounded by dt (|v|_max +
        dt |a|_max + 4 sqrt(3) sigma_noise,max / 2), |a| = |F|/m, taken at the start of the step. Beads
        may speed up between checks, hence STEP_BOUND_SAFETY; the neighbour list counts the calls
        where this did not hold (``n_late``) and grows its own factor.
        """
        speed = self.velocities.norm(dim=1).max()
        acceleration = (self.forces * self.inv_mass).norm(dim=1).max()
        noise = 0.0 if self.noise_std is None else 2.0 * math.sqrt(3.0) * self.noise_std.max()
        return STEP_BOUND_SAFETY * self.dt * (speed + self.dt * acceleration + noise)

    @torch.no_grad()
    def run(self, n_steps):
        """``n_steps`` steps; the neighbour list reads the displacement back only when
        :meth:`step_bound` says it could have expired (not on every step)."""
        for _ in range(int(n_steps)):
            self.positions, self.velocities, self.forces, self.energy = baoab_step(
                self.positions, self.velocities, self.forces, self.force_field, self.dt, self.inv_mass,
                self.c1, self.noise_std, self.generator, step_bound=self.step_bound)
            self.step += 1

    def kinetic_energy(self):
        """kJ/mol (1 amu nm^2/ps^2 = 1 kJ/mol)."""
        return float(0.5 * (self.masses * self.velocities**2).sum())

    def kinetic_temperature(self):
        return 2.0 * self.kinetic_energy() / (self.degrees_of_freedom * KB)

    def potential_energy(self):
        return float(self.energy)

    def total_momentum(self):
        """(3,) numpy array in amu nm/ps."""
        return (self.masses * self.velocities).sum(0).double().cpu().numpy()

    # --- checkpoints --------------------------------------------------------------------------
    def state_dict(self, exact=False):
        """Everything needed to continue bit-identically (numpy arrays, on CPU), if the loaded run
        rebuilds its neighbour list and forces, as :func:`run_md` does at every checkpoint.
        ``exact=True`` adds the forces, the energy and the neighbour list as they are (the list as
        a dict of host tensors), for a run that continues without that rebuild (DiffSim's windows)."""
        state = {
            "positions": self.positions.cpu().numpy(),
            "velocities": self.velocities.cpu().numpy(),
            "step": np.int64(self.step),
            "rng_state": self.generator.get_state().cpu().numpy(),
            "device": self.device.type,
            # how cautiously the list plans its checks (grown by late calls): planning with less, a
            # resumed run can make a late call that the run never stopped does not, and rebuild elsewhere
            "neighbor_bound_factor": np.float64(self.force_field.neighbor_list.bound_factor),
        }
        if exact:
            state.update(forces=self.forces.detach().cpu().numpy(), energy=self.energy.detach().cpu().numpy(),
                         neighbor_list=self.force_field.neighbor_list.state_dict())
        return state

    def load_state_dict(self, state):
        self.positions = torch.as_tensor(state["positions"], device=self.device).to(self.dtype)
        self.velocities = torch.as_tensor(state["velocities"], device=self.device).to(self.dtype)
        self.step = int(state["step"])
        saved_device = str(state["device"])
        if saved_device == self.device.type:
            self.generator.set_state(torch.as_tensor(state["rng_state"], dtype=torch.uint8))
        else:
            # Random-number states are device-specific, and a retried job may land on another
            # kind of node: continue with a stream seeded by (seed, step). Statistically the
            # same dynamics, but not bit-identical to an uninterrupted run.
            self.generator.manual_seed(self.seed * 1_000_003 + self.step)
            log.warning("checkpoint written on %s, resuming on %s: new random stream from step %d "
                        "(not bit-identical to an uninterrupted run)", saved_device, self.device.type, self.step)
        if "neighbor_list" not in state:
            if "neighbor_bound_factor" in state:  # absent from checkpoints written before it was kept
                self.force_field.neighbor_list.bound_factor = float(state["neighbor_bound_factor"])
            self.refresh()
            return
        self.forces = torch.as_tensor(state["forces"], device=self.device)
        self.energy = torch.as_tensor(state["energy"], device=self.device)
        self.force_field.load_neighbor_list(state["neighbor_list"])


# --- trajectory output ----------------------------------------------------------------------------
def write_pdb(path, positions, box, topology=None):
    """One frame (positions (N, 3) nm, box (3,) nm) as a PDB with the CG topology, atomically."""
    import mdtraj

    positions = np.asarray(positions, dtype=np.float64).reshape(1, -1, 3)
    topology = topology or cg_topology(positions.shape[1])
    traj = mdtraj.Trajectory(positions, topology, unitcell_lengths=np.asarray(box, dtype=float).reshape(1, 3),
                             unitcell_angles=np.full((1, 3), 90.0))
    atomic_write(path, lambda tmp: traj.save_pdb(tmp))


def write_outputs(trajectory, topology, thermo, start, box, frames, rows):
    """A run's outputs: ``trajectory`` (DCD of ``frames``, each (N, 3) nm; none is allowed),
    ``topology`` (PDB of the ``start`` frame) and ``thermo`` (TSV of ``rows``, THERMO_COLUMNS)."""
    import mdtraj

    start = np.asarray(start, dtype=np.float64).reshape(-1, 3)
    positions = np.asarray(frames, dtype=np.float32).reshape(-1, len(start), 3)
    box = np.asarray(box, dtype=np.float64).reshape(1, 3)
    save_dcd(trajectory, mdtraj.Trajectory(positions, cg_topology(len(start)), unitcell_lengths=box.repeat(len(positions), 0),
                                           unitcell_angles=np.full((len(positions), 3), 90.0)))
    write_pdb(topology, start, box)
    table = pd.DataFrame(np.asarray(rows, dtype=np.float64).reshape(-1, len(THERMO_COLUMNS)), columns=THERMO_COLUMNS)
    write_table(thermo, table.astype({"step": np.int64}), comment="thermo log of thermocg.md; units in the column names")


def last_good_path(trajectory):
    """Where :func:`run_md` saves the last good frame of a run that blew up (+ ``.npz``)."""
    trajectory = Path(trajectory)
    return trajectory.with_name(trajectory.stem + "_last_good.pdb")


def _model_from_file(path, reference_temperature, inputs):
    """(model, T0 K, checkpoint inputs) of a model file; T0 from the file unless given."""
    from thermocg import nn

    model, metadata = nn.load_model(path)
    if reference_temperature is None:
        if metadata.get("T0_K") is None:
            raise ValueError(f"{path} stores no reference temperature (T0_K): pass reference_temperature (K)")
        reference_temperature = float(metadata["T0_K"])
    return model, reference_temperature, {"model": path, **(inputs or {})}


def run_md(potential, positions, box, temperature, n_steps, *, trajectory, topology, thermo, checkpoint,
           dt=0.002, friction=1.0, masses=WATER_MASS, reference_temperature=None, integrator="langevin",
           frame_interval=500, report_interval=500, checkpoint_interval=50_000, guard=None, skin=DEFAULT_SKIN,
           seed=0, dtype=torch.float32, device=None, resume=True, velocities=None, inputs=None,
           equilibration_steps=0):
    """Run CG MD from ``positions`` (N, 3) nm (e.g. the mapped FG frame) to step ``n_steps``.

    ``potential``: a potential object, or the path of a model file (thermocg.nn.save_model), whose
    T0 is then the default ``reference_temperature`` (K) and whose bytes bind the checkpoint. With
    a potential object and no reference temperature the run uses dbeta = 0 (T0 = T) and says so in
    a warning: pass the model file's T0 (``nn.load_model(path)[1]["T0_K"]``) for a transferable model.

    Writes, when the run ends: ``trajectory`` (DCD, unwrapped positions every ``frame_interval``
    steps from step ``equilibration_steps`` on, that step included: the equilibration is kept out of
    the trajectory), ``topology`` (PDB of the start frame, one bead residue per molecule:
    ``mdtraj.load(trajectory, top=topology)``) and ``thermo`` (TSV, one row every
    ``report_interval`` steps, equilibration included, ``time_ps`` from the start of the run).
    DCD stores no times (mdtraj reads the frame index as the time): frame k is at
    ``first_frame_time_ps + k * frame_interval_ps`` of the returned summary. ``checkpoint`` (every
    ``checkpoint_interval`` steps) holds the state and everything recorded so far, so a killed run
    resumes even if those outputs were deleted (Snakemake does before a rerun), reproducing an uninterrupted run bit for bit on CPU; it is
    removed once the outputs are written. It is resumed (with ``resume=True``) only if it was made
    with the same settings, start frame and ``inputs`` (name -> file, e.g. the model file: see
    :mod:`thermocg.checkpoints`).

    Raises :class:`BlowUpError` (naming the step) after writing the outputs up to the last good
    frame and that frame to ``<trajectory stem>_last_good.pdb`` (+ ``.npz`` with velocities). Only
    the guard's conditions are blow-ups: an exception inside a step propagates unless the guard
    then finds the state bad. Returns a summary dict (``mean_T_kin_K``: the mean kinetic
    temperature of the thermo rows from step ``equilibration_steps`` on).
    Other arguments: see :class:`Simulation` and :class:`BlowUpGuard`.
    """
    guard = guard or BlowUpGuard()
    if isinstance(potential, (str, Path)):
        potential, reference_temperature, inputs = _model_from_file(potential, reference_temperature, inputs)
    if equilibration_steps < 0 or equilibration_steps > n_steps:
        raise ValueError(f"equilibration_steps must be within 0..n_steps ({n_steps}), got {equilibration_steps}")
    sim = Simulation(potential, positions, box, temperature, masses=masses, dt=dt, friction=friction,
                     integrator=integrator, reference_temperature=reference_temperature, skin=skin,
                     seed=seed, dtype=dtype, device=device, velocities=velocities)
    if reference_temperature is None:
        log.warning("no reference temperature given: dbeta = 0, the potential runs as if T0 = T = %g K "
                    "(pass reference_temperature, e.g. the model file's T0_K)", temperature)
    fingerprint = checkpoints.fingerprint({
        "temperature": sim.temperature, "reference_temperature": sim.reference_temperature, "n_steps": int(n_steps),
        "dt": sim.dt, "friction": sim.friction, "integrator": integrator, "frame_interval": frame_interval,
        "report_interval": report_interval, "checkpoint_interval": checkpoint_interval, "skin": skin, "seed": sim.seed,
        "dtype": str(dtype), "guard": asdict(guard), "start": checkpoints.array_digest(positions, box, masses, velocities),
        # only when set, so that checkpoints of runs without it keep their fingerprint
        **({"equilibration_steps": int(equilibration_steps)} if equilibration_steps else {}),
    }, inputs)
    start, box_np = sim.positions.cpu().numpy(), sim.box.cpu().numpy()
    frames, rows = [], []  # positions (float32) every frame_interval, thermo rows every report_interval
    saved = checkpoints.load(checkpoint, fingerprint) if resume else None
    resumed_from = None
    if saved is not None:
        with np.load(saved, allow_pickle=False) as state:
            sim.load_state_dict(state)
            frames, rows = list(state["frames"]), [list(row) for row in state["thermo"]]
        resumed_from = sim.step
        log.info("resumed from %s at step %d (%d frames)", checkpoint, sim.step, len(frames))
    last_good = (sim.step, sim.positions.clone(), sim.velocities.clone())
    clock, clock_step, ns_per_day = time.perf_counter(), sim.step, float("nan")
    wall_start, start_step = clock, sim.step

    def save_checkpoint():
        arrays = dict(sim.state_dict(), frames=np.asarray(frames, dtype=np.float32).reshape(-1, sim.n_beads, 3),
                      thermo=np.asarray(rows, dtype=np.float64).reshape(-1, len(THERMO_COLUMNS)))
        checkpoints.save(checkpoint, fingerprint, lambda handle: np.savez(handle, **arrays))

    def finish():
        write_outputs(trajectory, topology, thermo, start, box_np, frames, rows)
        Path(checkpoint).unlink(missing_ok=True)  # outputs written: a rerun must simulate again

    def save_last_good():
        step, x, v = last_good
        path = last_good_path(trajectory)
        write_pdb(path, x.cpu().numpy(), box_np)
        arrays = {"positions": x.cpu().numpy(), "velocities": v.cpu().numpy(), "box": box_np, "step": step}
        atomic_write(path.with_suffix(".npz"), lambda tmp: np.savez(tmp, **arrays))
        return path, step

    def output(step):
        nonlocal clock, clock_step, ns_per_day
        if step >= equilibration_steps and (step - equilibration_steps) % frame_interval == 0:
            frames.append(sim.positions.cpu().numpy().astype(np.float32))
        if step % report_interval == 0:
            now = time.perf_counter()
            if step > clock_step:
                ns_per_day = (step - clock_step) * sim.dt * 1e-3 / ((now - clock) / 86400.0)
            clock, clock_step = now, step
            kinetic, t_kin, potential_energy = sim.kinetic_energy(), sim.kinetic_temperature(), sim.potential_energy()
            momentum = float(np.linalg.norm(sim.total_momentum()))
            rows.append([step, step * sim.dt, t_kin, potential_energy, kinetic, potential_energy + kinetic,
                         momentum, ns_per_day])
            log.info("step %d/%d (%.1f%%) t=%.3f ps T_kin=%.1f K U=%.2f kJ/mol %.2f ns/day", step, n_steps,
                     100.0 * step / max(n_steps, 1), step * sim.dt, t_kin, potential_energy, ns_per_day)

    def blow_up(step, reason):
        finish()
        path, good_step = save_last_good()
        return BlowUpError(step, reason, path, good_step, sim.dt)

    if resumed_from is None:
        reason = guard.check(sim)
        if reason is not None:
            finish()
            raise BlowUpError(0, f"the starting frame is already bad: {reason}", timestep_ps=sim.dt)
        output(0)
    while sim.step < n_steps:
        try:
            sim.run(1)
        except Exception as error:
            # a blow-up only if the guard says so (e.g. the neighbour list failing on exploded
            # positions); anything else (a bug, out of memory) fails the run with its own message
            reason = guard.check(sim)
            if reason is None:
                raise
            raise blow_up(sim.step + 1, f"{reason}; the next step failed: {error}") from error
        step = sim.step
        io_step = step % frame_interval == 0 or step % report_interval == 0
        is_checkpoint = step % checkpoint_interval == 0 and step < n_steps
        if step % guard.interval == 0 or io_step or is_checkpoint or step == n_steps:
            reason = guard.check(sim)
            if reason is not None:
                raise blow_up(step, reason)
            last_good = (step, sim.positions.clone(), sim.velocities.clone())
        output(step)
        if is_checkpoint:
            save_checkpoint()
            sim.refresh()  # what a resumed run does: same pair list, same sums
    finish()

    wall = time.perf_counter() - wall_start
    steps_done = sim.step - start_step
    production_t_kin = [row[2] for row in rows if row[0] >= equilibration_steps]
    summary = {
        "n_steps": sim.step,
        "n_frames": len(frames),
        "resumed_from": resumed_from,
        "wall_s": wall,
        "ns_per_day": steps_done * sim.dt * 1e-3 / (wall / 86400.0) if steps_done and wall > 0 else float("nan"),
        # over the production only: the equilibration starts from drawn velocities, far from T
        "mean_T_kin_K": float(np.mean(production_t_kin)) if production_t_kin else float("nan"),
        "neighbor_list_builds": sim.force_field.neighbor_list.n_builds,
        "reference_temperature_K": sim.reference_temperature,
        "first_frame_time_ps": int(equilibration_steps) * sim.dt,
        "frame_interval_ps": frame_interval * sim.dt,
    }
    log.info("finished: %s", summary)
    return summary
