"""The ``thermocg`` command (thermocg.cli): info, md, observables, export on a model file."""

import json
import subprocess
import sys
from pathlib import Path

import mdtraj
import numpy as np
import pandas as pd
import pytest
import torch

from thermocg import cli, io, md, nn, units

pytestmark = pytest.mark.usefixtures("one_thread")

T0 = 300.0
# a short run: 0.08 ps equilibration + 0.4 ps production at 4 fs, a frame every 0.04 ps
RUN = ["--time", "0.4", "--equilibration", "0.08", "--dt", "0.004", "--frame-interval", "0.04", "--threads", "1"]


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """A pipeline-like results folder: a model file with the metadata train.py writes, and its metrics."""
    root = tmp_path_factory.mktemp("cli") / "results"
    torch.manual_seed(0)
    model = nn.CGModel(n_features=8, n_sensitivities=4, n_dense_layers=1, cutoff=0.5, sensitivity_soft_min=0.2,
                       sensitivity_soft_max=0.45, heads=("W0", "W1", "W2"), head_scales={"W1": 10.0, "W2": 50.0})
    metadata = {"name": "trf2", "kind": "trf2", "spec": {"kind": "trf2"}, "T0_K": T0,
                "beta0_mol_per_kJ": float(units.beta(T0)), "trained_at_K": [T0], "cutoff_nm": 0.5,
                "network": {"n_features": 8}, "training": {"epochs": 3, "learning_rate": 0.001},
                "data_sha256": "0123abcd", "units": {"energy": "kJ/mol", "length": "nm", "dbeta": "mol/kJ"}}
    nn.save_model(root / "models" / "trf2" / "model.pt", model, metadata)
    io.write_table(root / "metrics" / "forces.tsv", pd.DataFrame([
        {"model": "trf2", "kind": "trf2", "T_K": 300.0, "trained_at": "300", "force_rmse": 41.25, "n_frames": 4},
        {"model": "trf2", "kind": "trf2", "T_K": 340.0, "trained_at": "300", "force_rmse": 47.5, "n_frames": 4},
        {"model": "fm_ref", "kind": "fm_ref", "T_K": 300.0, "trained_at": "300", "force_rmse": 39.0, "n_frames": 4}]))
    return root


def model_file(results):
    return results / "models" / "trf2" / "model.pt"


def thermocg(capsys, *argv):
    """Run the command in this process; returns what it printed."""
    assert cli.main([str(a) for a in argv]) == 0
    return capsys.readouterr().out


def fails(capsys, *argv):
    with pytest.raises(SystemExit) as error:
        cli.main([str(a) for a in argv])
    return str(error.value)


def test_info_describes_the_model_file(results, capsys):
    out = thermocg(capsys, "info", model_file(results))
    assert "name         trf2" in out and "kind         trf2" in out
    assert "T0           300 K (beta0 0.40091 mol/kJ)" in out
    assert "cutoff       0.5 nm" in out and "heads        W0, W1, W2" in out
    assert "data sha256  0123abcd" in out and "epochs=3" in out
    # its metrics, found in results/metrics/forces.tsv: its two rows, not fm_ref's
    assert "force_rmse=41.25" in out and "force_rmse=47.5" in out and "force_rmse=39" not in out
    description = json.loads(thermocg(capsys, "info", model_file(results), "--json"))
    assert description["T0_K"] == T0 and description["cutoff_nm"] == 0.5 and description["trained_at_K"] == [T0]
    assert description["n_parameters"] == sum(p.numel() for p in nn.load_model(model_file(results))[0].parameters())
    assert [row["T_K"] for row in description["metrics"][str(results / "metrics" / "forces.tsv")]] == [300.0, 340.0]


def test_info_refuses_what_is_not_a_model_file(results, tmp_path, capsys):
    assert "no such file" in fails(capsys, "info", tmp_path / "missing.pt")
    torch.save({"format": "something else"}, tmp_path / "other.pt")
    assert "is not a thermocg.nn.CGModel/1 file" in fails(capsys, "info", tmp_path / "other.pt")
    (tmp_path / "broken.pt").write_bytes(b"PK\x03\x04 not a zip")
    assert "damaged or truncated" in fails(capsys, "info", tmp_path / "broken.pt")
    # files of another kind are called so, not damaged: a table, a folder, a bead archive
    (tmp_path / "table.tsv").write_text("model\tforce_rmse\ntrf2\t41.25\n")
    assert "table.tsv is not a thermocg.nn.CGModel/1 file" in fails(capsys, "info", tmp_path / "table.tsv")
    assert "is a folder, not a thermocg.nn.CGModel/1 file" in fails(capsys, "info", tmp_path)
    io.save_frames(tmp_path / "beads.npz", positions=np.zeros((1, 2, 3)), box=np.ones((1, 3)))
    assert "is a zip archive of" in fails(capsys, "info", tmp_path / "beads.npz")


