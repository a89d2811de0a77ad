"""CG MD as the pipeline runs it: start frame, outputs, and the friction fit (known answer)."""

import json
import logging

import numpy as np
import pytest
import torch

from thermocg import cgmd, friction, io, md, nn, observables, units

SETTINGS = {
    "timestep": 0.004, "equilibration": 0.4, "production": 4.0, "frame_interval": 0.04, "checkpoint_interval": 2.0,
    "skin": 0.1, "friction": "fit", "friction_trials": [2.0, 20.0], "friction_fit_time": 8.0,
    "friction_fit_start": 1.0, "friction_fit_end": 6.0, "threads": 1,
}


@pytest.fixture(scope="module")
def ideal_gas(tmp_path_factory):
    """A dilute gas of beads with only the short repulsive prior (network forces negligible), on a lattice.

    At 1.7 beads/nm^3 and a 0.22 nm prior, collisions barely change Langevin's free diffusion.
    """
    directory = tmp_path_factory.mktemp("gas")
    torch.manual_seed(0)
    model = nn.CGModel(n_features=4, n_sensitivities=4, heads=["W0"], head_scales={"W0": 1e-9})
    nn.save_model(directory / "model.pt", model, {"name": "gas", "kind": "fm_ref", "trained_at_K": [300.0]})
    grid = (np.stack(np.meshgrid(*[np.arange(6)] * 3, indexing="ij"), -1).reshape(-1, 3) + 0.5) * (5.0 / 6)
    positions = np.stack([grid, grid])
    io.save_frames(directory / "beads.npz", positions=positions, forces=np.zeros_like(positions),
                   potential_energy=np.zeros(2), box=np.full((2, 3), 5.0), time=np.arange(2.0),
                   masses=np.full(216, units.WATER_MASS), temperature=np.float64(300.0))
    return directory


def outputs_in(directory):
    return {name: directory / file for name, file in
            (("trajectory", "t.dcd"), ("topology", "t.pdb"), ("thermo", "thermo.tsv"), ("checkpoint", "c.npz"))}


def test_simulate_writes_a_trajectory_of_the_production(ideal_gas, tmp_path):
    outputs = outputs_in(tmp_path)
    summary = cgmd.simulate(ideal_gas / "model.pt", ideal_gas / "beads.npz", 300.0, 300.0, SETTINGS, 5.0, outputs, seed=3)
    assert summary["n_steps"] == 1100
    beads = observables.trajectory_beads(outputs["trajectory"], outputs["topology"], SETTINGS, 300.0)
    assert beads["positions"].shape == (101, 216, 3)  # 4 ps production at 0.04 ps, plus its first frame
    # the run starts from the last mapped frame
    first = observables.trajectory_beads(outputs["trajectory"], outputs["topology"], dict(SETTINGS, equilibration=0.0), 300.0)
    np.testing.assert_allclose(first["positions"][0], io.load_frames(ideal_gas / "beads.npz")["positions"][-1], atol=1e-5)
    thermo = io.read_table(outputs["thermo"])
    assert abs(thermo["T_kin_K"].mean() - 300.0) < 15.0


def test_a_run_away_from_t0_is_thermostatted_at_its_own_temperature(ideal_gas, tmp_path):
    """At T = 360 K with T0 = 300 K the beads' kinetic temperature is T's (a thermostat or start
    velocities at T0 would be 60 K off; the tolerance is the 300 K test's)."""
    outputs = outputs_in(tmp_path)
    cgmd.simulate(ideal_gas / "model.pt", ideal_gas / "beads.npz", 360.0, 300.0, SETTINGS, 5.0, outputs, seed=3)
    assert abs(io.read_table(outputs["thermo"])["T_kin_K"].mean() - 360.0) < 15.0


@pytest.mark.slow
def test_friction_fit_recovers_the_free_diffusion_law(ideal_gas):
    """Ideal gas under Langevin: D = k_B T / (m gamma), so the trial runs and the constant law
    fitted on them (the pipeline's default) must invert that law."""
    gamma_true = 5.0
    target = units.KB * 300.0 / (units.WATER_MASS * gamma_true)
    lines = cgmd.friction_lines({"300": ideal_gas / "model.pt"}, {"300": ideal_gas / "beads.npz"}, [300.0], 300.0,
                                SETTINGS, seed=4)
    for trial in lines["lines"]["300"]["trials"]:
        expected = units.KB * 300.0 / (units.WATER_MASS * trial["friction_per_ps"])
        assert trial["D_nm2_per_ps"] == pytest.approx(expected, rel=0.15)
    record = friction.friction_law("constant", [300.0], 300.0, lines, {"300": target}, {})
    assert record["friction_per_ps"] == pytest.approx(gamma_true, rel=0.15)


