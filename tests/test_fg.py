"""Atomistic sampling: box construction, determinism, checkpoint/resume, outputs."""

import dataclasses
import logging

import mdtraj
import numpy as np
import pytest
from openmm import unit

from thermocg import checkpoints, fg, io, units
from thermocg.fg import SamplingSettings

SMALL = SamplingSettings(
    model="spce", n_molecules=100, density=0.997, cutoff=0.7, ewald_tolerance=5e-4, temperature=300.0,
    seed=11, timestep=0.002, equilibration=0.2, equilibration_friction=1.0, production=0.6, friction=0.1,
    frame_interval=0.1, checkpoint_interval=0.2, platform="CPU", threads=1,
)


def run(settings, directory):
    paths = {name: directory / name for name in ("frames.npz", "traj.dcd", "top.pdb", "system.xml", "state.npz")}
    stats = fg.sample(settings, *paths.values())
    return io.load_frames(paths["frames.npz"]), paths, stats


@pytest.mark.parametrize("model", sorted(fg.WATER_MODELS))
def test_box_has_exact_density_and_sane_geometry(model):
    topology, positions, _ = fg.build_water_box(model, 125, 0.997, seed=3)
    length = topology.getPeriodicBoxVectors()[0][0].value_in_unit(unit.nanometer)
    mass = 125 * units.WATER_MASS  # g/mol
    assert mass / length**3 / units.G_PER_CM3_IN_AMU_PER_NM3 == pytest.approx(0.997, rel=1e-12)
    oxygens = positions[[a.index for a in topology.atoms() if a.name == "O"]]
    distance = oxygens[:, None] - oxygens[None]
    distance -= length * np.round(distance / length)
    distance = np.linalg.norm(distance, axis=-1) + np.eye(len(oxygens)) * 10
    assert distance.min() > 0.25, "lattice start must not overlap molecules"
    assert topology.getNumResidues() == 125


def test_same_seed_same_numbers_and_seed_matters(tmp_path):
    first, paths, stats = run(SMALL, tmp_path / "a")
    second, _, _ = run(SMALL, tmp_path / "b")
    other, _, _ = run(dataclasses.replace(SMALL, seed=12), tmp_path / "c")
    assert first["positions"].shape == (6, 300, 3)
    np.testing.assert_array_equal(first["positions"], second["positions"])
    np.testing.assert_array_equal(first["forces"], second["forces"])
    assert not np.allclose(first["potential_energy"], other["potential_energy"])
    replica, _, _ = run(dataclasses.replace(SMALL, replica=1), tmp_path / "d")
    assert not np.allclose(first["potential_energy"], replica["potential_energy"]), "a replica is another run"
    assert not paths["state.npz"].exists(), "the checkpoint is removed once the outputs are written"
    assert stats["ns_per_day"] > 0


def test_main_run_seed_is_unchanged_by_replicas():
    # replica 0 keeps the seed of runs made before replicas existed: their frames stay valid
    assert SMALL.run_seed() == int(np.random.SeedSequence([11, 300000]).generate_state(1)[0] % (2**31 - 1)) + 1
    assert dataclasses.replace(SMALL, replica=1).run_seed() != SMALL.run_seed()