def test_info_of_an_oracle_file_shows_its_own_temperature_only(results, tmp_path, capsys):
    """fm_oracle files are one per temperature, all named fm_oracle in the metrics table."""
    model, _ = nn.load_model(model_file(results))
    oracle = tmp_path / "results" / "models" / "fm_oracle" / "T340" / "model.pt"
    nn.save_model(oracle, model, {"name": "fm_oracle", "kind": "fm_oracle", "T0_K": 340.0, "trained_at_K": [340.0]})
    rows = [{"model": "fm_oracle", "kind": "fm_oracle", "T_K": t, "trained_at": f"{t:g}", "force_rmse": r, "n_frames": 4}
            for t, r in ((300.0, 40.5), (340.0, 44.75))]
    io.write_table(tmp_path / "results" / "metrics" / "forces.tsv", pd.DataFrame(rows))
    out = thermocg(capsys, "info", oracle)
    assert "force_rmse=44.75" in out and "force_rmse=40.5" not in out
    io.write_table(tmp_path / "results" / "metrics" / "forces.tsv", pd.DataFrame(rows[:1]))
    assert "no row for fm_oracle in " in thermocg(capsys, "info", oracle)


def test_md_from_a_lattice_then_observables(results, tmp_path, capsys):
    out = thermocg(capsys, "md", model_file(results), "-T", 330, "--density", 0.997, "--n-beads", 125,
                   "-o", tmp_path / "run", *RUN)
    assert "wrote 11 frames (0.4 ps every 0.04 ps)" in out
    run = tmp_path / "run"
    record = json.loads((run / "run.json").read_text())
    # the temperature reference is the model file's, and dbeta follows from it
    assert record["reference_temperature_K"] == T0 and record["temperature_K"] == 330.0
    assert record["dbeta_mol_per_kJ"] == pytest.approx(md.dbeta_for(330.0, T0))
    assert record["first_frame_time_ps"] == pytest.approx(0.08) and record["frame_interval_ps"] == pytest.approx(0.04)
    traj = mdtraj.load(str(run / "trajectory.dcd"), top=str(run / "topology.pdb"))
    assert traj.n_frames == record["n_frames"] == 11 and traj.n_atoms == 125
    assert np.allclose(traj.unitcell_lengths, units.cubic_box_length(125, 0.997), atol=1e-4)
    thermo = io.read_table(run / "thermo.tsv")  # the whole run, equilibration included
    assert thermo.time_ps.iloc[0] == 0.0 and thermo.time_ps.iloc[-1] == pytest.approx(0.48)
    assert not (run / "checkpoint.npz").exists()

    out = thermocg(capsys, "observables", run / "trajectory.dcd", "--top", run / "topology.pdb", "-o", tmp_path / "obs",
                   "--temperature", 330)
    assert out.startswith("11 frames, 0.4 ps: D = ") and "MSD fit 0.04-0.2 ps" in out  # times from run.json
    summary = json.loads((tmp_path / "obs" / "summary.json").read_text())
    assert summary["n_frames"] == 11 and summary["temperature_K"] == 330.0 and summary["time_span_ps"] == pytest.approx(0.4)
    assert summary["diffusion"]["D_nm2_per_ps"] > 0 and 0.2 < summary["rdf_first_peak"]["r_nm"] < 0.5
    msd = io.read_table(tmp_path / "obs" / "msd.tsv")
    assert np.allclose(msd.lag_ps, 0.04 * np.arange(11))
    for name in ("rdf_com", "adf"):
        assert len(io.read_table(tmp_path / "obs" / f"{name}.tsv")) > 10
    written = sorted(path.name for path in (tmp_path / "obs").glob("*.tsv"))  # and the message names them all
    assert written == ["adf.tsv", "adf_halves.tsv", "msd.tsv", "rdf_com.tsv", "rdf_halves.tsv"]
    assert all(name in out for name in written)

    # without run.json the frame interval must be given
    (run / "run.json").rename(tmp_path / "elsewhere.json")
    assert "DCD stores no times" in fails(capsys, "observables", run / "trajectory.dcd", "--top", run / "topology.pdb",
                                          "-o", tmp_path / "obs2")
    out = thermocg(capsys, "observables", run / "trajectory.dcd", "--top", run / "topology.pdb", "-o", tmp_path / "obs2",
                   "--frame-interval", 0.04, "--skip", 0.08, "--msd-fit", 0.04, 0.2)
    assert out.startswith("9 frames, 0.32 ps")
    assert json.loads((tmp_path / "obs2" / "summary.json").read_text())["temperature_K"] is None  # no NaN in JSON
    thermocg(capsys, "observables", run / "trajectory.dcd", "--top", run / "topology.pdb", "-o", tmp_path / "obs3",
             "--run", tmp_path / "elsewhere.json")  # no --temperature: the run record's
    assert json.loads((tmp_path / "obs3" / "summary.json").read_text())["temperature_K"] == 330.0