def test_a_blow_up_is_recorded_as_a_result_not_raised(ideal_gas, tmp_path):
    """Two beads 0.05 nm apart: the guard stops the run; the status says where and why."""
    frames = io.load_frames(ideal_gas / "beads.npz")
    positions = frames["positions"].copy()
    positions[:, 1] = positions[:, 0] + [0.05, 0.0, 0.0]
    frames.pop("units")
    io.save_frames(tmp_path / "beads.npz", **dict(frames, positions=positions))
    outputs = outputs_in(tmp_path)
    status = cgmd.simulate_or_record_blow_up(ideal_gas / "model.pt", tmp_path / "beads.npz", 300.0, 300.0,
                                             SETTINGS, 5.0, outputs, seed=3)
    assert status["stable"] is False and status["blow_up_step"] == 0
    assert "apart" in status["reason"]
    # a stable run says so, with the run's summary
    stable = cgmd.simulate_or_record_blow_up(ideal_gas / "model.pt", ideal_gas / "beads.npz", 300.0, 300.0,
                                             dict(SETTINGS, production=0.4), 5.0,
                                             {k: v.with_name("ok_" + v.name) for k, v in outputs.items()}, seed=3)
    assert stable["stable"] is True and stable["n_steps"] == 200


def blow_up_at_steps_of(monkeypatch, bad_timestep):
    """Make every run with a step of at least ``bad_timestep`` ps blow up at step 7, as the
    integrator's error does at a too large step (saving its last good frame, as run_md does);
    returns the steps of the runs started."""
    run_md, started = md.run_md, []

    def run(*args, dt, trajectory, **kwargs):
        started.append(dt)
        if dt >= bad_timestep:
            last_good = md.last_good_path(trajectory)
            last_good.parent.mkdir(parents=True, exist_ok=True)
            last_good.write_text("last good frame")
            raise md.BlowUpError(7, "kinetic temperature 2000 K > 3.0 x 300 K", timestep_ps=dt)
        return run_md(*args, dt=dt, trajectory=trajectory, **kwargs)

    monkeypatch.setattr(md, "run_md", run)
    return started


def test_a_blow_up_that_a_half_step_avoids_gives_the_half_step_run(ideal_gas, tmp_path, monkeypatch):
    """Blown up at 4 fs, run again at 2 fs: the outputs are those of a run at 2 fs to the bit
    (frames at the same times), the summary says why, and the blow-up's last good frame is gone."""
    args = (ideal_gas / "model.pt", ideal_gas / "beads.npz", 300.0, 300.0)
    fine = dict(SHORT, timestep=SHORT["timestep"] / 2)
    direct = cgmd.simulate(*args, fine, 5.0, outputs_in(tmp_path / "direct"), seed=3)
    with monkeypatch.context() as patch:
        started = blow_up_at_steps_of(patch, SHORT["timestep"])
        summary = cgmd.simulate(*args, SHORT, 5.0, outputs_in(tmp_path / "retried"), seed=3)
    assert started == [SHORT["timestep"], fine["timestep"]]
    assert summary["timestep_ps"] == fine["timestep"] == direct["timestep_ps"]
    assert "blew up at step 7 of 0.004 ps" in summary["halved_after"] and "halved_after" not in direct
    retried, reference = (observables.trajectory_beads(d / "t.dcd", d / "t.pdb", SHORT, 300.0)
                          for d in (tmp_path / "retried", tmp_path / "direct"))
    assert len(retried["positions"]) == round(SHORT["production"] / SHORT["frame_interval"]) + 1
    np.testing.assert_array_equal(retried["positions"], reference["positions"])
    assert not md.last_good_path(tmp_path / "retried" / "t.dcd").exists()


