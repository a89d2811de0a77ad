"""`snakemake --profile slurm`: the profile (slurm/config.yaml) and runs on a real Slurm cluster.

The profile tests run everywhere. The cluster tests need the single-node cluster of
tests/slurm/cluster.sh on this machine (CI's .ci/run installs and starts it and sets
THERMOCG_SLURM=1); without one they are skipped, with the reason in the skip message.

The local cluster differs from a real one only in site values, which the profile reads from
THERMOCG_SLURM_* variables (LOCAL_SITE below): its partition and account, and no GPUs
(GPUS=0: the GPU rules are submitted without --gpus and run on CPUs, as the rules allow).
"""

import io
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from unittest import mock

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
PROFILE = REPO / "slurm"
CLUSTER_SH = REPO / "tests" / "slurm" / "cluster.sh"
GPU_RULES = ["sample_fg", "fit", "fit_oracle", "sweep_fit", "fit_friction", "cgmd", "refine_diffsim", "friction_lines",
             "dynamics_cg", "sample_fg_fine", "sample_fg_score"]
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


# --- the profile (no Slurm needed) -----------------------------------------------------------


def test_profile_defaults_request_one_gpu_per_gpu_rule_and_no_site_values():
    profile = resolved_profile()
    assert profile["executor"] == "slurm"
    assert profile["retries"] >= 1 and profile["latency-wait"] > 0 and profile["jobs"] > 0
    defaults = profile["default-resources"]
    assert {"runtime", "mem_mb", "cpus_per_task"} <= set(defaults)
    # Unset site values leave the sbatch options out (Slurm's defaults apply).
    assert "slurm_account" not in defaults and "slurm_partition" not in defaults
    for rule, resources in profile["set-resources"].items():
        assert "runtime" in resources and "mem_mb" in resources, rule
        assert resources.get("gpu") == (1 if rule in GPU_RULES else None), rule
        assert "slurm_partition" not in resources and "constraint" not in resources, rule


def test_profile_site_values_reach_the_right_rules():
    profile = resolved_profile(
        ACCOUNT="proj1", PARTITION="cpu", GPU_PARTITION="gpu", GPUS=2, GPU_MODEL="a100", CONSTRAINT="a100|h100"
    )
    assert profile["default-resources"]["slurm_account"] == "proj1"
    assert profile["default-resources"]["slurm_partition"] == "cpu"
    for rule, resources in profile["set-resources"].items():
        if rule in GPU_RULES:
            assert resources["gpu"] == 2 and resources["gpu_model"] == "a100", rule
            assert resources["slurm_partition"] == "gpu" and resources["constraint"] == "a100|h100", rule
        else:  # CPU rules keep the default partition and ask for no GPU
            assert not {"gpu", "gpu_model", "gres", "constraint", "slurm_partition"} & set(resources), rule


def test_profile_gres_replaces_gpus_and_zero_gpus_drops_the_request():
    with_gres = resolved_profile(GRES="gpu:v100:1", GPU_MODEL="a100")["set-resources"]
    without = resolved_profile(GPUS=0)["set-resources"]
    for rule in GPU_RULES:
        assert with_gres[rule]["gres"] == "gpu:v100:1"
        assert "gpu" not in with_gres[rule] and "gpu_model" not in with_gres[rule]
        assert not {"gpu", "gpu_model", "gres"} & set(without[rule])


def test_profile_is_accepted_by_snakemake(tmp_path):
    """A dry run of the tiny config through the profile: Snakemake parses every value."""
    result = snakemake(tmp_path, ["--dry-run", "--quiet", "rules"], site={})
    assert result.returncode == 0, result.stdout[-3000:]


# --- on the local Slurm cluster ----------------------------------------------------------------


@pytest.fixture(scope="module")
def slurm_cluster():
    """The local cluster of tests/slurm/cluster.sh, or a skip that says why there is none."""
    status = subprocess.run(["bash", str(CLUSTER_SH), "status"], capture_output=True, text=True)
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


def submitted_jobs(output):
    """{Slurm job id: rule} for every job this Snakemake run submitted (from its log lines)."""
    found = re.findall(r"has been submitted with SLURM jobid (\d+) \(log: \S*/rule_(\w+)/", output)
    return {job_id: rule for job_id, rule in found}


