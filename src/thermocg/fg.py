"""Atomistic (fine-grained) rigid water sampled with OpenMM.

A cubic box of N rigid waters at an exact density, PME electrostatics, a damped relaxation,
equilibration with a strong Langevin friction, then NVT production with a weak friction
(LangevinMiddleIntegrator, <= 0.1/ps). Why Langevin rather than Nose-Hoover: it is robust with
rigid water and deterministic under a seed; at 0.1/ps its friction is ~0.2% of water's own
(k_B T / (m D) is about 60/ps at 300 K), so diffusion measured from production is undistorted.

Every ``frame_interval`` the production records positions (all particles, never wrapped), forces
on every particle, the potential energy and the box. The run checkpoints every
``checkpoint_interval`` into one state file (OpenMM checkpoint + frames so far, see
:mod:`thermocg.checkpoints`); a killed job resumes from it. A context restored from a checkpoint
does not continue with exactly the arithmetic of the context that wrote it (measured: 1e-6 nm
apart after 50 steps, which chaos amplifies), so every run, interrupted or not, continues each
interval from its checkpoint in a reinitialised context: a resumed run gives the uninterrupted
run's numbers bit for bit (CPU platform, one thread). Outputs are written only when the run is
complete; the checkpoint is then removed, so a rerun samples again.
"""

import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import openmm
from openmm import app, unit

from thermocg import checkpoints, io, units
from thermocg.config import box_length

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WaterModel:
    xml: str  # OpenMM's bundled force-field file
    oh: float  # O-H bond length, nm (starting geometry; constraints make it exact)
    hoh: float  # H-O-H angle, degrees


WATER_MODELS = {
    "spce": WaterModel("spce.xml", 0.1, 109.47),
    "tip3p": WaterModel("tip3p.xml", 0.09572, 104.52),
    "tip4pew": WaterModel("tip4pew.xml", 0.09572, 104.52),
    "opc": WaterModel("opc.xml", 0.08724, 103.6),
}


@dataclass(frozen=True)
class SamplingSettings:
    """Everything that determines one sampling run (units: nm, ps, K, g/cm^3, 1/ps)."""

    model: str
    n_molecules: int
    density: float
    cutoff: float
    ewald_tolerance: float
    temperature: float
    seed: int
    timestep: float
    equilibration: float
    equilibration_friction: float
    production: float
    friction: float
    frame_interval: float
    checkpoint_interval: float
    platform: str = "auto"
    threads: int = 1
    replica: int = 0  # which independent run at this temperature: 0 the main one (enters the seed)

    @classmethod
    def from_config(cls, config, temperature, threads=None):
        """Settings of one run; ``config["fg"]`` as it applies to this run (a rule's param may add
        ``replica``, which run at this temperature it is)."""
        water, fg = config["water"], config["fg"]
        return cls(
            model=water["model"],
            n_molecules=water["n_molecules"],
            density=water["density"],
            cutoff=water["cutoff"],
            ewald_tolerance=water["ewald_tolerance"],
            temperature=float(temperature),
            seed=config["seed"],
            timestep=fg["timestep"],
            equilibration=fg["equilibration"],
            equilibration_friction=fg["equilibration_friction"],
            production=fg["production"],
            friction=fg["friction"],
            frame_interval=fg["frame_interval"],
            checkpoint_interval=fg["checkpoint_interval"],
            platform=fg["platform"],
            threads=threads or fg["threads"],
            replica=int(fg.get("replica", 0)),
        )

    @property
    def box_length(self):
        return box_length({"water": {"n_molecules": self.n_molecules, "density": self.density}})

    @property
    def steps_per_frame(self):
        return max(1, round(self.frame_interval / self.timestep))

    @property
    def n_frames(self):
        return max(1, round(self.production / (self.steps_per_frame * self.timestep)))

    @property
    def equilibration_steps(self):
        return round(self.equilibration / self.timestep)

    def run_seed(self):
        """Seed of this run: derived from the config seed, T and the replica, so runs differ (the
        main run, replica 0, keeps the seed it had before replicas existed)."""
        entropy = [self.seed, round(self.temperature * 1000)] + ([self.replica] if self.replica else [])
        sequence = np.random.SeedSequence(entropy)
        return int(sequence.generate_state(1)[0] % (2**31 - 1)) + 1

    def fingerprint(self, platform):
        """What a checkpoint must match to be resumed. ``platform``: the one in use (OpenMM
        checkpoints are platform-specific); the thread count may change."""
        settings = {k: v for k, v in asdict(self).items() if k not in ("platform", "threads")}
        return checkpoints.fingerprint(dict(settings, platform=platform))