def test_a_run_the_integrator_heats_is_run_again_at_half_the_step(ideal_gas, tmp_path, monkeypatch):
    """A run 20% hotter than T on average (as a nearly undamped run at too large a step) is run
    again at half the step; one within HEATING_LIMIT is kept."""
    run_md, started = md.run_md, []

    def run(*args, dt, **kwargs):
        started.append(dt)
        summary = run_md(*args, dt=dt, **kwargs)
        return dict(summary, mean_T_kin_K=1.2 * 300.0) if dt >= SHORT["timestep"] else summary

    monkeypatch.setattr(md, "run_md", run)
    summary = cgmd.simulate(ideal_gas / "model.pt", ideal_gas / "beads.npz", 300.0, 300.0, SHORT, 5.0,
                            outputs_in(tmp_path), seed=3)
    assert started == [0.004, 0.002] and summary["timestep_ps"] == 0.002
    assert summary["halved_after"].startswith("ran 20% hot at 0.004 ps")
    assert summary["mean_T_kin_K"] < cgmd.HEATING_LIMIT * 300.0
    kept = cgmd.simulate(ideal_gas / "model.pt", ideal_gas / "beads.npz", 300.0, 300.0, dict(SHORT, timestep=0.002),
                         5.0, outputs_in(tmp_path / "kept"), seed=3)
    assert started[2:] == [0.002] and "halved_after" not in kept


def test_a_blow_up_at_half_the_step_too_is_recorded_with_both(ideal_gas, tmp_path, monkeypatch):
    started = blow_up_at_steps_of(monkeypatch, 0.0)
    status = cgmd.simulate_or_record_blow_up(ideal_gas / "model.pt", ideal_gas / "beads.npz", 300.0, 300.0, SHORT,
                                             5.0, outputs_in(tmp_path), seed=3)
    assert started == [0.004, 0.002] and status["stable"] is False
    assert status["timestep_ps"] == 0.002 and status["blow_up_time_ps"] == pytest.approx(7 * 0.002)
    assert "at 0.002 ps, after it blew up at step 7 of 0.004 ps" in status["reason"]


def test_a_bad_start_frame_is_not_run_again(ideal_gas, tmp_path, monkeypatch):
    frames = io.load_frames(ideal_gas / "beads.npz")
    frames.pop("units")
    positions = frames["positions"].copy()
    positions[:, 1] = positions[:, 0] + [0.05, 0.0, 0.0]
    io.save_frames(tmp_path / "beads.npz", **dict(frames, positions=positions))
    run_md, started = md.run_md, []
    monkeypatch.setattr(md, "run_md", lambda *args, **kwargs: started.append(kwargs["dt"]) or run_md(*args, **kwargs))
    status = cgmd.simulate_or_record_blow_up(ideal_gas / "model.pt", tmp_path / "beads.npz", 300.0, 300.0, SHORT,
                                             5.0, outputs_in(tmp_path), seed=3)
    assert status["blow_up_step"] == 0 and started == [SHORT["timestep"]]


class Killed(Exception):
    pass


def kill_at_step(monkeypatch, step):
    """Make the MD guard kill the run (as a scheduler would) when it reaches ``step``."""
    check = md.BlowUpGuard.check

    def dying(self, sim):
        if sim.step == step:
            raise Killed
        return check(self, sim)

    monkeypatch.setattr(md.BlowUpGuard, "check", dying)


SHORT = dict(SETTINGS, equilibration=0.0, production=0.8, checkpoint_interval=0.2)


def test_rerun_after_a_kill_resumes_without_its_outputs(ideal_gas, tmp_path, monkeypatch):
    """Killed at step 120 (checkpoints every 50 steps), outputs deleted (Snakemake does): the
    rerun resumes at 100 and gives the uninterrupted run's trajectory bit for bit."""
    args = (ideal_gas / "model.pt", ideal_gas / "beads.npz", 300.0, 300.0, SHORT, 5.0)
    cgmd.simulate(*args, outputs_in(tmp_path / "whole"), seed=3)
    with monkeypatch.context() as patch:
        kill_at_step(patch, 120)
        with pytest.raises(Killed):
            cgmd.simulate(*args, outputs_in(tmp_path / "killed"), seed=3)
    for name in ("t.dcd", "t.pdb", "thermo.tsv"):
        (tmp_path / "killed" / name).unlink(missing_ok=True)
    summary = cgmd.simulate(*args, outputs_in(tmp_path / "killed"), seed=3)
    assert summary["resumed_from"] == 100 and summary["n_steps"] == 200
    whole, killed = (observables.trajectory_beads(d / "t.dcd", d / "t.pdb", SHORT, 300.0) for d in (tmp_path / "whole", tmp_path / "killed"))
    np.testing.assert_array_equal(whole["positions"], killed["positions"])
    assert not (tmp_path / "killed" / "c.npz").exists()