def test_outputs_are_consistent_and_readable(tmp_path):
    frames, paths, _ = run(SMALL, tmp_path)
    assert frames["units"]["forces"] == "kJ/(mol nm)"
    np.testing.assert_allclose(frames["time"], 0.1 * np.arange(1, 7), rtol=1e-12)
    np.testing.assert_allclose(frames["box"], SMALL.box_length, rtol=1e-9)
    assert np.all(frames["potential_energy"] / 100 < -35), "liquid water: about -41 to -47 kJ/mol per molecule"
    trajectory = mdtraj.load(str(paths["traj.dcd"]), top=str(paths["top.pdb"]))
    assert trajectory.n_frames == 6 and trajectory.n_residues == 100
    np.testing.assert_allclose(trajectory.xyz, frames["positions"], atol=1e-5)
    # Forces and energies are the potential's, in kJ/mol and kJ/(mol nm): recomputed from the saved
    # system at the saved positions (a scale or unit error, or another step's forces, would differ).
    import openmm

    system = openmm.XmlSerializer.deserialize(paths["system.xml"].read_text())
    context = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("CPU"),
                             {"Threads": "1"})
    for k in (0, 5):
        context.setPositions(frames["positions"][k])
        state = context.getState(getForces=True, getEnergy=True)
        forces = state.getForces(asNumpy=True).value_in_unit(unit.kilojoule_per_mole / unit.nanometer)
        np.testing.assert_allclose(frames["forces"][k], forces, rtol=0, atol=1e-3 * np.abs(forces).max())
        energy = state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
        assert frames["potential_energy"][k] == pytest.approx(energy, rel=1e-4)
    # and the net force on the whole box vanishes (Newton's third law; PME is not exact, so loosely)
    total = frames["forces"].sum(axis=1)
    assert np.abs(total).max() < 1e-2 * np.abs(frames["forces"]).max() * np.sqrt(300)


class Killed(Exception):
    pass


@pytest.mark.parametrize("kill_at", [1, 4])  # frame 1: resumes at the end of equilibration; 4: after 2 frames
def test_killed_run_resumes_and_equals_the_uninterrupted_run(tmp_path, monkeypatch, caplog, kill_at):
    caplog.set_level(logging.INFO)
    reference, _, _ = run(SMALL, tmp_path / "whole")
    original = fg._Recorder.record
    calls = {"n": 0}

    def dying_record(self, context, time_ps):
        calls["n"] += 1
        if calls["n"] == kill_at:
            raise Killed
        original(self, context, time_ps)

    monkeypatch.setattr(fg._Recorder, "record", dying_record)
    with pytest.raises(Killed):
        run(SMALL, tmp_path / "killed")
    assert (tmp_path / "killed" / "state.npz").exists()
    assert not (tmp_path / "killed" / "frames.npz").exists(), "no complete-looking output after a kill"
    monkeypatch.setattr(fg._Recorder, "record", original)
    resumed, _, _ = run(SMALL, tmp_path / "killed")
    done = 2 * ((kill_at - 1) // 2)
    assert f"resumed from {tmp_path / 'killed' / 'state.npz'}: 100 equilibration steps and {done} frames" in caplog.text
    for name in ("positions", "forces", "potential_energy", "box", "time"):
        np.testing.assert_array_equal(resumed[name], reference[name], err_msg=name)


def test_rerun_after_success_samples_again(tmp_path, caplog):
    """-R sample_fg must recompute: the finished run leaves no state behind to resume from."""
    caplog.set_level(logging.INFO)
    first, paths, _ = run(SMALL, tmp_path)
    assert not paths["state.npz"].exists()
    caplog.clear()
    second, _, _ = run(SMALL, tmp_path)
    assert "resumed" not in caplog.text and "equilibration 0.2 / 0.2 ps" in caplog.text
    np.testing.assert_array_equal(first["positions"], second["positions"])


def test_checkpoint_from_other_settings_is_set_aside(tmp_path, caplog):
    state = tmp_path / "state.npz"
    # a state left by a run at another temperature: set aside (one line saying why), not resumed
    other = dataclasses.replace(SMALL, temperature=350.0)
    fg._save_state(state, other.fingerprint("CPU"), b"\x00", 0, fg._Recorder())
    frames, _, _ = run(SMALL, tmp_path)
    assert "set aside" in caplog.text and "temperature 350.0 (now 300.0)" in caplog.text
    assert (tmp_path / "state.npz.stale").exists()
    assert len(frames["time"]) == 6


def test_damaged_state_is_reported_with_its_path(tmp_path):
    state = tmp_path / "state.npz"
    fg._save_state(state, SMALL.fingerprint("CPU"), b"\x00" * 64, 0, fg._Recorder())
    data = bytearray(state.read_bytes())
    data[-10] ^= 1
    state.write_bytes(bytes(data))
    with pytest.raises(checkpoints.CheckpointError, match=f"{state}.*damaged.*delete it"):
        run(SMALL, tmp_path)