def _random_rotations(rng, n):
    """n uniformly distributed rotation matrices (QR of Gaussian matrices, sign-fixed)."""
    q, r = np.linalg.qr(rng.normal(size=(n, 3, 3)))
    q *= np.sign(np.diagonal(r, axis1=1, axis2=2))[:, None, :]
    q[np.linalg.det(q) < 0, :, 0] *= -1
    return q


def build_water_box(model, n_molecules, density, seed):
    """Topology and positions (nm, numpy) of ``n_molecules`` waters in a cubic box at ``density``.

    Molecules sit on a simple cubic lattice (randomly chosen sites, random orientations), which
    minimisation and equilibration then melt. Virtual sites (TIP4P-like) are added by OpenMM.
    Returns (topology, positions, forcefield).
    """
    spec = WATER_MODELS[model]
    rng = np.random.default_rng(seed)
    length = units.cubic_box_length(n_molecules, density)
    per_side = int(np.ceil(n_molecules ** (1 / 3)))
    grid = (np.stack(np.meshgrid(*[np.arange(per_side)] * 3, indexing="ij"), -1).reshape(-1, 3) + 0.5)
    sites = grid[np.sort(rng.permutation(len(grid))[:n_molecules])] * (length / per_side)
    half = np.radians(spec.hoh) / 2
    template = np.array([[0, 0, 0], [spec.oh * np.sin(half), spec.oh * np.cos(half), 0],
                         [-spec.oh * np.sin(half), spec.oh * np.cos(half), 0]])
    molecules = sites[:, None, :] + template[None] @ _random_rotations(rng, n_molecules).transpose(0, 2, 1)

    topology = app.Topology()
    chain = topology.addChain()
    for _ in range(n_molecules):
        residue = topology.addResidue("HOH", chain)
        oxygen = topology.addAtom("O", app.element.oxygen, residue)
        for name in ("H1", "H2"):
            topology.addBond(oxygen, topology.addAtom(name, app.element.hydrogen, residue))
    topology.setPeriodicBoxVectors(np.eye(3) * length * unit.nanometer)
    forcefield = app.ForceField(spec.xml)
    modeller = app.Modeller(topology, molecules.reshape(-1, 3) * unit.nanometer)
    modeller.addExtraParticles(forcefield)
    positions = np.array(modeller.positions.value_in_unit(unit.nanometer))
    return modeller.topology, positions, forcefield


def create_system(topology, forcefield, cutoff, ewald_tolerance):
    """Rigid-water OpenMM System with PME and the long-range dispersion correction."""
    return forcefield.createSystem(
        topology,
        nonbondedMethod=app.PME,
        nonbondedCutoff=cutoff * unit.nanometer,
        ewaldErrorTolerance=ewald_tolerance,
        rigidWater=True,
    )


def molecule_index(topology):
    """Index of the molecule (residue) of every particle."""
    return np.array([atom.residue.index for atom in topology.atoms()], dtype=np.int64)


def platform_candidates(name, threads):
    """(platform name, properties) to try in order for a requested platform."""
    cpu = ("CPU", {"Threads": str(threads), "DeterministicForces": "true"})
    cuda = ("CUDA", {"Precision": "mixed", "DeterministicForces": "true"})
    return {"auto": [cuda, cpu], "CUDA": [cuda], "CPU": [cpu], "Reference": [("Reference", {})]}[name]


def create_simulation(topology, system, integrator, platform, threads):
    """A Simulation on the first platform that works; logs which one and why others failed."""
    failures = []
    for name, properties in platform_candidates(platform, threads):
        try:
            simulation = app.Simulation(
                topology, system, integrator, openmm.Platform.getPlatformByName(name), properties
            )
        except Exception as error:  # OpenMMException has no narrower type per cause
            failures.append(f"{name}: {str(error).splitlines()[0]}")
            continue
        detail = f" with {threads} threads" if name == "CPU" else ""
        if name == "CPU" and threads > 1:
            # measured with OpenMM 8.6.1: two CPU threads diverge between identical runs
            log.warning("OpenMM's CPU platform is bitwise reproducible with 1 thread only; using %d", threads)
        reason = f" (not available: {'; '.join(failures)})" if failures else ""
        log.info("OpenMM platform: %s%s%s", name, detail, reason)
        return simulation
    raise RuntimeError(f"no usable OpenMM platform for '{platform}': {'; '.join(failures)}")