def test_a_checkpoint_of_another_model_is_set_aside(ideal_gas, tmp_path, monkeypatch, caplog):
    torch.manual_seed(1)
    other = nn.CGModel(n_features=4, n_sensitivities=4, heads=["W0"], head_scales={"W0": 1e-3})
    nn.save_model(tmp_path / "other.pt", other, {"name": "other", "kind": "fm_ref", "trained_at_K": [300.0]})
    with monkeypatch.context() as patch:
        kill_at_step(patch, 120)
        with pytest.raises(Killed):
            cgmd.simulate(tmp_path / "other.pt", ideal_gas / "beads.npz", 300.0, 300.0, SHORT, 5.0,
                          outputs_in(tmp_path / "run"), seed=3)
    caplog.set_level(logging.INFO)
    summary = cgmd.simulate(ideal_gas / "model.pt", ideal_gas / "beads.npz", 300.0, 300.0, SHORT, 5.0,
                            outputs_in(tmp_path / "run"), seed=3)
    assert summary["resumed_from"] is None and "another model file" in caplog.text
    fresh = cgmd.simulate(ideal_gas / "model.pt", ideal_gas / "beads.npz", 300.0, 300.0, SHORT, 5.0,
                          outputs_in(tmp_path / "fresh"), seed=3)
    assert fresh["resumed_from"] is None
    run, reference = (observables.trajectory_beads(d / "t.dcd", d / "t.pdb", SHORT, 300.0) for d in (tmp_path / "run", tmp_path / "fresh"))
    np.testing.assert_array_equal(run["positions"], reference["positions"])


def test_a_blow_up_in_the_friction_fit_is_recorded(ideal_gas, tmp_path):
    """A model unstable at T0 gets a friction record that says so; its runs at every temperature
    are then recorded as unstable without simulating, and the rule's outputs still exist."""
    frames = io.load_frames(ideal_gas / "beads.npz")
    frames.pop("units")
    positions = frames["positions"].copy()
    positions[:, 1] = positions[:, 0] + [0.05, 0.0, 0.0]
    io.save_frames(tmp_path / "beads.npz", **dict(frames, positions=positions))
    lines = cgmd.friction_lines({"300": ideal_gas / "model.pt"}, {"300": tmp_path / "beads.npz"}, [300.0], 300.0,
                                SETTINGS, seed=4)
    record = friction.friction_law("constant", [300.0, 450.0], 300.0, lines, {"300": 0.1}, {})
    assert record["stable"] is False and record["friction_per_ps"] is None and "apart" in record["reason"]
    io.write_json(tmp_path / "friction.json", record)
    gamma = cgmd.read_friction(tmp_path / "friction.json", 450.0)
    assert gamma is None
    outputs = outputs_in(tmp_path / "T450")
    status = cgmd.simulate_or_record_blow_up(ideal_gas / "model.pt", tmp_path / "beads.npz", 450.0, 300.0, SETTINGS,
                                             gamma, outputs, seed=3)
    assert status["stable"] is False and "blew up in the friction fit at T0" in status["reason"]
    assert json.loads(json.dumps(status)) == status
    assert io.read_table(outputs["thermo"]).empty and outputs["trajectory"].exists() and outputs["topology"].exists()


def test_a_damaged_beads_file_is_reported_with_its_path(ideal_gas, tmp_path):
    damaged = tmp_path / "beads.npz"
    damaged.write_bytes((ideal_gas / "beads.npz").read_bytes()[:-100])
    with pytest.raises(io.DamagedFileError, match=f"{damaged} is damaged.*snakemake --cores 1 -R {damaged}"):
        cgmd.simulate(ideal_gas / "model.pt", damaged, 300.0, 300.0, SHORT, 5.0, outputs_in(tmp_path), seed=3)


