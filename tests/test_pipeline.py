"""The Snakemake DAG: lint, dry runs, config errors, and the tiny config end to end."""

import json
import re
import shutil

import mdtraj
import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from conftest import REPO, run_snakemake
from thermocg import io, metrics, nn, response, transfer, units


def test_lint_is_clean(tmp_path):
    result = run_snakemake(tmp_path, "--lint", check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Congratulations, your workflow is in a good condition" in result.stdout + result.stderr


def test_default_config_dry_run(tmp_path):
    result = run_snakemake(tmp_path, "--dry-run", "--cores", "2", "--configfile", str(REPO / "config" / "config.yaml"))
    out = result.stdout + result.stderr
    for rule in ("sample_fg", "map_cg", "observables_fg", "plot_fg_observables", "energies_per_molecule", "fit",
                 "fit_oracle", "force_metrics", "refine_diffsim", "fit_friction", "cgmd", "observables_cg",
                 "transferability", "figures"):
        assert rule in out
    # the dynamics comparison runs once at T0 for the laws that share gamma(T0) there, and the rows of the
    # pipeline's own friction law (constant, among the laws that share) are the models' CG MD runs
    from thermocg import config, friction
    default = config.load(REPO / "config" / "config.yaml")
    laws, n_temperatures = default["dynamics"]["laws"], len(default["temperatures"])
    shared = [law for law in laws if law in friction.SAME_AS_CONSTANT_AT_T0]
    assert default["cgmd"]["friction_law"] == shared[0] and default["dynamics"]["production"] == default["cgmd"]["production"]
    n_models = len(default["dynamics"]["models"])
    runs = n_models * ((len(laws) - 1) * n_temperatures - (len(shared) - 1))
    assert len(shared) > 1 and re.search(rf"^dynamics_cg\s+{runs}$", out, flags=re.MULTILINE)
    assert re.search(rf"^dynamics_of_cgmd\s+{n_models * n_temperatures}$", out, flags=re.MULTILINE)
    # trf1 and trf2 differ only in their kind: their closed forms are fitted from one set of normal equations
    assert {name: spec["kind"] for name, spec in default["models"].items() if spec["kind"] in ("trf1", "trf2")} == \
        {"trf1": "trf1", "trf2": "trf2"}
    assert re.search(r"^response_systems\s+1$", out, flags=re.MULTILINE)


def rule_priorities():
    """Each rule's ``priority:`` (0 where it has none), constants resolved from common.smk."""
    constants = dict(re.findall(r"^([A-Z_]+_PRIORITY) = (\d+)$", (REPO / "workflow/rules/common.smk").read_text(),
                                flags=re.MULTILINE))
    priorities = {}
    for path in [REPO / "Snakefile", *(REPO / "workflow/rules").glob("*.smk")]:
        for name, body in re.findall(r"^rule (\w+):\n((?:[ \t]+.*\n|\n)*)", path.read_text(), flags=re.MULTILINE):
            found = re.search(r"^    priority: (\w+)$", body, flags=re.MULTILINE)
            priorities[name] = int(constants.get(found.group(1), found.group(1))) if found else 0
    return priorities


def test_every_fg_sampling_rule_has_its_own_random_stream():
    """The FG runs at one temperature (main, score, fine) differ only by their replica, which enters the
    seed (thermocg.fg.SamplingSettings.run_seed): two rules with the same one would draw the same start
    and noise (the fine run repeated the main run's first picoseconds until it had its own)."""
    replicas = {}
    for path in (REPO / "workflow/rules").glob("*.smk"):
        for name, body in re.findall(r"^rule (\w+):\n((?:[ \t]+.*\n|\n)*)", path.read_text(), flags=re.MULTILINE):
            if "scripts/sample_fg.py" in body:
                found = re.search(r"replica=(\d+)", body)
                replicas[name] = int(found.group(1)) if found else 0
    assert set(replicas) == {"sample_fg", "sample_fg_score", "sample_fg_fine"}
    assert len(set(replicas.values())) == len(replicas), replicas


def test_no_job_waits_behind_a_job_it_feeds(tmp_path):
    """Snakemake starts the ready job of the highest priority: a rule of lower priority than one downstream
    of it would hold that one back while other ready jobs run (the T0 chain to DiffSim waited 4 minutes
    for its mapping behind the oracles' fits before the mapping got the chain's priority)."""
    priorities = rule_priorities()
    assert priorities["refine_diffsim"] > priorities["fit_oracle"] > priorities["cgmd"] == 0
    edges = default_rule_edges(tmp_path)
    assert {"map_cg", "fit", "refine_diffsim", "cgmd"} <= {rule for edge in edges for rule in edge}
    inverted = [(up, down) for up, down in edges if priorities[up] < priorities[down]]
    assert not inverted, inverted


def default_rule_edges(workdir):
    """(upstream rule, downstream rule) of every edge of the default config's rule graph."""
    graph = run_snakemake(workdir, "--rulegraph", "--configfile", str(REPO / "config" / "config.yaml")).stdout
    names = dict(re.findall(r"^\s*(\d+)\[label = \"(\w+)\"", graph, flags=re.MULTILINE))
    edges = [(names[a], names[b]) for a, b in re.findall(r"^\s*(\d+) -> (\d+)$", graph, flags=re.MULTILINE)]
    assert edges, graph[-2000:]
    return edges


def test_a_structural_setting_reaches_no_friction_and_no_cg_md(tmp_path):
    """The default's fitted friction reads the FG diffusion of rule diffusion_fg: nothing downstream of the
    FG structure (RDF, ADF settings) refits a friction or reruns a CG MD run (before, a new RDF bin width
    reran 101 jobs, every CG MD run among them)."""
    edges = default_rule_edges(tmp_path)
    downstream, frontier = set(), {"observables_fg"}
    while frontier:
        frontier = {down for up, down in edges if up in frontier} - downstream
        downstream |= frontier
    assert {"transferability", "figures"} <= downstream
    assert not downstream & {"fit_friction", "friction_law", "cgmd", "dynamics_cg"}, downstream
    assert ("diffusion_fg", "fit_friction") in edges


def test_paper_config_dry_run(tmp_path):
    result = run_snakemake(tmp_path, "--dry-run", "--cores", "2", "--configfile", str(REPO / "config" / "paper.yaml"))
    out = result.stdout + result.stderr
    assert "Config file(s): [PosixPath('" + str(REPO / "config" / "paper.yaml") + "')]" in out  # no default merged in
    assert "refine_diffsim" in out and "fit_oracle" in out


def test_sweep_from_the_command_line_dry_run(tmp_path):
    """The README's sweep command: a nested --config value (a dotted key, sweep.table=..., is not
    valid Snakemake syntax) runs one fit per row of the table on top of the default config."""
    result = run_snakemake(tmp_path, "--dry-run", "--cores", "2", "--config", "sweep={table: config/sweep.tsv}")
    out = result.stdout + result.stderr
    rows = len(io.read_table(REPO / "config" / "sweep.tsv"))
    assert re.search(rf"^sweep_fit\s+{rows}$", out, flags=re.MULTILINE), out[-3000:]
    assert re.search(r"^sweep_summary\s+1$", out, flags=re.MULTILINE)


def test_bad_config_stops_before_any_job(tmp_path):
    bad = yaml.safe_load((REPO / "config" / "test.yaml").read_text())
    bad["temperatures"] = [-10, 300]
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(bad))
    result = run_snakemake(tmp_path, "--cores", "1", "--configfile", str(tmp_path / "bad.yaml"), check=False)
    assert result.returncode != 0
    assert "'temperatures[0]' = -10: must be > 0" in result.stdout + result.stderr
    assert not (tmp_path / "results").exists()