class _Recorder:
    """Production frames collected so far (numpy arrays appended per frame)."""

    fields = ("positions", "forces", "potential_energy", "box", "time")

    def __init__(self, saved=None):
        self.data = {f: list(saved[f]) if saved is not None else [] for f in self.fields}

    def __len__(self):
        return len(self.data["time"])

    def record(self, context, time_ps):
        state = context.getState(getPositions=True, getForces=True, getEnergy=True)
        self.data["positions"].append(state.getPositions(asNumpy=True).value_in_unit(unit.nanometer))
        self.data["forces"].append(
            state.getForces(asNumpy=True).value_in_unit(unit.kilojoule_per_mole / unit.nanometer)
        )
        self.data["potential_energy"].append(state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole))
        self.data["box"].append(np.diag(state.getPeriodicBoxVectors(asNumpy=True).value_in_unit(unit.nanometer)))
        self.data["time"].append(time_ps)

    def arrays(self):
        shapes = {"positions": (0, 0, 3), "forces": (0, 0, 3), "box": (0, 3)}
        return {
            f: np.asarray(v, dtype=np.float64) if v else np.zeros(shapes.get(f, (0,)))
            for f, v in self.data.items()
        }


def _save_state(path, fingerprint, checkpoint, phase_steps_done, recorder):
    arrays = dict(checkpoint=np.frombuffer(checkpoint, dtype=np.uint8),
                  equilibration_steps_done=phase_steps_done, **recorder.arrays())
    checkpoints.save(path, fingerprint, lambda handle: np.savez(handle, **arrays))


def _load_state(path, fingerprint):
    """The saved state if there is one for this fingerprint, else None (see thermocg.checkpoints)."""
    payload = checkpoints.load(path, fingerprint)
    if payload is None:
        return None
    with np.load(payload, allow_pickle=False) as data:
        return {name: data[name] for name in data.files}


def _continue_from(context, checkpoint):
    """Continue from checkpoint bytes in a reinitialised context: what a resumed run does, so that
    interrupted and uninterrupted runs follow the same arithmetic (loadCheckpoint into the running
    context without reinitialising it is not enough: measured, the frames then differ)."""
    context.reinitialize()
    context.loadCheckpoint(checkpoint)


def _relax(integrator, settings, steps=400):
    """Melt the lattice start with short, strongly damped steps.

    Used instead of OpenMM's minimizeEnergy, whose result differed between identical runs on the
    CPU platform (measured with OpenMM 8.6.1), which would break "same seed, same numbers".
    """
    integrator.setStepSize(settings.timestep / 4 * unit.picosecond)
    integrator.setFriction(10.0 / unit.picosecond)
    integrator.step(steps)
    integrator.setStepSize(settings.timestep * unit.picosecond)
    integrator.setFriction(settings.equilibration_friction / unit.picosecond)


def _ns_per_day(simulated_ps, seconds):
    return simulated_ps / max(seconds, 1e-9) * 86400 / 1000