def test_md_keeps_the_equilibration_out_of_the_trajectory(results, tmp_path, capsys):
    """Same seed with and without 0.08 ps of equilibration: the first run's frame 0 is the second's frame 2."""
    common = ["-T", 300, "--density", 0.997, "--n-beads", 125, "--seed", 7]
    thermocg(capsys, "md", model_file(results), *common, "-o", tmp_path / "a", *RUN)
    no_equilibration = ["--time", "0.48", "--equilibration", "0", *RUN[4:]]
    thermocg(capsys, "md", model_file(results), *common, "-o", tmp_path / "b", *no_equilibration)
    a = mdtraj.load(str(tmp_path / "a" / "trajectory.dcd"), top=str(tmp_path / "a" / "topology.pdb"))
    b = mdtraj.load(str(tmp_path / "b" / "trajectory.dcd"), top=str(tmp_path / "b" / "topology.pdb"))
    assert (a.n_frames, b.n_frames) == (11, 13)
    assert np.array_equal(a.xyz, b.xyz[2:])


def test_md_starts_from_a_bead_archive_or_a_pdb(results, tmp_path, capsys):
    rng = np.random.default_rng(0)
    side, box = 5, units.cubic_box_length(125, 0.997)
    grid = (np.stack(np.meshgrid(*[np.arange(side)] * 3, indexing="ij"), -1).reshape(-1, 3) + 0.5) * box / side
    frames = np.stack([grid, grid + rng.uniform(-0.03, 0.03, grid.shape)])
    io.save_frames(tmp_path / "beads.npz", positions=frames, box=np.full((2, 3), box), time=np.arange(2.0),
                   masses=np.full(125, units.WATER_MASS), temperature=np.float64(T0))
    no_equilibration = ["--time", "0.04", "--equilibration", "0", *RUN[4:]]
    thermocg(capsys, "md", model_file(results), "-T", 300, "--start", tmp_path / "beads.npz", "-o", tmp_path / "npz",
             *no_equilibration)
    first = mdtraj.load(str(tmp_path / "npz" / "trajectory.dcd"), top=str(tmp_path / "npz" / "topology.pdb"))
    np.testing.assert_allclose(first.xyz[0], frames[-1], atol=1e-5)  # the last frame by default
    thermocg(capsys, "md", model_file(results), "-T", 300, "--start", tmp_path / "npz" / "topology.pdb",
             "-o", tmp_path / "pdb", *no_equilibration)
    again = mdtraj.load(str(tmp_path / "pdb" / "trajectory.dcd"), top=str(tmp_path / "pdb" / "topology.pdb"))
    np.testing.assert_allclose(again.xyz[0], frames[-1], atol=1e-3)  # PDB keeps 1e-3 nm


def test_an_atomistic_pdb_is_mapped_to_molecule_centres_of_mass(tmp_path):
    topology = mdtraj.Topology()
    chain = topology.add_chain()
    for _ in range(2):
        residue = topology.add_residue("HOH", chain)
        for name, element in (("O", "oxygen"), ("H1", "hydrogen"), ("H2", "hydrogen")):
            topology.add_atom(name, getattr(mdtraj.element, element), residue)
    xyz = np.array([[[1.0, 1.0, 1.0], [1.1, 1.0, 1.0], [1.0, 1.1, 1.0], [2.0, 2.0, 2.0], [2.0, 2.1, 2.0], [2.0, 2.0, 2.1]]])
    mdtraj.Trajectory(xyz, topology, unitcell_lengths=np.full((1, 3), 3.0),
                      unitcell_angles=np.full((1, 3), 90.0)).save_pdb(str(tmp_path / "water.pdb"))
    positions, box, masses, _ = cli.start_frame(tmp_path / "water.pdb", -1, units.WATER_MASS)
    hydrogen, oxygen = mdtraj.element.hydrogen.mass, mdtraj.element.oxygen.mass
    assert np.allclose(masses, oxygen + 2 * hydrogen) and np.allclose(box, 3.0)
    np.testing.assert_allclose(positions[0], [1.0 + 0.1 * hydrogen / masses[0]] * 2 + [1.0], atol=1e-5)