@pytest.mark.slow
@pytest.mark.parametrize("temperature", ["280", "320"])
def test_tiny_pipeline_outputs_are_sane(tiny_run, temperature):
    results = tiny_run / "results"
    frames = io.load_frames(results / f"fg/T{temperature}/frames.npz")
    beads = io.load_frames(results / f"cg/T{temperature}/beads.npz")
    assert frames["positions"].shape == (40, 384, 3) and beads["positions"].shape == (40, 128, 3)
    assert float(beads["temperature"]) == float(temperature)
    # mapped forces: every bead's force is finite and the whole box's net force is small
    net = np.linalg.norm(beads["forces"].sum(axis=1), axis=1)
    assert np.all(net < 0.05 * np.linalg.norm(beads["forces"], axis=2).sum(axis=1))
    trajectory = mdtraj.load(str(results / f"cg/T{temperature}/beads.dcd"), top=str(results / f"cg/T{temperature}/beads.pdb"))
    assert trajectory.n_atoms == 128 and trajectory.n_frames == 40
    summary = json.loads((results / f"observables/fg/T{temperature}/summary.json").read_text())
    assert -50 < summary["potential_energy"]["mean_per_molecule_kJ_per_mol"] < -38
    assert 0.5e-3 < summary["diffusion"]["D_nm2_per_ps"] < 10e-3  # water: 2-5e-3 nm^2/ps
    rdf = io.read_table(results / f"observables/fg/T{temperature}/rdf_oo.tsv")
    peak = rdf["r_nm"][rdf["g"].idxmax()]
    assert 0.26 < peak < 0.30 and 2.0 < rdf["g"].max() < 4.5  # first O-O shell of liquid water
    assert rdf["g"][rdf["r_nm"] < 0.22].max() == 0.0
    adf = io.read_table(results / f"observables/fg/T{temperature}/adf.tsv")
    assert np.sum(adf["p_per_deg"]) == pytest.approx(1.0)
    assert (results / f"benchmarks/fg/T{temperature}/sample_fg.tsv").exists()
    assert "production at" in (tiny_run / f"logs/fg/T{temperature}/sample_fg.log").read_text()


@pytest.mark.slow
def test_tiny_pipeline_fits_its_friction_under_each_law_with_that_laws_settings(tiny_run, tmp_path):
    """cgmd.friction: fit, short trial runs: each law's record is made and carries its own settings
    (the params give a record only its law's: workflow/rules/friction.smk)."""
    workdir = tmp_path / "tiny"
    shutil.copytree(tiny_run, workdir, symlinks=True)
    config = yaml.safe_load((REPO / "config" / "test.yaml").read_text())
    config["cgmd"].update(friction="fit", friction_fit_time=1.0, friction_fit_start=0.2, friction_fit_end=0.8,
                          entropy_alpha=0.7, force_acf_max_lag=0.3)
    config["dynamics"] = dict(config.get("dynamics", {}), fine_equilibration=1.0, fine_production=1.0)
    records = {}
    for law in ("constant", "entropy", "force_acf"):
        path = workdir / f"{law}.yaml"
        path.write_text(yaml.safe_dump(dict(config, cgmd=dict(config["cgmd"], friction_law=law))))
        run_snakemake(workdir, "results/cgmd/fm_ref/friction.json", "--cores", "2", "--configfile", str(path))
        records[law] = json.loads((workdir / "results/cgmd/fm_ref/friction.json").read_text())
    temperatures = {f"{t:g}" for t in config["temperatures"]}
    for law, record in records.items():
        assert record["law"] == law and set(record["friction_by_temperature"]) == temperatures
    for law in ("constant", "entropy"):  # at T0 the friction at which the T0 line gives D_FG(T0)
        assert records[law]["friction_by_temperature"]["300"] == records[law]["friction_T0_per_ps"]
    assert len(set(records["constant"]["friction_by_temperature"].values())) == 1
    assert records["entropy"]["entropy"]["alpha"] == 0.7
    assert 0 < records["force_acf"]["force_acf"]["plateau_lag_ps"] <= 0.3


@pytest.mark.slow
def test_tiny_pipeline_figure_and_nothing_left_to_do(tiny_run):
    figure = tiny_run / "results/figures/fg_observables.png"
    assert figure.stat().st_size > 20_000
    assert (tiny_run / "results/figures/fg_observables.pdf").exists()
    result = run_snakemake(tiny_run, "--dry-run", "--cores", "2", "--configfile", str(REPO / "config" / "test.yaml"))
    assert "Nothing to be done" in result.stdout + result.stderr