def sample(settings, frames_path, trajectory_path, topology_path, system_path, state_path):
    """Run (or resume) one temperature's sampling and write its outputs.

    Outputs: ``frames_path`` (see :mod:`thermocg.io`), an mdtraj-readable DCD trajectory with
    its PDB topology, and the serialized OpenMM System (used for per-molecule energies).
    ``state_path`` holds the checkpoint; it is removed once the outputs are written.
    Returns a dict of run statistics (ns/day of production, frames, platform).
    """
    topology, positions, forcefield = build_water_box(
        settings.model, settings.n_molecules, settings.density, settings.run_seed()
    )
    system = create_system(topology, forcefield, settings.cutoff, settings.ewald_tolerance)
    integrator = openmm.LangevinMiddleIntegrator(
        settings.temperature * unit.kelvin, settings.equilibration_friction / unit.picosecond,
        settings.timestep * unit.picosecond,
    )
    integrator.setRandomNumberSeed(settings.run_seed())
    simulation = create_simulation(topology, system, integrator, settings.platform, settings.threads)
    context = simulation.context
    log.info(
        "%d %s molecules, box %.4f nm, %.1f K, dt %.4f ps: equilibration %.1f ps (friction %.2g/ps), "
        "production %.1f ps (friction %.2g/ps), a frame every %.3f ps",
        settings.n_molecules, settings.model, settings.box_length, settings.temperature, settings.timestep,
        settings.equilibration, settings.equilibration_friction, settings.production, settings.friction,
        settings.steps_per_frame * settings.timestep,
    )

    fingerprint = settings.fingerprint(context.getPlatform().getName())
    saved = _load_state(state_path, fingerprint)
    if saved is not None:
        _continue_from(context, saved["checkpoint"].tobytes())
        equilibrated = int(saved["equilibration_steps_done"])
        recorder = _Recorder(saved)
        log.info("resumed from %s: %d equilibration steps and %d frames done", state_path, equilibrated, len(recorder))
    else:
        context.setPositions(positions * unit.nanometer)
        context.applyConstraints(1e-8)
        context.setVelocitiesToTemperature(settings.temperature * unit.kelvin, settings.run_seed())
        _relax(integrator, settings)
        equilibrated, recorder = 0, _Recorder()

    def checkpoint():
        state = context.createCheckpoint()
        _save_state(state_path, fingerprint, state, equilibrated, recorder)
        _continue_from(context, state)

    chunk = max(1, round(settings.checkpoint_interval / settings.timestep))
    while equilibrated < settings.equilibration_steps:
        steps = min(chunk, settings.equilibration_steps - equilibrated)
        integrator.step(steps)
        equilibrated += steps
        checkpoint()
        log.info("equilibration %.1f / %.1f ps", equilibrated * settings.timestep, settings.equilibration)

    integrator.setFriction(settings.friction / unit.picosecond)
    frames_per_chunk = max(1, round(settings.checkpoint_interval / settings.frame_interval))
    frame_time = settings.steps_per_frame * settings.timestep
    started, done_at_start = time.perf_counter(), len(recorder)
    while len(recorder) < settings.n_frames:
        for _ in range(min(frames_per_chunk, settings.n_frames - len(recorder))):
            integrator.step(settings.steps_per_frame)
            recorder.record(context, (len(recorder) + 1) * frame_time)
        checkpoint()
        elapsed = time.perf_counter() - started
        done_ps = (len(recorder) - done_at_start) * frame_time
        log.info(
            "production %.1f / %.1f ps (%d frames), %.1f ns/day",
            len(recorder) * frame_time, settings.n_frames * frame_time, len(recorder), _ns_per_day(done_ps, elapsed),
        )
    elapsed = time.perf_counter() - started
    ns_per_day = _ns_per_day((len(recorder) - done_at_start) * frame_time, elapsed)

    arrays = recorder.arrays()
    masses = np.array([system.getParticleMass(i).value_in_unit(unit.dalton) for i in range(system.getNumParticles())])
    atom_names = np.array([atom.name for atom in topology.atoms()])
    io.save_frames(
        frames_path, **arrays, masses=masses, molecule_index=molecule_index(topology), atom_names=atom_names,
        temperature=np.float64(settings.temperature), water_model=settings.model,
    )
    _write_trajectory(trajectory_path, topology_path, topology, arrays)
    _store_pme_parameters(system, context)
    io.atomic_write(system_path, lambda tmp: Path(tmp).write_text(openmm.XmlSerializer.serialize(system)))
    Path(state_path).unlink(missing_ok=True)
    platform = context.getPlatform().getName()
    log.info("done: %d frames, production at %.1f ns/day on %s", len(recorder), ns_per_day, platform)
    return {"ns_per_day": ns_per_day, "n_frames": len(recorder), "platform": platform}


def _store_pme_parameters(system, context):
    """Record the PME alpha and grid the engine chose, so that energy decompositions use the same."""
    context.getState(getEnergy=True)  # the engine settles its grid at a force evaluation (also after reinitialize)
    for force in system.getForces():
        if isinstance(force, openmm.NonbondedForce) and force.getNonbondedMethod() == openmm.NonbondedForce.PME:
            force.setPMEParameters(*force.getPMEParametersInContext(context))


def _write_trajectory(trajectory_path, topology_path, topology, arrays):
    """DCD trajectory + PDB topology that mdtraj (and VMD) read."""
    import mdtraj

    md_topology = mdtraj.Topology.from_openmm(topology)
    n_frames = len(arrays["time"])
    trajectory = mdtraj.Trajectory(
        arrays["positions"].astype(np.float32), md_topology, time=arrays["time"],
        unitcell_lengths=arrays["box"], unitcell_angles=np.full((n_frames, 3), 90.0),
    )
    io.save_dcd(trajectory_path, trajectory)
    io.atomic_write(topology_path, lambda tmp: trajectory[0].save_pdb(tmp))
