"""`snakemake --profile slurm`: the profile (slurm/config.yaml) and runs on a real Slurm cluster.

The profile tests run everywhere. The cluster tests need the single-node cluster of
tests/slurm/cluster.sh on this machine (CI's .ci/run installs and starts it and sets
THERMOCG_SLURM=1); without one they are skipped, with the reason in the skip message. Their
Snakemake runs start with the session and they run last (tests/slurm_cluster.py).
"""

import re
import subprocess
import sys

import pytest
from slurm_cluster import REPO, finished_run, resolved_profile, snakemake

GPU_RULES = ["sample_fg", "fit", "response_systems", "fit_oracle", "sweep_fit", "cgmd", "refine_diffsim", "friction_lines",
             "dynamics_cg", "sample_fg_fine", "sample_fg_score"]


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
    print("sacct for run", run_id)  # shown on failure, or with pytest -n 0 -s
    print("\n".join(" ".join(job[f] for f in fields) for job in jobs))
    return sorted(jobs, key=lambda job: int(job["JobIDRaw"]))


def run_id(output):
    match = re.search(r"SLURM run ID: (\S+)", output)
    assert match, "no 'SLURM run ID' in snakemake's output: was the slurm executor used?"
    return match.group(1)


@pytest.mark.slow
def test_tiny_pipeline_runs_every_rule_as_a_slurm_job(cluster_runs):
    rules = subprocess.run(
        [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--list-rules"],
        cwd=REPO, capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    workdir = cluster_runs["test_tiny_pipeline_runs_every_rule_as_a_slurm_job"]
    result = finished_run(workdir)
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
    workdir = cluster_runs["test_job_killed_at_its_time_limit_is_retried_and_resumes_from_its_checkpoint"]
    result = finished_run(workdir)
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