@pytest.mark.slow
def test_tiny_pipeline_fits_every_model_kind(tiny_run):
    from thermocg import nn

    results = tiny_run / "results"
    kinds = {}
    for path in results.glob("models/**/model.pt"):
        model, metadata = nn.load_model(path)
        kinds.setdefault(metadata["kind"], []).append(metadata["name"])
        assert metadata["T0_K"] == 300 and len(metadata["data_sha256"]) == 64
    assert sorted(kinds) == ["em", "fm_oracle", "fm_ref", "mtfm", "trf1", "trf2"]
    # fm_oracle at 280 and 320 K: at T0 = 300 K it is fm_ref (the same recipe on the same frames)
    assert len(kinds["fm_oracle"]) == 2 and sorted(kinds["trf1"]) == ["trf1", "trf1_global"]
    assert not (results / "models/fm_oracle/T300").exists()
    forces = io.read_table(results / "metrics/forces.tsv")
    assert set(forces["model"]) >= {"fm_ref", "em", "trf1", "trf1_global", "trf2", "mtfm", "fm_oracle"}
    assert np.all(np.isfinite(forces["force_rmse"])) and np.all(forces["force_rmse"] > 0)
    response = io.read_table(results / "metrics/thermal_response.tsv")
    assert set(response["estimator"].dropna()) >= {"local", "global"}
    # fm_ref has no temperature dependence: its dF/dbeta is exactly zero, which scores exactly 0
    reference = response[response["kind"] == "fm_ref"].iloc[0]
    assert reference["score"] == 0.0 and reference["score_se"] == 0.0
    # every model ranked against the best, paired: the best's gap is 0, no gap is negative
    assert np.all(np.isfinite(response["score"])) and response["score_below_best"].min() == 0.0
    assert np.all(response["score_below_best"] >= 0) and np.all(response["score_below_best_se"] >= 0)
    # the score's frames: the T0 run's test frames and every frame of the independent score run
    from thermocg import config, metrics
    training = config.load(REPO / "config" / "test.yaml")["training"]
    n_test = len(metrics.test_indices(len(io.load_frames(results / "cg/T300/beads.npz")["time"]), training))
    n_score = len(io.load_frames(results / "cg/T300/score/beads.npz")["time"])
    assert n_score == 10 and set(response["n_frames"]) == {n_test + n_score}
    assert np.all(np.isfinite(response["score"]))
    # the radial profile: FG and every model between the sampled neighbours of T0, its RMS in the response table
    radial = io.read_table(results / "metrics/radial_response.tsv")
    assert set(radial["model"]) == {"FG"} | set(response["model"])
    assert np.all(np.isfinite(radial["response"])) and np.all(radial.loc[radial["model"] != "FG", "error_se"] > 0)
    assert np.all(response["radial_rmse"] > 0) and np.all(response["radial_rmse_noise"] > 0)
    # trf2 is a closed-form fit on fm_ref's W0: one row per ridge candidate and fit, one chosen per fit
    # (e; the squared residual that centres y2; W1; and, in the default reduced series, the curvature of beta W)
    curve = io.read_table(results / "models/trf2/learning_curve.tsv")
    assert {"relative_ridge", "cross_validation_mse", "gain_se", "chosen", "head"} <= set(curve.columns)
    assert curve.groupby("head")["chosen"].sum().to_dict() == {"W1": 1, "W2 + 2 W1/beta0": 1, "e": 1, "squared_residual": 1}
    fm_ref, _ = nn.load_model(results / "models/fm_ref/model.pt")
    trf2, metadata = nn.load_model(results / "models/trf2/model.pt")
    shared = {k: v for k, v in fm_ref.state_dict().items()}
    assert all(torch.equal(trf2.state_dict()[k], v) for k, v in shared.items())  # the same W0, trunk and prior
    assert metadata["spec"]["response"] == "network" and trf2.config["pair_heads"] == []
    trf1, metadata = nn.load_model(results / "models/trf1/model.pt")
    assert metadata["spec"]["response"] == "radial" and trf1.config["pair_heads"] == ["W1"]


@pytest.mark.slow
def test_tiny_pipeline_runs_cg_md_and_compares_with_fg(tiny_run):
    results = tiny_run / "results"
    table = io.read_table(results / "metrics/transferability.tsv")
    simulated = {"fm_ref", "fm_oracle", "em", "trf1", "trf1_global", "trf2", "mtfm", "trf2_diffsim"}
    assert set(table["model"]) == simulated
    assert len(table) == len(simulated) * 3
    assert np.all(table["eps_g"] > 0) and np.all(table["D_cg"] > 0)
    # every CG run is a liquid: its RDF is closer to the FG one than an ideal gas's (g = 1) is
    for t, rows in table.groupby("T_K"):
        fg = io.read_table(results / f"observables/fg/T{t:g}/rdf_com.tsv")
        ideal_gas = transfer.rdf_error(fg["r_nm"], np.ones(len(fg)), fg["r_nm"], fg["g"])
        assert np.all(rows["eps_g"] < ideal_gas), (t, ideal_gas)
    assert np.all(np.isfinite(table["eps_g_spread"]) & np.isfinite(table["eps_a_spread"]))  # two halves of each run
    for eps in ("eps_g", "eps_a"):  # the halves' noise, taken out, leaves less than eps
        assert np.all(np.isfinite(table[f"{eps}_excess"]) & (table[f"{eps}_excess"] < table[eps]))
    # at T0 the models with fm_ref's force field there report fm_ref's run, and have no run of their own
    at_t0 = table[table["T_K"] == 300].set_index("model")
    twins = ["fm_oracle", "em", "trf1", "trf1_global", "trf2"]
    assert (at_t0.loc[twins, "cg_run"] == "fm_ref").all() and (at_t0.loc[twins, "eps_g"] == at_t0.loc["fm_ref", "eps_g"]).all()
    assert (table[table["T_K"] != 300]["cg_run"] == table[table["T_K"] != 300]["model"]).all()
    assert not any((results / f"cgmd/{model}/T300").exists() for model in twins)
    thermo = io.read_table(results / "cgmd/trf2/T320/thermo.tsv")
    assert abs(thermo["T_kin_K"].mean() - 320) < 60  # 128 beads, 2 ps: loose (test_cgmd checks T != T0 to 15 K)
    # DiffSim moved the refined read-outs (W0's and W1's) and nothing else: W2 and the trunk are trf2's
    trf2, _ = nn.load_model(results / "models/trf2/model.pt")
    refined, _ = nn.load_model(results / "models/trf2_diffsim/model.pt")
    moved = {k for k, v in trf2.state_dict().items() if not torch.equal(refined.state_dict()[k], v)}
    assert moved and all(k.startswith(("heads.W0.", "heads.W1.")) for k in moved), moved
    assert (results / "models/trf2_diffsim/loss_curve.tsv").exists()
    for name in ("transferability", "rdf_adf_overlays", "force_errors", "thermal_response", "radial_response",
                 "diffusion", "diffsim_curves", "timings", "learning_curves"):
        assert (results / f"figures/{name}.png").stat().st_size > 10_000
        assert (results / f"figures/{name}.pdf").exists()


@pytest.mark.slow
def test_tiny_pipeline_parameter_sweep(tiny_run):
    summary = io.read_table(tiny_run / "results/sweep/summary.tsv")
    assert len(summary) == 2 and set(summary["kind"]) == {"trf1", "trf2"}
    assert set(summary["estimator"]) == {"local", "global"} and np.all(summary["n_training_frames"] == 14)
    # judged as the pipeline's own table judges its models: the same held-out frames and centring
    response = io.read_table(tiny_run / "results/metrics/thermal_response.tsv")
    assert set(summary["n_score_frames"]) == set(response["n_frames"]) and set(summary["centring_model"]) == set(
        response["centring_model"])
    assert np.all(np.isfinite(summary["score"])) and np.all(summary["score_se"] >= 0)
    assert summary["score_below_best"].min() == 0.0 and np.all(summary["score_below_best"] >= 0)
    assert (tiny_run / "results/figures/sweep.png").stat().st_size > 10_000