def test_md_refuses_bad_input(results, tmp_path, capsys):
    model = model_file(results)
    assert "give a start frame" in fails(capsys, "md", model, "-T", 300, "-o", tmp_path / "x", *RUN)
    assert "smaller than twice the model's cutoff" in fails(
        capsys, "md", model, "-T", 300, "--density", 0.997, "--n-beads", 27, "-o", tmp_path / "x", *RUN)
    assert "must be a non-negative multiple of --dt" in fails(
        capsys, "md", model, "-T", 300, "--density", 0.997, "--n-beads", 125, "-o", tmp_path / "x",
        *RUN, "--frame-interval", "0.05")
    assert "no such file" in fails(capsys, "md", model, "-T", 300, "--start", tmp_path / "none.npz", "-o", tmp_path / "x")
    bare, _ = nn.load_model(model)
    nn.save_model(tmp_path / "no_t0.pt", bare, {"name": "old"})
    assert "stores no T0: give --reference-temperature" in fails(
        capsys, "md", tmp_path / "no_t0.pt", "-T", 300, "--density", 0.997, "--n-beads", 125, "-o", tmp_path / "x", *RUN)
    assert "--reference-temperature must be > 0 K, got 0.0" in fails(
        capsys, "md", model, "-T", 300, "--reference-temperature", 0, "--density", 0.997, "--n-beads", 125,
        "-o", tmp_path / "x", *RUN)
    io.save_frames(tmp_path / "frames.npz", positions=np.zeros((1, 6, 3)), box=np.full((1, 3), 3.0),
                   molecule_index=np.repeat(np.arange(2), 3))  # an atomistic archive (thermocg.fg)
    assert "holds atoms, not beads" in fails(capsys, "md", model, "-T", 300, "--start", tmp_path / "frames.npz",
                                             "-o", tmp_path / "x", *RUN)


def test_observables_refuses_an_atomistic_trajectory_and_unreadable_input(tmp_path, capsys):
    topology = mdtraj.Topology()
    residue = topology.add_residue("HOH", topology.add_chain())
    for name, element in (("O", "oxygen"), ("H1", "hydrogen"), ("H2", "hydrogen")):
        topology.add_atom(name, getattr(mdtraj.element, element), residue)
    xyz = np.array([[[1.0, 1.0, 1.0], [1.1, 1.0, 1.0], [1.0, 1.1, 1.0]]] * 4)
    mdtraj.Trajectory(xyz, topology, unitcell_lengths=np.full((4, 3), 3.0),
                      unitcell_angles=np.full((4, 3), 90.0)).save_pdb(str(tmp_path / "water.pdb"))
    assert "has residues of several atoms" in fails(capsys, "observables", tmp_path / "water.pdb", "--top",
                                                    tmp_path / "water.pdb", "-o", tmp_path / "obs", "--frame-interval", 1)
    (tmp_path / "thermo.tsv").write_text("time_ps\n0\n")
    assert "cannot read" in fails(capsys, "observables", tmp_path / "thermo.tsv", "--top", tmp_path / "water.pdb",
                                  "-o", tmp_path / "obs", "--frame-interval", 1)


def test_export_writes_a_file_checked_against_thermocg(results, tmp_path, capsys):
    out = thermocg(capsys, "export", model_file(results), "-o", tmp_path / "trf2_openmm.pt")
    assert "T0 300 K, cutoff 0.5 nm, float32" in out and "'thermocg_temperature'" in out
    error = float(out.rsplit("max |dF| ", 1)[1].split()[0])
    assert error < 1e-3  # the command's own check against thermocg's forces


def test_run_md_takes_t0_from_a_model_file(results, tmp_path):
    """md.run_md with a model file's path uses the file's T0; a potential object without one warns."""
    side, box = 5, units.cubic_box_length(125, 0.997)
    grid = (np.stack(np.meshgrid(*[np.arange(side)] * 3, indexing="ij"), -1).reshape(-1, 3) + 0.5) * box / side
    outputs = {name: tmp_path / file for name, file in cli.RUN_FILES.items()}
    summary = md.run_md(model_file(results), grid, np.full(3, box), 350.0, 10, frame_interval=5, device="cpu", **outputs)
    assert summary["reference_temperature_K"] == T0 and summary["first_frame_time_ps"] == 0.0


def test_the_console_script_is_installed(results):
    script = Path(sys.executable).with_name("thermocg")
    assert script.exists(), "no thermocg command: run pip install -e ."
    result = subprocess.run([str(script), "info", str(model_file(results)), "--json"], check=False,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["kind"] == "trf2"


def test_a_start_archive_of_ones_own_needs_no_units_entry(tmp_path):
    """thermocg's archives carry a units entry; a user's np.savez of positions and box is read as nm all the same."""
    positions = np.random.default_rng(1).uniform(0, 2.0, (1, 8, 3))
    np.savez(tmp_path / "mine.npz", positions=positions, box=np.full((1, 3), 2.0))
    start, box, masses, _ = cli.start_frame(tmp_path / "mine.npz", -1, units.WATER_MASS)
    np.testing.assert_array_equal(start, positions[0])
    assert np.allclose(box, 2.0) and np.allclose(masses, units.WATER_MASS)
