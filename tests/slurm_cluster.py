"""The runs of `snakemake --profile slurm` on the local Slurm cluster of tests/slurm/cluster.sh,
a pytest plugin (tests/conftest.py loads it): the runs start as soon as the tests are collected
and their tests in tests/test_slurm.py run last, so that the other tests fill the time the runs
wait.

One process starts the runs and ends them at the end of the session: pytest's own, or, under
pytest-xdist, the controller (which outlives its workers). The tests read a run's outcome from
files in its folder (exit_status, snakemake.out), so any worker can wait for it.

The local cluster differs from a real one only in site values, which the profile reads from
THERMOCG_SLURM_* variables (LOCAL_SITE below): its partition and account, and no GPUs
(GPUS=0: the GPU rules are submitted without --gpus and run on CPUs, as the rules allow).
"""

import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from unittest import mock

import pytest
import yaml
from conftest import REPO, session_basetemp

PROFILE = REPO / "slurm"
CLUSTER_SH = REPO / "tests" / "slurm" / "cluster.sh"
SITE_NAMES = ["ACCOUNT", "PARTITION", "GPU_PARTITION", "GPUS", "GPU_MODEL", "GRES", "CONSTRAINT"]
# Site values of the local test cluster; every other site value is unset ('' = None), so that a
# developer's own THERMOCG_SLURM_* settings cannot leak into the tests.
LOCAL_SITE = {f"THERMOCG_SLURM_{name}": "" for name in SITE_NAMES} | {
    "THERMOCG_SLURM_PARTITION": "local",
    "THERMOCG_SLURM_ACCOUNT": "thermocg",
    "THERMOCG_SLURM_GPUS": "0",
}
# The local cluster's first status check comes after 5 s instead of 40 s (test speed only).
FAST_POLLING = ["--slurm-init-seconds-before-status-checks", "5"]


def resolved_profile(**site):
    """slurm/config.yaml as Snakemake reads it, with the given THERMOCG_SLURM_<NAME> values."""
    import yte  # comes with snakemake

    env = {key: value for key, value in os.environ.items() if not key.startswith("THERMOCG_SLURM_")}
    env |= {f"THERMOCG_SLURM_{name}": str(value) for name, value in site.items()}
    with mock.patch.dict(os.environ, env, clear=True):
        return yte.process_yaml(io.StringIO((PROFILE / "config.yaml").read_text()), require_use_yte=True)


@pytest.fixture(scope="session")
def slurm_cluster():
    """The local cluster of tests/slurm/cluster.sh, or a skip that says why there is none."""
    status = cluster_status()
    if status.returncode == 0:
        return
    if os.environ.get("THERMOCG_SLURM") == "1":
        pytest.fail(f"THERMOCG_SLURM=1 but the local Slurm cluster is not ready:\n{status.stdout}{status.stderr}")
    reason = os.environ.get("THERMOCG_SLURM_SKIP_REASON") or "THERMOCG_SLURM is not 1"
    pytest.skip(
        f"no local Slurm cluster ({reason}; `tests/slurm/cluster.sh status`: "
        f"{status.stdout.strip().splitlines()[-1] if status.stdout.strip() else status.stderr.strip()}). "
        "Start one with: tests/slurm/cluster.sh install && tests/slurm/cluster.sh up"
    )


def cluster_status():
    """`tests/slurm/cluster.sh status`: exit status 0 when the local cluster takes jobs."""
    return subprocess.run(["bash", str(CLUSTER_SH), "status"], check=False, capture_output=True, text=True)


def start_snakemake(workdir, args, site=LOCAL_SITE, configfile=REPO / "config" / "test.yaml"):
    """Start `snakemake --profile slurm` in `workdir` (its own results/ and .snakemake/); its
    output goes to workdir/snakemake.out (a file, not a pipe: nobody reads it while it runs)."""
    workdir.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable, "-m", "snakemake",
        "--profile", str(PROFILE),
        "--snakefile", str(REPO / "Snakefile"),
        "--configfile", str(configfile),
        *args,
    ]  # fmt: skip
    with open(workdir / "snakemake.out", "w") as out:
        return subprocess.Popen(cmd, cwd=workdir, env=os.environ | site, stdout=out, stderr=subprocess.STDOUT)


