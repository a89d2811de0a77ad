"""Reruns that are always right: every rule declares the config values its script uses as params,
so that Snakemake's params trigger reruns exactly the jobs a config change affects."""

import copy
import os
import re
import shutil
import signal
import subprocess
import time

import mdtraj
import numpy as np
import pytest
import torch
import yaml

from conftest import REPO, run_snakemake, snakemake_command
from thermocg import io, nn

TINY = yaml.safe_load((REPO / "config" / "test.yaml").read_text())

# What a change of training reruns in the tiny config: 6 fitted models (and the normal equations of
# its 3 thermal-response entries, no two alike), fm_oracle at the 2 T other than T0 (at T0 it is
# fm_ref), the 2 sweep points, and CG MD of the 8 simulated models (with
# trf2_diffsim) at 3 T, less the 5 whose force field at T0 is fm_ref's (fm_oracle, em, trf1,
# trf1_global, trf2: they share its T0 run). Nothing atomistic.
AFTER_TRAINING = {
    "response_systems": 3, "fit": 6, "fit_oracle": 2, "sweep_fit": 2, "sweep_summary": 1, "refine_diffsim": 1,
    "force_metrics": 1,
    "cgmd": 19, "observables_cg": 19, "transferability": 1, "figures": 1, "all": 1,
}  # the tiny config's friction is a constant: its record depends on no model
# What a change of the atomistic sampling reruns: everything (energies: at T0 only).
EVERYTHING = {**AFTER_TRAINING, "sample_fg": 3, "map_cg": 3, "energies_per_molecule": 1, "diffusion_fg": 3,
              "observables_fg": 3, "plot_fg_observables": 1}
# What a change of a structural observable's setting reruns: the FG and CG observables and what reads
# them; no friction record (a fitted one reads only the FG diffusion) and so no CG MD.
AFTER_STRUCTURE = {"observables_fg": 3, "observables_cg": 19, "plot_fg_observables": 1, "transferability": 1,
                   "figures": 1, "all": 1}


def test_no_script_reads_the_config():
    """Scripts read only params, input, output, wildcards, threads and log: nothing escapes the params."""
    scripts = sorted((REPO / "workflow" / "scripts").glob("*.py"))
    assert scripts
    readers = [path.name for path in scripts if re.search(r"snakemake\s*\.\s*config\b", path.read_text())]
    assert not readers, f"these scripts read snakemake.config instead of their params: {readers}"


def planned_jobs(workdir, config):
    """Jobs per rule that ``snakemake --dry-run`` plans in ``workdir`` with ``config`` (the Job stats table).

    The config is written with its keys sorted, unlike config/test.yaml: their order must not matter.
    """
    path = workdir / "changed.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=True))
    result = run_snakemake(workdir, "--dry-run", "--cores", "2", "--configfile", str(path))
    out = result.stdout + result.stderr
    if "Nothing to be done" in out:
        return {}
    table = out[out.index("Job stats:"):]
    table = table[:table.index("\ntotal")]
    return {rule: int(count) for rule, count in re.findall(r"^(\w+)\s+(\d+)$", table, flags=re.MULTILINE)}


@pytest.fixture(scope="module")
def finished(tiny_run, tmp_path_factory):
    """A copy of the finished tiny run (mtimes and .snakemake/ metadata kept): other tests see it pristine."""
    workdir = tmp_path_factory.mktemp("reruns") / "tiny"
    shutil.copytree(tiny_run, workdir, symlinks=True)
    return workdir


def changed(*changes):
    """The tiny config with (path, value) changes; path like "training.learning_rate"."""
    config = copy.deepcopy(TINY)
    for path, value in changes:
        *parents, key = path.split(".")
        node = config
        for parent in parents:
            node = node.setdefault(parent, {})
        node[key] = value
    return config


# The tiny config's trf1 is a local model: its r_loc change rebuilds its normal equations and refits
# it (1 job each; no other entry shares its settings), then its CG MD and
# observables at the 2 T other than T0 (at T0 it runs as fm_ref), and the tables and figures.
AFTER_TRF1 = {"response_systems": 1, "fit": 1, "cgmd": 2, "observables_cg": 2, "force_metrics": 1, "transferability": 1,
              "figures": 1, "all": 1}


@pytest.mark.slow
@pytest.mark.parametrize("changes, expected", [
    # Nothing that changes a number: threads of torch jobs, a default written out, keys reordered.
    ([("training.threads", 2), ("cgmd.threads", 2), ("diffsim.threads", 2), ("fg.friction", 0.1),
      ("network", dict(reversed(TINY["network"].items())))],
     {}),
    ([("training.learning_rate", 2e-3)], AFTER_TRAINING),
    ([("fg.production", 5.0)], EVERYTHING),
    # a constant friction: every CG MD, no fit
    ([("cgmd.friction", 6.0)], {"fit_friction": 8, "cgmd": 19, "observables_cg": 19, "transferability": 1,
                                "figures": 1, "all": 1}),
    ([("models.trf1.r_loc", 0.45)], AFTER_TRF1),
    # r_loc of a model that does not use it (global estimator) refits nothing
    ([("models.trf1_global.r_loc", 0.45)], {}),
    # the settings of friction laws that no record here uses (the tiny friction is a constant)
    ([("cgmd.entropy_alpha", 0.7), ("cgmd.force_acf_max_lag", 1.0)], {}),
    ([("observables.rdf_bin_width", 0.004), ("observables.adf_shell", 0.32)], AFTER_STRUCTURE),
], ids=["no-numbers", "learning-rate", "fg-production", "cgmd-friction", "trf1-r_loc", "unused-r_loc",
        "unused-law-settings", "structure-settings"])