@pytest.mark.slow
def test_cross_validation_gap_benchmark_without_a_gap_is_the_pipelines_fit(tiny_run):
    """benchmarks/bench_cv_gap.py on the tiny run: with no gap it rebuilds the normal equations and
    chooses every ridge as the pipeline's fit of trf2 did (its learning-curve table)."""
    import subprocess
    import sys

    subprocess.run([sys.executable, str(REPO / "benchmarks/bench_cv_gap.py"), "--config", str(REPO / "config/test.yaml"),
                    "--model", "trf2", "--gaps", "0", "3"], cwd=tiny_run, check=True, capture_output=True, text=True,
                   timeout=600)
    table = io.read_table(tiny_run / "benchmarks/results/cv_gap.tsv")
    fit = io.read_table(tiny_run / "results/models/trf2/learning_curve.tsv")
    chosen = fit[fit["chosen"].astype(bool)].set_index("head")
    no_gap = table[table["gap_frames"] == 0].set_index("head")
    assert set(no_gap.index) == {"e", "W1", "W2"} and len(table) == 6
    for head, fit_head in (("e", "e"), ("W1", "W1"), ("W2", "W2 + 2 W1/beta0")):
        assert no_gap.loc[head, "chosen_relative_ridge"] == chosen.loc[fit_head, "relative_ridge"]
        assert no_gap.loc[head, "cross_validation_mse"] == pytest.approx(chosen.loc[fit_head, "cross_validation_mse"],
                                                                         rel=1e-3)  # the table keeps 4 digits


@pytest.mark.slow
def test_force_matching_against_structure_benchmark(tiny_run):
    """benchmarks/bench_fm_structure.py on the tiny run: a model with fm_ref's W0 has fm_ref's forces at
    T0 (dbeta = 0), so its paired difference is exactly zero, as is that of fm_ref's file given by
    path (which has no eps); the frames are the score's."""
    import subprocess
    import sys

    subprocess.run([sys.executable, str(REPO / "benchmarks/bench_fm_structure.py"), "--config",
                    str(REPO / "config/test.yaml"), "--models", "fm_ref", "trf1", "mtfm",
                    "--model-file", "fm_ref_file", "results/models/fm_ref/model.pt"],
                   cwd=tiny_run, check=True, capture_output=True, text=True, timeout=600)
    table = io.read_table(tiny_run / "benchmarks/results/fm_structure.tsv").set_index("model")
    assert table.loc["fm_ref", "mse_minus_first"] == 0 and table.loc["trf1", "mse_minus_first"] == 0
    assert table.loc["fm_ref_file", "mse_minus_first"] == 0 and np.isnan(table.loc["fm_ref_file", "eps_a_T0"])
    assert table.loc["trf1", "force_mse"] == table.loc["fm_ref", "force_mse"]
    assert table.loc["mtfm", "mse_minus_first"] != 0 and table.loc["mtfm", "mse_minus_first_se"] > 0
    response = io.read_table(tiny_run / "results/metrics/thermal_response.tsv")
    assert set(table["n_frames"]) == set(response["n_frames"])
    transfer = io.read_table(tiny_run / "results/metrics/transferability.tsv")
    at_t0 = transfer[transfer["T_K"] == 300].set_index("model")
    assert table.loc["mtfm", "eps_a_T0"] == pytest.approx(at_t0.loc["mtfm", "eps_a"])


@pytest.mark.slow
def test_mean_force_benchmark_replaces_only_the_training_frames_forces_by_restrained_averages(tiny_run, tmp_path):
    """benchmarks/bench_mean_force.py on the tiny run's first three T0 training frames: the archive it
    writes is the run's with only those frames' forces changed, and their positions moved to the beads'
    mean positions, under a thousandth of a nm away; averaging removes most of one sample's noise; the
    average balances the mean restraint force (up to the momentum change over 0.2 ps); the frame's own
    mapped force is one sample."""
    import subprocess
    import sys

    subprocess.run([sys.executable, str(REPO / "benchmarks/bench_mean_force.py"), "--config", str(REPO / "config/test.yaml"),
                    "--out", str(tmp_path), "--max-frames", "3", "--duration", "0.2", "--threads", "1"],
                   cwd=tiny_run, check=True, capture_output=True, text=True, timeout=600)
    own = io.load_frames(tiny_run / "results/cg/T300/beads.npz")
    written = io.load_frames(tmp_path / "cg/T300/beads.npz")
    changed = np.flatnonzero((written["forces"] != own["forces"]).any(axis=(1, 2)))
    np.testing.assert_array_equal(changed, [0, 2, 4])  # every frame_stride-th frame, from the first
    moved = np.sqrt(((written["positions"] - own["positions"]) ** 2).sum(-1).mean(-1))
    np.testing.assert_array_equal(np.flatnonzero(moved), [0, 2, 4])
    assert moved.max() < 1e-3
    table = io.read_table(tiny_run / "benchmarks/results/mean_force.tsv")
    assert list(table["frame"]) == [0, 2, 4]
    assert (table["average_noise_halves"] < table["sample_variance"] / 4).all()
    assert (0.5 < table["own_target_noise"] / table["sample_variance"]).all()
    assert (table["own_target_noise"] / table["sample_variance"] < 2).all()
    assert (table["balance_rms"] < 0.5 * table["mean_force_rms"]).all()
    assert (table["bead_shift_nm"] < 1e-3).all()


def test_body_order_benchmarks_three_body_basis_is_the_sum_over_triplets(monkeypatch):
    """benchmarks/bench_body_order.py's three-body basis energies against a direct loop over every
    bead i and neighbours j, k within rc3 (j = k included) of f_a(r_ij) f_b(r_ik) P_l(cos theta_jik),
    with minimum-image displacements, on random beads in a periodic box."""
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    import bench_body_order
    from thermocg.neighbors import NeighborList
    from thermocg.pair import pinned_spline_basis

    box = torch.tensor([1.1, 1.0, 1.2], dtype=torch.float64)
    positions = torch.rand(12, 3, generator=torch.Generator().manual_seed(3), dtype=torch.float64) * box
    cutoff, order, n_radial, r_min = 0.45, 3, 3, 0.05
    i, j, shift = NeighborList(cutoff)(positions, box)
    got = bench_body_order.three_body_energies(positions, i, j, shift, len(positions), cutoff, order, n_radial, r_min)

    legendre = [lambda c: 1.0, lambda c: c, lambda c: (3 * c**2 - 1) / 2, lambda c: (5 * c**3 - 3 * c) / 2]
    expected = np.zeros((order + 1, n_radial, n_radial))
    for centre in range(len(positions)):
        vectors = positions - positions[centre]
        vectors = vectors - box * torch.round(vectors / box)
        distances = vectors.norm(dim=1)
        shell = [k for k in range(len(positions)) if k != centre and distances[k] < cutoff]
        radial = pinned_spline_basis(distances[shell], r_min, cutoff, n_radial).numpy()
        for a, first in enumerate(shell):
            for b, second in enumerate(shell):
                cosine = float(vectors[first] @ vectors[second] / (distances[first] * distances[second]))
                for l in range(order + 1):
                    expected[l] += legendre[l](cosine) * np.outer(radial[a], radial[b])
    upper = np.triu_indices(n_radial)
    assert expected[0].max() > 0  # some beads have neighbours in their shell
    np.testing.assert_allclose(got.numpy(), np.concatenate([e[upper] for e in expected]), rtol=1e-10, atol=1e-12)