def finish(workdir, process, timeout=1800):
    """Wait for a Snakemake started in `workdir`: its exit status and output (a CompletedProcess)."""
    try:
        process.wait(timeout=timeout)
    finally:
        cancel(process)
    return subprocess.CompletedProcess(process.args, process.returncode, (workdir / "snakemake.out").read_text())


def finished_run(workdir, timeout=1800):
    """Wait for a run of CLUSTER_RUNS (started by another process, perhaps): its exit status and
    output (a CompletedProcess). The starting process ends a run still going at the session's end."""
    exit_status = workdir / "exit_status"
    deadline = time.monotonic() + timeout
    while not exit_status.exists():
        if time.monotonic() > deadline:
            pytest.fail(f"the Snakemake run in {workdir} did not end within {timeout} s")
        time.sleep(2)
    returncode = int(exit_status.read_text())
    return subprocess.CompletedProcess(["snakemake"], returncode, (workdir / "snakemake.out").read_text())


def cancel(process):
    """Stop a Snakemake that still runs as Snakemake stops on Ctrl-C, cancelling its Slurm jobs."""
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def snakemake(workdir, args, site=LOCAL_SITE, configfile=REPO / "config" / "test.yaml", timeout=1800):
    """Run `snakemake --profile slurm` in `workdir` and wait for it."""
    return finish(workdir, start_snakemake(workdir, args, site, configfile), timeout)


def every_rule_config(directory):
    """The tiny config with one model of each rule path (fit, fit_oracle, refine_diffsim, sweep),
    the friction fitted (friction_lines) and two laws compared, the fitted one (constant: its rows are
    the CG MD runs, dynamics_of_cgmd) and the oracle (dynamics_cg): every rule of the DAG runs, in
    about half the jobs of the full tiny config. trf2 needs fm_ref (its W0)."""
    config = yaml.safe_load((REPO / "config" / "test.yaml").read_text())
    config["models"] = {name: config["models"][name] for name in ("fm_ref", "fm_oracle", "trf2")}
    config["cgmd"] |= {"friction": "fit", "friction_fit_time": 2.0, "friction_fit_start": 0.5, "friction_fit_end": 2.0}
    config["dynamics"] = {"models": ["trf2"], "laws": ["constant", "oracle"], "production": 2.0,
                          "fine_equilibration": 0.2, "fine_production": 0.4}
    path = directory / "every_rule.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def start_every_rule_run(workdir):
    """The config of every_rule_config, all of it, with Slurm's job logs kept."""
    return start_snakemake(workdir, [*FAST_POLLING, "--slurm-keep-successful-logs"], configfile=every_rule_config(workdir))


def start_retry_run(workdir):
    """sample_fg with a 1-minute limit (Slurm's smallest) and 2-4 minutes of sampling.

    Slurm kills the first attempt (TIMEOUT, 60-90 s after its start: slurmctld checks limits
    every 30 s); Snakemake resubmits it (profile `retries`) with 10 minutes, and the new attempt
    continues from the checkpoint that sample_fg left.
    """
    config = yaml.safe_load((REPO / "config" / "test.yaml").read_text())
    # 0.4-0.8 s per ps of production on one idle CI core (measured), 20 s to start: at most 175 ps
    # before the kill, 120-240 s of sampling in all, so the first attempt is always killed,
    # whatever the phase of slurmctld's check. A checkpoint every 10 ps (4-8 s). The tests that
    # run beside it slow it down, which only makes the first kill surer; a retry that reaches
    # its 10 minutes is retried once more, with 20 (profile `retries: 2`).
    config["fg"] |= {"production": 300.0, "frame_interval": 2.0, "checkpoint_interval": 10.0,
                     "score_production": None}  # 1 ps would hold no frame 2 ps apart (the config check refuses it)
    (workdir / "retry.yaml").write_text(yaml.safe_dump(config))

    # The profile's own set-resources (a --set-resources option replaces all of them), except
    # sample_fg's runtime: 1 minute for the first attempt, 10 for the retries. (With 1 minute
    # each time, a retry that finishes its work right at the limit is killed too, TIMEOUT.)
    first_short = "max(1, 10 * (attempt - 1))"
    set_resources = [
        f"{rule}:{key}={first_short if (rule, key) == ('sample_fg', 'runtime') else value}"
        for rule, resources in resolved_profile(PARTITION="local", ACCOUNT="thermocg", GPUS=0)["set-resources"].items()
        for key, value in resources.items()
    ]
    return start_snakemake(
        workdir,
        [*FAST_POLLING, "--set-resources", *set_resources, "--", "results/fg/T300/frames.npz"],
        configfile=workdir / "retry.yaml",
    )  # fmt: skip