def test_a_config_change_reruns_exactly_what_it_affects(finished, changes, expected):
    assert planned_jobs(finished, changed(*changes)) == expected


def kill_when_written(workdir, path, *args, timeout=600):
    """Start snakemake in ``workdir`` and SIGKILL it, jobs included, as soon as ``path`` exists
    (a checkpoint: the job is then part-way through); then ``--unlock``, as a user would."""
    command, env = snakemake_command(workdir, *args)
    process = subprocess.Popen(command, cwd=workdir, env=env, start_new_session=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    while not (workdir / path).exists():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"snakemake {' '.join(args)} ended (rc {process.returncode}) before {path} was written")
        time.sleep(0.01)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    run_snakemake(workdir, "--unlock", *args)


def new_log_text(path, run):
    """The log at ``path`` of what ``run()`` does (Snakemake starts a job's log afresh, but a job
    that does not run would leave the old one: remove it first)."""
    path.unlink(missing_ok=True)
    run()
    return path.read_text()


@pytest.mark.slow
def test_sampling_killed_part_way_resumes_to_the_uninterrupted_frames(tiny_run, tmp_path):
    target, config = "results/fg/T300/frames.npz", str(REPO / "config" / "test.yaml")
    kill_when_written(tmp_path, "results/fg/T300/sampling_state.npz", target, "--cores", "1", "--configfile", config)
    assert not (tmp_path / target).exists()
    log = new_log_text(tmp_path / "logs/fg/T300/sample_fg.log", lambda: run_snakemake(
        tmp_path, target, "--cores", "1", "--configfile", config, "--rerun-incomplete"))
    assert "resumed from" in log
    resumed, uninterrupted = io.load_frames(tmp_path / target), io.load_frames(tiny_run / target)
    for name in ("positions", "forces", "potential_energy", "box"):
        np.testing.assert_array_equal(resumed[name], uninterrupted[name], err_msg=name)
    assert not (tmp_path / "results/fg/T300/sampling_state.npz").exists(), "removed once the outputs are written"


@pytest.mark.slow
def test_cg_md_killed_part_way_finishes_on_rerun_incomplete_and_a_forced_rerun_recomputes_it(tiny_run, tmp_path):
    """Snakemake deletes a job's outputs before it reruns it: the resumed run must not need them."""
    workdir = tmp_path / "tiny"
    shutil.copytree(tiny_run, workdir, symlinks=True)
    config = workdir / "longer.yaml"  # long enough to be killed part-way
    config.write_text(yaml.safe_dump(changed(("cgmd.production", 10.0), ("cgmd.checkpoint_interval", 0.4))))
    run_dir, log = workdir / "results/cgmd/fm_ref/T300", workdir / "logs/cgmd/fm_ref/T300/cgmd.log"
    target = ["results/cgmd/fm_ref/T300/status.json", "--cores", "1", "--configfile", str(config)]

    kill_when_written(workdir, "results/cgmd/fm_ref/T300/checkpoint.npz", *target)
    assert "resumed from" in new_log_text(log, lambda: run_snakemake(workdir, *target, "--rerun-incomplete"))
    resumed = mdtraj.load(str(run_dir / "trajectory.dcd"), top=str(run_dir / "topology.pdb"))
    assert resumed.n_frames == round(10.4 / TINY["cgmd"]["frame_interval"]) + 1

    assert "resumed from" not in new_log_text(log, lambda: run_snakemake(workdir, *target, "-R", "cgmd"))
    recomputed = mdtraj.load(str(run_dir / "trajectory.dcd"), top=str(run_dir / "topology.pdb"))
    np.testing.assert_array_equal(recomputed.xyz, resumed.xyz)  # killed and resumed = uninterrupted, bitwise


@pytest.mark.slow
def test_a_forced_refit_with_a_new_learning_rate_gives_new_weights(tiny_run, tmp_path):
    workdir = tmp_path / "tiny"
    shutil.copytree(tiny_run, workdir, symlinks=True)
    config = workdir / "faster.yaml"
    config.write_text(yaml.safe_dump(changed(("training.learning_rate", 3e-3))))
    model = "results/models/fm_ref/model.pt"
    log = new_log_text(workdir / "logs/models/fm_ref/fit.log", lambda: run_snakemake(
        workdir, model, "-R", "fit", "--cores", "1", "--configfile", str(config)))
    assert "resumed" not in log
    old, _ = nn.load_model(tiny_run / model)
    new, metadata = nn.load_model(workdir / model)
    assert metadata["training"]["learning_rate"] == 3e-3
    assert any(not torch.equal(a, b) for a, b in zip(old.state_dict().values(), new.state_dict().values()))