@pytest.mark.slow
def test_dynamics_run_gives_the_free_langevin_diffusion_and_vacf(ideal_gas):
    """Ideal gas: D = k_B T / (m gamma) within its error bars, VACF = exp(-gamma t)."""
    gamma = 10.0
    summary, vacf = cgmd.dynamics_run(ideal_gas / "model.pt", ideal_gas / "beads.npz", 300.0, 300.0, SETTINGS, gamma,
                                      (1.0, 3.0), seed=5, production=6.0, vacf_max_lag=0.3)
    expected = units.KB * 300.0 / (units.WATER_MASS * gamma)
    diffusion = summary["diffusion"]
    assert summary["stable"] and summary["friction_per_ps"] == gamma and summary["timestep_ps"] == SETTINGS["timestep"]
    assert abs(diffusion["D_nm2_per_ps"] - expected) < max(4 * diffusion["D_error_nm2_per_ps"], 0.1 * expected)
    # finite-difference velocities over one step: C(t) = exp(-gamma t) to O(gamma dt)
    early = vacf["lag_ps"] <= 0.2
    np.testing.assert_allclose(vacf["vacf"][early], np.exp(-gamma * vacf["lag_ps"][early]), atol=0.06)
    unstable, empty = cgmd.dynamics_run(ideal_gas / "model.pt", ideal_gas / "beads.npz", 300.0, 300.0, SETTINGS, None,
                                        (1.0, 3.0), seed=5, production=6.0)
    assert unstable["stable"] is False and len(empty) == 0


def test_the_trial_and_dynamics_runs_compute_on_the_threads_their_job_has(ideal_gas, monkeypatch):
    """friction_lines and dynamics_cg reserve cgmd.threads: their runs must use them, not one thread."""
    counts = []
    monkeypatch.setattr(cgmd.torch, "set_num_threads", counts.append)
    short = dict(SETTINGS, equilibration=0.04, friction_fit_time=0.2, friction_fit_start=0.04, friction_fit_end=0.2)
    cgmd.friction_lines({"300": ideal_gas / "model.pt"}, {"300": ideal_gas / "beads.npz"}, [300.0], 300.0, short,
                        seed=4, threads=3)
    cgmd.dynamics_run(ideal_gas / "model.pt", ideal_gas / "beads.npz", 300.0, 300.0, short, 5.0, (0.04, 0.2), seed=5,
                      production=0.2, threads=3)
    assert counts == [3, 3, 3]  # two trial runs, one dynamics run


def test_a_cg_md_run_recording_every_step_gives_the_same_observables_and_its_dynamics_row(ideal_gas, tmp_path):
    """The default's dynamics rows of its own friction law are its CG MD runs, recorded every step
    (workflow rule dynamics_of_cgmd): their observables are those of the run recording every frame
    interval, and their D and VACF those of the dynamics comparison's own run (the same start, seed and
    friction), to the bit."""
    settings = dict(SETTINGS, equilibration=0.4, production=2.0)
    runs = {}
    for every_step in (False, True):
        (tmp_path / str(every_step)).mkdir()
        outputs = outputs_in(tmp_path / str(every_step))
        status = cgmd.simulate_or_record_blow_up(ideal_gas / "model.pt", ideal_gas / "beads.npz", 300.0, 300.0,
                                                 settings, 5.0, outputs, seed=4, frames_every_step=every_step)
        runs[every_step] = status, outputs
    assert runs[True][0]["frame_interval_ps"] == settings["timestep"] != runs[False][0]["frame_interval_ps"]
    analysis = {"rdf_bin_width": 0.01, "adf_shell": 0.5, "adf_bin_width": 2.0, "msd_fit_start": 0.2, "msd_fit_end": 1.0}
    (tables, summary), (tables_every_step, summary_every_step) = (
        observables.of_cg_run(run_status, run_outputs["trajectory"], run_outputs["topology"], settings, analysis, 300.0)
        for run_status, run_outputs in (runs[False], runs[True]))
    for name, table in tables.items():
        assert table.equals(tables_every_step[name]), name
    assert summary["diffusion"] == summary_every_step["diffusion"]
    status, outputs = runs[True]
    shared = cgmd.dynamics_of_run(status, outputs["trajectory"], outputs["topology"], settings, 5.0, (0.2, 1.0),
                                  vacf_max_lag=0.2)
    own = cgmd.dynamics_run(ideal_gas / "model.pt", ideal_gas / "beads.npz", 300.0, 300.0, settings, 5.0, (0.2, 1.0),
                            seed=4, production=2.0, vacf_max_lag=0.2)
    assert shared[0] == own[0] and shared[1].equals(own[1])
    assert own[0]["n_frames"] == 501  # 2 ps of production a 4 fs step apart, and its first frame