# {test: how its Snakemake run starts}
CLUSTER_RUNS = {
    "test_tiny_pipeline_runs_every_rule_as_a_slurm_job": start_every_rule_run,
    "test_job_killed_at_its_time_limit_is_retried_and_resumes_from_its_checkpoint": start_retry_run,
}


RUNS_FILE = "cluster_runs.json"  # {test: its run's folder}, in the session's basetemp


class ClusterRuns:
    """The runs of the selected tests of CLUSTER_RUNS, started at once by :meth:`start` in the
    process that ends them (:meth:`cancel`). Each waits much of its time (for a time limit, for
    Slurm's queue, for the executor's status checks, which back off by 10 s per check up to 3
    minutes), and the other tests, which run first (pytest_collection_modifyitems), fill that
    time: the CI took 24.8 and 27.1 minutes so, 28.3 with the runs started by their tests at the
    end (593 s), on one morning."""

    def __init__(self):
        self.processes = []
        self.started = False

    def start(self, config, test_names):
        """Start the runs of these tests where a cluster takes jobs, and write RUNS_FILE (empty
        where nothing started: their tests then skip or fail with the reason, through slurm_cluster)."""
        if self.started:
            return
        self.started = True
        root = session_basetemp(config)
        runs = {}
        tests = [test for test in CLUSTER_RUNS if test in set(test_names)]
        if tests and cluster_status().returncode == 0:
            for test in tests:
                workdir = root / CLUSTER_RUNS[test].__name__
                workdir.mkdir()
                process = CLUSTER_RUNS[test](workdir)
                self.processes.append(process)
                threading.Thread(target=record_exit_status, args=(workdir, process), daemon=True).start()
                runs[test] = str(workdir)
        (root / f"{RUNS_FILE}.part").write_text(json.dumps(runs))
        (root / f"{RUNS_FILE}.part").rename(root / RUNS_FILE)

    def cancel(self):
        for process in self.processes:
            cancel(process)


def record_exit_status(workdir, process):
    """Write the run's exit status to workdir/exit_status when it ends (whole or not at all)."""
    process.wait()
    (workdir / "exit_status.part").write_text(str(process.returncode))
    (workdir / "exit_status.part").rename(workdir / "exit_status")


CLUSTER_RUNS_OF_THIS_PROCESS = ClusterRuns()


def pytest_collection_finish(session):
    """Without pytest-xdist, and in none of its processes: start the runs once the tests are known."""
    config = session.config
    if not hasattr(config, "workerinput") and not config.pluginmanager.hasplugin("dsession"):
        CLUSTER_RUNS_OF_THIS_PROCESS.start(config, [item.originalname for item in session.items])


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_node_collection_finished(node, ids):
    """pytest-xdist's controller: start the runs when the first worker has collected the tests
    (node ids like tests/test_slurm.py::test_name[params])."""
    names = [nodeid.split("::")[-1].split("[")[0] for nodeid in ids]
    CLUSTER_RUNS_OF_THIS_PROCESS.start(node.config, names)


def pytest_sessionfinish(session):
    CLUSTER_RUNS_OF_THIS_PROCESS.cancel()


def pytest_collection_modifyitems(items):
    """The tests that wait for a cluster run go last (a stable sort keeps the others' order)."""
    items.sort(key=lambda item: item.originalname in CLUSTER_RUNS)


@pytest.fixture(scope="session")
def cluster_runs(slurm_cluster, request):
    """{test: the folder of its run}, as the process that started the runs wrote it."""
    runs_file = session_basetemp(request.config) / RUNS_FILE
    deadline = time.monotonic() + 300
    while not runs_file.exists():
        if time.monotonic() > deadline:
            pytest.fail(f"no {runs_file}: the cluster runs were not started")
        time.sleep(1)
    runs = {test: Path(workdir) for test, workdir in json.loads(runs_file.read_text()).items()}
    if not runs:
        pytest.fail(f"a local Slurm cluster is up but no cluster run was started (see {runs_file})")
    return runs
