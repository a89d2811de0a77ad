"""What a finished Snakemake run cost, per rule and per stage (a stage is a file of workflow/rules/).

Reads the run's own log, the one Snakemake keeps under .snakemake/log/ (or the one given): every
job's start (the timestamp above its ``rule``/``localrule`` block) and finish (the timestamp above
its ``Finished jobid``). A job's time is its wall time from start to finish, so on a machine whose
cores are all busy the job times add up to about cores x wall time; they are what the run's
budget buys, whatever ran beside them. Jobs that did not finish (failed, or a killed run) are
counted apart.

    python benchmarks/stage_costs.py [LOG] [--rules workflow/rules]

Writes benchmarks/results/stage_costs.tsv (one row per rule, then one per stage and the total:
jobs, job time in s, its median per job and share of the total) and prints it, then the run's
wall time from its first job's start to its last job's finish.
"""

import argparse
import re
import sys
from datetime import datetime
from pathlib import Path

import pandas as pd
import results_table

STAMP = re.compile(r"^\[(\w{3} \w{3} +\d+ \d\d:\d\d:\d\d \d{4})\]$")
RULE = re.compile(r"^(?:local)?rule (\S+):$")
JOBID = re.compile(r"^\s+jobid: (\d+)$")
FINISHED = re.compile(r"^Finished jobid: (\d+)")
RULE_FILE_RULE = re.compile(r"^rule (\w+)\s*:", re.MULTILINE)


def job_times(lines):
    """{jobid: (rule, start, finish or None)} from the lines of a Snakemake log."""
    jobs, stamp, pending_rule = {}, None, None
    for line in lines:
        line = line.rstrip("\n")
        if match := STAMP.match(line):
            stamp = datetime.strptime(" ".join(match.group(1).split()), "%a %b %d %H:%M:%S %Y")
        elif match := RULE.match(line):
            pending_rule = (match.group(1), stamp)
        elif (match := JOBID.match(line)) and pending_rule is not None:
            jobs[int(match.group(1))] = [pending_rule[0], pending_rule[1], None]
            pending_rule = None
        elif (match := FINISHED.match(line)) and int(match.group(1)) in jobs:
            jobs[int(match.group(1))][2] = stamp
    return {jobid: tuple(job) for jobid, job in jobs.items()}


def stages_of_rules(rules_dir):
    """{rule: stage}, the stage being the name of the .smk file that defines the rule."""
    stages = {}
    for path in sorted(Path(rules_dir).glob("*.smk")):
        for rule in RULE_FILE_RULE.findall(path.read_text()):
            stages[rule] = path.stem
    return stages


def cost_table(jobs, stages):
    """Rows per rule, per stage and the total, from :func:`job_times` (finished jobs only)."""
    finished = [
        {"rule": rule, "stage": stages.get(rule, "(Snakefile)"), "seconds": (finish - start).total_seconds()}
        for rule, start, finish in jobs.values()
        if finish is not None
    ]
    if not finished:
        raise ValueError("no finished job in the log")
    per_job = pd.DataFrame(finished)
    total = per_job["seconds"].sum()

    def summarise(group, level):
        return pd.DataFrame({
            "level": level,
            "jobs": group["seconds"].count(),
            "job_time_s": group["seconds"].sum(),
            "median_s": group["seconds"].median(),
            "share": group["seconds"].sum() / total,
        })  # fmt: skip

    by_rule = summarise(per_job.groupby(["stage", "rule"]), "rule").reset_index()
    by_stage = summarise(per_job.groupby("stage"), "stage").reset_index().assign(rule="")
    everything = summarise(per_job.assign(all="all").groupby("all"), "total").reset_index(drop=True)
    everything = everything.assign(stage="all", rule="")
    columns = ["level", "stage", "rule", "jobs", "job_time_s", "median_s", "share"]
    rows = [by_rule.sort_values("job_time_s", ascending=False), by_stage.sort_values("job_time_s", ascending=False), everything]
    return pd.concat([frame[columns] for frame in rows], ignore_index=True)


def latest_log(directory=".snakemake/log"):
    logs = sorted(Path(directory).glob("*.snakemake.log"))
    if not logs:
        raise FileNotFoundError(f"no Snakemake log under {directory}: run the pipeline first, or give the log's path")
    return logs[-1]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("log", nargs="?", help="a Snakemake log (default: the latest under .snakemake/log)")
    parser.add_argument("--rules", default="workflow/rules", help="the rule files, for the stage of each rule")
    parser.add_argument("--out", default=str(results_table.RESULTS / "stage_costs.tsv"))
    args = parser.parse_args(argv)
    log_path = Path(args.log) if args.log else latest_log()
    jobs = job_times(log_path.read_text().splitlines())
    table = cost_table(jobs, stages_of_rules(args.rules))
    print(f"{log_path}:")
    results_table.write(table, args.out)
    done = [job for job in jobs.values() if job[2] is not None]
    wall = (max(job[2] for job in done) - min(job[1] for job in done)).total_seconds()
    unfinished = sorted(job[0] for job in jobs.values() if job[2] is None)
    print(f"wall time from the first job's start to the last one's finish: {wall:.0f} s ({wall / 60:.1f} min)")
    if unfinished:
        print(f"not finished ({len(unfinished)} jobs, not counted above): {', '.join(unfinished)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