@pytest.mark.slow
def test_body_order_benchmark_fits_a_pair_force_field_exactly_and_scores_a_model(tiny_run, tmp_path):
    """benchmarks/bench_body_order.py on the tiny run's T0 frames, with the forces replaced by those
    of a known pair potential (thermocg.pair.PairCorrection on the benchmark's pair splines, its
    forces by autograd through its own code): the pair basis, and the pair plus three-body basis,
    reproduce them to a relative MSE of 1e-6; fm_ref's network scores a relative MSE between 0 and 1
    on the real mapped forces."""
    import subprocess
    import sys

    from thermocg.neighbors import NeighborList
    from thermocg.pair import PairCorrection

    results = tiny_run / "results"
    beads = io.load_frames(results / "cg/T300/beads.npz")
    pair_cutoff, n_basis, r_min = 0.7, 12, 0.23
    potential = PairCorrection(pair_cutoff, n_basis=n_basis, r_min=r_min)
    with torch.no_grad():
        potential.a.copy_(torch.sin(torch.linspace(0.0, 6.0, n_basis, dtype=torch.float64)) * 5.0)  # kJ/mol
    forces = []
    for frame, box in zip(beads["positions"], beads["box"]):
        x = torch.tensor(frame, requires_grad=True)
        (gradient,) = torch.autograd.grad(potential(x, *NeighborList(pair_cutoff)(x, torch.tensor(box))), x)
        forces.append(-gradient.numpy())
    known = {k: v for k, v in beads.items() if k != "units"}
    io.save_frames(tmp_path / "beads.npz", **{**known, "forces": np.stack(forces)})

    def run(archive, *options):
        subprocess.run([sys.executable, str(REPO / "benchmarks/bench_body_order.py"), "--config", str(REPO / "config/test.yaml"),
                        "--archive", str(archive), "--pair-cutoff", str(pair_cutoff), "--pair-basis", str(n_basis),
                        "--r-min", str(r_min), *options],
                       cwd=tiny_run, check=True, capture_output=True, text=True, timeout=600)
        return io.read_table(tiny_run / "benchmarks/results/body_order.tsv").set_index("basis")

    table = run(tmp_path / "beads.npz", "--three-body", "none", "0.36:2")
    assert len(table) == 2
    assert (table[["train_relative_mse", "validation_relative_mse"]] < 1e-6).all().all()
    table = run(results / "cg/T300/beads.npz", "--three-body", "none", "--model-file", "fm_ref",
                str(results / "models/fm_ref/model.pt"))
    assert 0 < table.loc["fm_ref", "validation_relative_mse"] < 1
    assert 0 < table.loc["pairs", "validation_relative_mse"] < 1


@pytest.mark.slow
def test_core_force_benchmark_gives_each_models_error_on_the_fg_frames(tiny_run):
    """benchmarks/bench_prior.py on the tiny run: at T0 trf1 (fm_ref's W0, dbeta = 0) and the oracle
    (fm_ref's model there) have fm_ref's pair-projected force error to the bit; away from T0 the
    oracle's own model differs, and trf1 differs exactly when its thermal term is not zero (the tiny
    run's frames may not determine one); the FG profile and the errors are finite where there are pairs."""
    import subprocess
    import sys

    subprocess.run([sys.executable, str(REPO / "benchmarks/bench_prior.py"), "--config", str(REPO / "config/test.yaml"),
                    "--models", "fm_ref", "trf1", "fm_oracle"],
                   cwd=tiny_run, check=True, capture_output=True, text=True, timeout=600)
    table = io.read_table(tiny_run / "benchmarks/results/prior.tsv")
    first_shell = table[table["pairs_per_frame_T300"] >= 1.0]
    assert len(first_shell) >= 5 and np.isfinite(first_shell["P_T300"]).all()
    for model in ("trf1", "fm_oracle"):
        np.testing.assert_array_equal(first_shell[f"{model}_minus_FG_T300"], first_shell["fm_ref_minus_FG_T300"])
    assert (first_shell["fm_ref_minus_FG_T300_se"] > 0).all()
    hot = table[table["pairs_per_frame_T320"] >= 1.0]
    assert not np.allclose(hot["fm_oracle_minus_FG_T320"], hot["fm_ref_minus_FG_T320"])
    trf1, _ = nn.load_model(tiny_run / "results/models/trf1/model.pt")
    thermal_term = bool(trf1.heads["W1"].coefficients.detach().abs().sum() > 0)
    assert np.array_equal(hot["trf1_minus_FG_T320"], hot["fm_ref_minus_FG_T320"]) != thermal_term


@pytest.mark.slow
def test_ideal_response_benchmark_recovers_a_known_w1_and_tabulates_the_models_own(tiny_run, monkeypatch):
    """benchmarks/bench_ideal_response.py on the tiny run. Known answer: the force difference that a
    radial W1 with known coefficients makes at 320 K is fitted back to that W1 wherever the T0 frames
    have pairs. The script's table gives trf1's own pair function and a finite fit per oracle temperature."""
    import subprocess
    import sys

    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    import bench_ideal_response

    results = tiny_run / "results"
    model, _ = nn.load_model(results / "models/trf1/model.pt")
    beads = io.load_frames(results / "cg/T300/beads.npz")
    positions, box = beads["positions"][::4], beads["box"][::4]
    known = np.sin(np.linspace(0.0, np.pi, model.heads["W1"].n_basis)) * 3.0  # (kJ/mol)^2
    dbeta = float(units.beta(320.0)) - model.reference_beta
    c1 = float(model.expansion_coefficients(torch.tensor(dbeta, dtype=torch.float64))[0])
    at_t0 = metrics.model_forces(model, positions, box, 0.0)
    response.set_coefficients(model, "W1", known)
    differences = metrics.model_forces(model, positions, box, dbeta) - at_t0
    fitted = bench_ideal_response.fit_radial_w1(model, positions, box, differences, c1)
    r = np.linspace(0.28, 0.55, 28)  # T0 frames have pairs at every one of these distances
    expected = bench_ideal_response.pair_function(model, known, r)
    np.testing.assert_allclose(bench_ideal_response.pair_function(model, fitted, r), expected, atol=1e-3 * np.abs(expected).max())

    subprocess.run([sys.executable, str(REPO / "benchmarks/bench_ideal_response.py"), "--config", str(REPO / "config/test.yaml"),
                    "--md-temperatures"], cwd=tiny_run, check=True, capture_output=True, text=True, timeout=600)
    table = io.read_table(tiny_run / "benchmarks/results/ideal_response.tsv")
    own, _ = nn.load_model(results / "models/trf1/model.pt")
    np.testing.assert_allclose(table["trf1"], bench_ideal_response.pair_function(own, own.heads["W1"].coefficients.detach(), table["r_nm"]))
    assert list(table.columns) == ["r_nm", "trf1", "secant_T280", "secant_T320"]
    assert np.isfinite(table[["secant_T280", "secant_T320"]]).all().all()
    assert not (tiny_run / "benchmarks/results/ideal_response_md.tsv").exists()