def sacct(run_id):
    """Slurm's accounting records of one Snakemake run: a dict per job, in submission order."""
    fields = ["JobIDRaw", "JobName", "Comment", "State", "ExitCode", "Partition", "Account", "Elapsed"]
    out = subprocess.run(
        ["sacct", "-X", "--parsable2", "--noheader", "--starttime", "now-1days",
         "--name", run_id, "--format", ",".join(fields)],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    jobs = [dict(zip(fields, line.split("|"))) for line in out.splitlines() if line]
    print("sacct for run", run_id)  # shown with pytest -s or on failure
    print("\n".join(" ".join(job[f] for f in fields) for job in jobs))
    return sorted(jobs, key=lambda job: int(job["JobIDRaw"]))


def run_id(output):
    match = re.search(r"SLURM run ID: (\S+)", output)
    assert match, "no 'SLURM run ID' in snakemake's output: was the slurm executor used?"
    return match.group(1)


def every_rule_config(directory):
    """The tiny config with one model of each rule path (fit, fit_oracle, refine_diffsim, sweep),
    the friction fitted (friction_lines) and one law compared (the dynamics rules): every rule of
    the DAG runs, in about half the jobs of the full tiny config. trf2 needs fm_ref (its W0)."""
    config = yaml.safe_load((REPO / "config" / "test.yaml").read_text())
    config["models"] = {name: config["models"][name] for name in ("fm_ref", "fm_oracle", "trf2")}
    config["cgmd"] |= {"friction": "fit", "friction_fit_time": 2.0, "friction_fit_start": 0.5, "friction_fit_end": 2.0}
    config["dynamics"] = {"models": ["trf2"], "laws": ["oracle"], "production": 2.0, "fine_equilibration": 0.2,
                          "fine_production": 0.4}
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
    # whatever the phase of slurmctld's check. A checkpoint every 10 ps (4-8 s).
    config["fg"] |= {"production": 300.0, "frame_interval": 2.0, "checkpoint_interval": 10.0}
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


@pytest.fixture(scope="module")
def cluster_runs(slurm_cluster, request, tmp_path_factory):
    """The runs of the selected tests of CLUSTER_RUNS, all started at once: each spends most of
    its time waiting (for a time limit, for Slurm's queue, for the executor's status checks, which
    back off by 10 s per check up to 3 minutes), so together they take about as long as the
    longest alone (both 6.5 minutes here; the retry run alone had taken 8.5, sampling 400 ps).
    {test: (workdir, Snakemake process)}."""
    selected = {item.originalname for item in request.session.items}
    runs = {}
    for test, start in CLUSTER_RUNS.items():
        if test in selected:
            workdir = tmp_path_factory.mktemp(start.__name__)
            runs[test] = workdir, start(workdir)
    yield runs
    for _, process in runs.values():
        cancel(process)


@pytest.mark.slow
def test_tiny_pipeline_runs_every_rule_as_a_slurm_job(cluster_runs):
    rules = subprocess.run(
        [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--list-rules"],
        cwd=REPO, capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    workdir, process = cluster_runs["test_tiny_pipeline_runs_every_rule_as_a_slurm_job"]
    result = finish(workdir, process)
    assert result.returncode == 0, result.stdout[-5000:]
    output = result.stdout

    submitted = submitted_jobs(output)
    remote_rules = re.findall(r"^rule (\w+):", output, flags=re.MULTILINE)  # localrules print "localrule"
    assert submitted and sorted(submitted.values()) == sorted(remote_rules)

    # Slurm's own record: exactly these jobs, each completed, named after its rule, on the
    # partition and account the site values gave.
    jobs = sacct(run_id(output))
    assert {job["JobIDRaw"] for job in jobs} == set(submitted)
    for job in jobs:
        rule = submitted[job["JobIDRaw"]]
        assert job["State"] == "COMPLETED" and job["ExitCode"] == "0:0", job
        assert re.fullmatch(rf"rule_{rule}(_wildcards_.*)?", job["Comment"]), job
        assert (job["Partition"], job["Account"]) == ("local", "thermocg"), job
    # The job logs too (kept by --slurm-keep-successful-logs): one per job, under its rule.
    logs = {log.stem: log.parent for log in (workdir / ".snakemake" / "slurm_logs").rglob("*.log")}
    for job_id, rule in submitted.items():
        assert job_id in logs and f"rule_{rule}" in logs[job_id].parts

    # Every rule but the target-only `all` ran, as a Slurm job or locally (localrules).
    ran = set(remote_rules) | set(re.findall(r"^localrule (\w+):", output, flags=re.MULTILINE))
    assert set(rules) - {"all"} <= ran, set(rules) - ran

    # Nothing finished is recomputed: a second invocation has nothing to do.
    again = snakemake(workdir, ["--dry-run"], configfile=workdir / "every_rule.yaml")
    assert again.returncode == 0 and "Nothing to be done" in again.stdout, again.stdout[-3000:]


@pytest.mark.slow
def test_job_killed_at_its_time_limit_is_retried_and_resumes_from_its_checkpoint(cluster_runs):
    """See start_retry_run."""
    workdir, process = cluster_runs["test_job_killed_at_its_time_limit_is_retried_and_resumes_from_its_checkpoint"]
    result = finish(workdir, process)
    assert result.returncode == 0, result.stdout[-5000:]

    jobs = sacct(run_id(result.stdout))
    states = [job["State"] for job in jobs]
    assert all(job["Comment"] == "rule_sample_fg_wildcards_300" for job in jobs), jobs
    assert states[0] == "TIMEOUT", f"the first attempt was not killed at its time limit: {states}"
    assert states[-1] == "COMPLETED" and set(states[:-1]) == {"TIMEOUT"}, states
    # The last attempt started from the checkpoint, not from scratch.
    log = (workdir / "logs" / "fg" / "T300" / "sample_fg.log").read_text()
    assert "resumed" in log.lower(), log[-3000:]
    assert (workdir / "results" / "fg" / "T300" / "frames.npz").exists()