@pytest.mark.slow
def test_training_seed_benchmark_reproduces_the_runs_eps_and_retrains_with_another_seed(tiny_run):
    """benchmarks/bench_training_seed.py on the tiny run: with the config's seed it takes the run's
    models, and its CG runs with the config's CG seed give the transferability table's eps to the
    last digits; fm_ref retrained with another seed gives other numbers."""
    import subprocess
    import sys

    subprocess.run([sys.executable, str(REPO / "benchmarks/bench_training_seed.py"), "--config", str(REPO / "config/test.yaml"),
                    "--training-seeds", "8", "--models", "fm_ref", "trf1", "--temperatures", "320", "--cg-seeds", "7"],
                   cwd=tiny_run, check=True, capture_output=True, text=True, timeout=900)
    table = io.read_table(tiny_run / "benchmarks/results/training_seed.tsv").set_index(["training_seed", "model"])
    transfer = io.read_table(tiny_run / "results/metrics/transferability.tsv").query("T_K == 320").set_index("model")
    for model in ("fm_ref", "trf1"):
        for column in ("eps_g", "eps_a"):
            assert table.loc[(7, model), column] == pytest.approx(transfer.loc[model, column], rel=1e-6)
    assert table.loc[(8, "fm_ref"), "eps_g"] != pytest.approx(table.loc[(7, "fm_ref"), "eps_g"], rel=1e-6)


@pytest.mark.slow
def test_diffsim_seeds_benchmark_reproduces_the_runs_refinement_and_refines_with_another_seed(tiny_run):
    """benchmarks/bench_diffsim_seeds.py on the tiny run: the config's seed gives the run's
    trf2_diffsim to the last bit, another seed another refinement; each gets the run's friction."""
    import subprocess
    import sys

    subprocess.run([sys.executable, str(REPO / "benchmarks/bench_diffsim_seeds.py"), "--config", str(REPO / "config/test.yaml"),
                    "--seeds", "7", "8"], cwd=tiny_run, check=True, capture_output=True, text=True, timeout=900)
    results = tiny_run / "results"
    run, _ = nn.load_model(results / "models/trf2_diffsim/model.pt")
    same, _ = nn.load_model(results / "models/trf2_diffsim_s7/model.pt")
    other, metadata = nn.load_model(results / "models/trf2_diffsim_s8/model.pt")
    assert all(torch.equal(same.state_dict()[k], v) for k, v in run.state_dict().items())
    assert not torch.equal(other.state_dict()["heads.W1.readouts.0.weight"], run.state_dict()["heads.W1.readouts.0.weight"])
    assert metadata["refined_from"] == "trf2"
    friction = (results / "cgmd/trf2_diffsim/friction.json").read_text()
    assert (results / "cgmd/trf2_diffsim_s8/friction.json").read_text() == friction


@pytest.mark.slow
def test_data_efficiency_benchmark_takes_another_t0_run_and_reproduces_the_runs_fm_ref(tiny_run):
    """benchmarks/bench_data_efficiency.py on the tiny run, its own T0 frames at stride 2 beside a
    second T0 "run" made of every second frame at stride 1: the same frames, so the same models and
    eps, told apart by their frame spacing; at the config's frame_stride (2) fm_ref is the run's own,
    so with the config's CG seed (7) and friction its eps are the transferability table's; the
    summary averages the two CG seeds."""
    import subprocess
    import sys

    every_second = tiny_run / "every_second" / "cg" / "T300"
    every_second.mkdir(parents=True)
    per_frame = {"positions", "forces", "potential_energy", "box", "time", "bead_energies"}
    for name in ("beads.npz", "molecule_energies.npz"):
        data = np.load(tiny_run / "results/cg/T300" / name)
        np.savez(every_second / name, **{k: data[k][::2] if k in per_frame else data[k] for k in data.files})
    command = [sys.executable, str(REPO / "benchmarks/bench_data_efficiency.py"), "--config", str(REPO / "config/test.yaml"),
               "--temperatures", "320", "--models", "trf1", "--strides", "2"]

    refused = subprocess.run(command + ["--t0-run", "every_second"], check=False, cwd=tiny_run, capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2 and "one or more strides" in refused.stderr

    subprocess.run(command + ["--t0-run", "every_second", "1", "--cg-seeds", "7", "8"], cwd=tiny_run, check=True,
                   capture_output=True, text=True, timeout=900)
    runs = io.read_table(tiny_run / "benchmarks/results/data_efficiency_runs.tsv")
    assert sorted(runs["t0_run"].unique()) == ["4 ps, frames 0.1 ps apart", "4 ps, frames 0.2 ps apart"]
    assert runs["n_frames"].nunique() == 1
    for (model, seed), rows in runs.groupby(["model", "cg_seed"]):
        assert len(rows) == 2 and rows["eps_g"].nunique() == 1 and rows["eps_a"].nunique() == 1, (model, seed)
    transfer = io.read_table(tiny_run / "results/metrics/transferability.tsv").query("T_K == 320").set_index("model")
    fm_ref = runs.query("model == 'fm_ref' and cg_seed == 7").iloc[0]
    for column in ("eps_g", "eps_a"):  # the tables have 4 significant digits
        assert fm_ref[column] == float(f"{transfer.loc['fm_ref', column]:.4g}")
    assert runs.query("model == 'fm_ref' and cg_seed == 8").iloc[0]["eps_g"] != fm_ref["eps_g"]
    table = io.read_table(tiny_run / "benchmarks/results/data_efficiency.tsv")
    assert len(table) == len(runs) // 2 and (table["n_cg_seeds"] == 2).all()
    mean = runs.groupby(["t0_run", "model"])["eps_a"].mean()
    for _, row in table.iterrows():
        assert row["eps_a"] == pytest.approx(mean[row["t0_run"], row["model"]], rel=1e-3)
        assert row["eps_a_se"] > 0
    assert (tiny_run / "benchmarks/results/data_efficiency.png").stat().st_size > 0


@pytest.mark.slow
def test_data_efficiency_benchmark_with_a_fixed_w0_refits_only_the_closed_forms(tiny_run):
    """bench_data_efficiency.py --w0 with the tiny run's own fm_ref: at stride 1 (the config's
    response_frame_stride) trf1 is the run's own trf1 to the bit, at stride 2 its closed forms are fitted
    on other frames and its W0 is the same; fm_ref is neither retrained nor simulated twice (the second
    point's runs are the first's), so both points have its same eps; the runs say "W0 fixed"
    and are written apart (data_efficiency_w0*); --w0 with --t0-run is refused."""
    import subprocess
    import sys

    command = [sys.executable, str(REPO / "benchmarks/bench_data_efficiency.py"), "--config", str(REPO / "config/test.yaml"),
               "--temperatures", "320", "--models", "trf1", "--strides", "2", "1", "--cg-seeds", "7",
               "--w0", "results/models/fm_ref/model.pt"]
    refused = subprocess.run(command + ["--t0-run", "results", "1"], check=False, cwd=tiny_run, capture_output=True,
                             text=True, timeout=120)
    assert refused.returncode == 2 and "--w0" in refused.stderr
    subprocess.run(command, cwd=tiny_run, check=True, capture_output=True, text=True, timeout=900)
    work = tiny_run / "benchmarks/results/data_efficiency_w0/run0"
    own = nn.load_model(tiny_run / "results/models/trf1/model.pt")[0].state_dict()
    refit = nn.load_model(work / "stride1/models/trf1.pt")[0].state_dict()
    assert all(torch.equal(refit[k], v) for k, v in own.items())
    other = nn.load_model(work / "stride2/models/trf1.pt")[0].state_dict()
    assert any(not torch.equal(other[k], v) for k, v in own.items() if k.startswith("heads.e."))  # fitted on other frames
    assert all(torch.equal(other[k], v) for k, v in own.items() if k.startswith(("trunks.", "heads.W0.")))
    assert not (work / "stride2/models/fm_ref.pt").exists() and (work / "stride1/cg_seed7/fm_ref").is_symlink()
    runs = io.read_table(tiny_run / "benchmarks/results/data_efficiency_w0_runs.tsv")
    assert runs["t0_run"].str.endswith("W0 fixed").all() and sorted(runs["stride"].unique()) == [1, 2]
    fm_ref = runs.query("model == 'fm_ref'")
    assert len(fm_ref) == 2 and fm_ref["eps_g"].nunique() == 1 and fm_ref["eps_a"].nunique() == 1


@pytest.mark.slow
def test_excess_error_benchmark_reproduces_the_runs_eps_and_takes_the_noise_out(tiny_run):
    """benchmarks/bench_excess_error.py on the tiny run: its CG run with the config's seed (7) is the
    run's own, so its eps against the FG run are the transferability table's; the means over three
    seeds against four FG blocks have eps above the noise they carry and an excess below eps, with a
    standard error; fm_ref's ratio to itself is 1; too few seeds, a missing model file and FG blocks
    too long for three are refused before any CG run."""
    import subprocess
    import sys

    command = [sys.executable, str(REPO / "benchmarks/bench_excess_error.py"), "--config", str(REPO / "config/test.yaml"),
               "--temperatures", "320", "--fg-block", "1"]
    refusals = [(["--models", "fm_ref", "--cg-seeds", "7", "8"], "at least 3 different seeds"),
                (["--models", "fm_ref", "no_such_model", "--cg-seeds", "7", "8", "9"], "no_such_model/model.pt"),
                (["--models", "fm_ref", "--cg-seeds", "7", "8", "9", "--fg-block", "2"], "the jackknife needs 3")]
    for arguments, message in refusals:
        refused = subprocess.run(command + arguments, check=False, cwd=tiny_run, capture_output=True, text=True, timeout=300)
        assert refused.returncode != 0 and message in refused.stderr
        assert "CG runs" not in refused.stderr

    subprocess.run(command + ["--models", "fm_ref", "trf1", "--cg-seeds", "7", "8", "9"], cwd=tiny_run, check=True,
                   capture_output=True, text=True, timeout=600)
    runs = io.read_table(tiny_run / "benchmarks/results/excess_error_runs.tsv")
    table = io.read_table(tiny_run / "results/metrics/transferability.tsv").query("T_K == 320").set_index("model")
    own = runs[runs["cg_seed"] == 7].set_index("model")
    for model in ("fm_ref", "trf1"):
        for column in ("eps_g", "eps_a"):
            assert own.loc[model, column] == pytest.approx(table.loc[model, column], rel=1e-6)
    assert runs.groupby("model")["eps_a"].nunique().eq(3).all()  # the seeds are other runs
    excess = io.read_table(tiny_run / "benchmarks/results/excess_error.tsv").set_index("model")
    assert (excess["n_cg"] == 3).all() and (excess["n_fg"] == 4).all()
    for metric in ("g", "a"):
        assert (excess[f"eps_{metric}_noise"] > 0).all()
        assert (excess[f"eps_{metric}_excess"] < excess[f"eps_{metric}"]).all()
        assert (excess[f"eps_{metric}_excess_se"] > 0).all()
        assert excess.loc["fm_ref", f"eps_{metric}_excess_ratio_fm_ref"] == 1.0
        assert np.isfinite(excess.loc["trf1", f"eps_{metric}_excess_ratio_fm_ref_se"])


@pytest.mark.slow
def test_fm_capacity_benchmark_reproduces_the_runs_fm_ref_and_refuses_unknown_keys(tiny_run):
    """benchmarks/bench_fm_capacity.py on the tiny run: a variant without changes is the run's
    fm_ref (same frames, seeds and friction, so the transferability table's eps at T0); a variant
    with every frame trains on more frames and gives another force field; a key the schema does not
    know, or a T0 run that is not there, is refused before any fit."""
    import subprocess
    import sys

    command = [sys.executable, str(REPO / "benchmarks/bench_fm_capacity.py"), "--config", str(REPO / "config/test.yaml"),
               "--variant", "as_run"]
    for extra, message in ((["--variant", "typo", "network.n_featurs=8"], "n_featurs"),
                           (["--t0-run", "long", "no_such_run"], "no_such_run")):
        refused = subprocess.run(command + extra, check=False, cwd=tiny_run, capture_output=True, text=True, timeout=120)
        assert refused.returncode == 2 and message in refused.stderr, refused.stderr

    subprocess.run(command + ["--variant", "every_frame", "training.frame_stride=1", "--t0-run", "again", "results"],
                   cwd=tiny_run, check=True, capture_output=True, text=True, timeout=900)
    table = io.read_table(tiny_run / "benchmarks/results/fm_capacity.tsv").set_index(["frames", "variant"])
    transfer = io.read_table(tiny_run / "results/metrics/transferability.tsv").query("T_K == 300").set_index("model")
    for column in ("eps_g", "eps_a"):  # the tables have 4 significant digits
        assert table.loc[("this run", "as_run"), column] == float(f"{transfer.loc['fm_ref', column]:.4g}")
        for variant in ("as_run", "every_frame"):  # the same frames as another run: the same model
            assert table.loc[("again", variant), column] == table.loc[("this run", variant), column]
    assert table.loc[("this run", "every_frame"), "n_frames"] > table.loc[("this run", "as_run"), "n_frames"]
    assert table.loc[("this run", "every_frame"), "eps_g"] != table.loc[("this run", "as_run"), "eps_g"]
    assert len(table) == 4 and (table["n_runs"] == 1).all() and (table["call_ms"] > 0).all()


@pytest.mark.slow
def test_transferability_numbers_agree_with_an_independent_recomputation(tiny_run):
    """eps_g and D_cg of one (model, T) recomputed from the trajectories with mdtraj and plain numpy."""
    results = tiny_run / "results"
    settings = yaml.safe_load((REPO / "config" / "test.yaml").read_text())
    row = io.read_table(results / "metrics/transferability.tsv").query("model == 'trf2' and T_K == 320").iloc[0]

    first = round(settings["cgmd"]["equilibration"] / settings["cgmd"]["frame_interval"])
    cg = mdtraj.load(str(results / "cgmd/trf2/T320/trajectory.dcd"), top=str(results / "cgmd/trf2/T320/topology.pdb"))[first:]
    fg = mdtraj.load(str(results / "cg/T320/beads.dcd"), top=str(results / "cg/T320/beads.pdb"))
    edge = np.floor(fg.unitcell_lengths.min() / 2 / 0.002) * 0.002
    pairs = fg.topology.select_pairs("all", "all")
    r, g_cg = mdtraj.compute_rdf(cg, pairs, r_range=(0.0, edge), bin_width=0.002)
    _, g_fg = mdtraj.compute_rdf(fg, pairs, r_range=(0.0, edge), bin_width=0.002)
    window = r >= 0.2
    eps_g = np.sqrt(np.mean((g_cg[window] - g_fg[window]) ** 2))
    assert row["eps_g"] == pytest.approx(eps_g, rel=0.02)

    # D from a direct multi-origin MSD of the (never wrapped) CG positions, same fit window
    x = cg.xyz.astype(np.float64)
    dt = settings["cgmd"]["frame_interval"]
    lags = np.arange(1, len(x))
    msd = np.array([np.mean(np.sum((x[k:] - x[:-k]) ** 2, axis=-1)) for k in lags])
    start, end = settings["observables"]["msd_fit_start"], settings["observables"]["msd_fit_end"]
    fit = (lags * dt >= start - 1e-9) & (lags * dt <= end + 1e-9)
    diffusion = np.polyfit(lags[fit] * dt, msd[fit], 1)[0] / 6
    assert row["D_cg"] == pytest.approx(diffusion, rel=0.02)


def test_fg_draws_benchmark_sets_only_the_seed_and_drops_the_dynamics_comparison(monkeypatch):
    """benchmarks/bench_fg_draws.py's config of one draw: the default config with the seed replaced and no
    dynamics comparison (or the config's, when asked), every other key as it is."""
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    import bench_fg_draws

    default = yaml.safe_load((REPO / "config/config.yaml").read_text())
    draw = bench_fg_draws.draw_config(5, with_dynamics=False)
    assert draw["seed"] == 5 and draw["dynamics"]["models"] == []
    assert bench_fg_draws.draw_config(5, with_dynamics=True)["dynamics"] == default["dynamics"]
    draw["dynamics"]["models"] = default["dynamics"]["models"]
    assert {**draw, "seed": default["seed"]} == default


@pytest.mark.slow
def test_fg_draws_benchmark_averages_each_ratio_over_the_draws(tiny_run, tmp_path):
    """benchmarks/bench_fg_draws.py with two draws given by --draw (the tiny run's results, two made-up
    excess tables): per model and T the mean of each ratio over the draws, the sd between them and
    sd / sqrt(2), and each draw's FG floor from its transferability table; one draw, two draws with one
    label, or a draw whose excess table is missing, is refused."""
    import subprocess
    import sys

    floors = io.read_table(tiny_run / "results/metrics/transferability.tsv").groupby("T_K")["eps_a_floor"].first()
    temperatures = list(floors.index)
    columns = [f"eps_{m}_{s}" for m in ("g", "a") for s in ("excess", "excess_se", "excess_ratio_fm_ref",
                                                            "excess_ratio_fm_ref_se", "excess_ratio_oracle",
                                                            "excess_ratio_oracle_se")]
    tables = []
    for number, ratio in enumerate((0.4, 0.6)):
        rows = [{"model": model, "kind": model, "T_K": t, **{c: 1.0 for c in columns},
                 "eps_a_excess_ratio_fm_ref": 1.0 if model == "fm_ref" else ratio}
                for model in ("fm_ref", "trf2") for t in temperatures]
        tables.append(tmp_path / f"excess_{number}.tsv")
        io.write_table(tables[-1], pd.DataFrame(rows))
    command = [sys.executable, str(REPO / "benchmarks/bench_fg_draws.py")]
    draws = [f"draw{k}={tiny_run / 'results'},{table}" for k, table in enumerate(tables)]
    for arguments, message in (([f"--draw={draws[0]}"], "at least two draws"),
                               ([f"--draw={draws[0]}", f"--draw={draws[0]}"], "the same label"),
                               ([f"--draw={draws[0]}", f"--draw=b={tiny_run / 'results'},{tmp_path / 'none.tsv'}"], "--draw 'b=")):
        refused = subprocess.run(command + arguments, cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert refused.returncode != 0 and message in refused.stderr

    subprocess.run(command + [f"--draw={d}" for d in draws], cwd=tmp_path, check=True, capture_output=True, text=True,
                   timeout=120)
    per_draw = io.read_table(tmp_path / "benchmarks/results/fg_draws.tsv")
    assert len(per_draw) == 2 * 2 * len(temperatures)
    for t in temperatures:
        assert (per_draw.query("T_K == @t")["eps_a_floor"] == floors[t]).all()
    summary = io.read_table(tmp_path / "benchmarks/results/fg_draws_summary.tsv").set_index(["model", "T_K"])
    trf2 = summary.loc[("trf2", temperatures[-1])]
    assert trf2["n_draws"] == 2
    assert trf2["eps_a_excess_ratio_fm_ref"] == pytest.approx(0.5)
    assert trf2["eps_a_excess_ratio_fm_ref_sd"] == pytest.approx(0.2 / np.sqrt(2))
    assert trf2["eps_a_excess_ratio_fm_ref_se"] == pytest.approx(0.1)
    assert summary.loc[("fm_ref", temperatures[-1]), "eps_a_excess_ratio_fm_ref_sd"] == 0.0


def test_t0_floor_benchmark_cuts_the_run_into_windows_and_takes_each_ones_halves(monkeypatch):
    """benchmarks/bench_t0_floor.py: a run of 10 frames 0.1 ps apart gives two windows of 0.4 ps (the
    last two frames dropped); a window whose second half repeats its first has a floor of exactly 0,
    one of independent random frames a positive one; a window longer than the run is an error."""
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    import bench_t0_floor

    rng = np.random.default_rng(5)
    box = np.full((10, 3), 1.4)
    positions = rng.random((10, 40, 3)) * 1.4
    positions[2:4] = positions[0:2]  # the first window's halves are the same frames
    beads = {"positions": positions, "box": box, "time": np.arange(10) * 0.1}
    settings = {"rdf_bin_width": 0.01, "adf_shell": 0.5, "adf_bin_width": 5.0}
    floors = bench_t0_floor.window_floors(beads, 0.4, settings)
    np.testing.assert_allclose([(start, end) for start, end, _ in floors], [(0.0, 0.4), (0.4, 0.8)])
    assert floors[0][2]["eps_g"] == 0 and floors[0][2]["eps_a"] == 0
    assert floors[1][2]["eps_g"] > 0 and floors[1][2]["eps_a"] > 0
    with pytest.raises(ValueError, match="window"):
        bench_t0_floor.window_floors(beads, 2.0, settings)
