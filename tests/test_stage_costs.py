"""benchmarks/stage_costs.py: job times from a Snakemake log, summed per rule and per stage."""

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
import stage_costs  # noqa: E402

# The shape of a Snakemake 9 log: a timestamp above each job's block and above each "Finished".
LOG = """\
Select jobs to execute...
Execute 2 jobs...

[Mon Dec  7 08:22:58 2026]
localrule sample_fg:
    output: results/fg/T300/frames.npz
    jobid: 3
    wildcards: T=300
    resources: tmpdir=/tmp

[Mon Dec  7 08:22:58 2026]
rule fit:
    input: results/cg/T300/beads.npz
    jobid: 7
    wildcards: model=fm_ref

[Mon Dec  7 08:23:58 2026]
Finished jobid: 3 (Rule: sample_fg)
1 of 4 steps (25%) done

[Mon Dec  7 08:23:59 2026]
localrule sample_fg:
    jobid: 4
    wildcards: T=450

[Mon Dec  7 08:25:38 2026]
Finished jobid: 7 (Rule: fit)
[Mon Dec  7 08:25:39 2026]
Finished jobid: 4 (Rule: sample_fg)

[Mon Dec  7 08:25:40 2026]
rule figures:
    jobid: 9
"""


def test_job_times_pair_each_start_with_its_finish():
    jobs = stage_costs.job_times(LOG.splitlines())
    seconds = {jobid: None if finish is None else (finish - start).total_seconds() for jobid, (_, start, finish) in jobs.items()}
    assert seconds == {3: 60.0, 7: 160.0, 4: 100.0, 9: None}  # job 9 never finished
    assert jobs[4][0] == "sample_fg" and jobs[7][0] == "fit"


def test_cost_table_sums_per_rule_and_stage(tmp_path):
    (tmp_path / "fg.smk").write_text("rule sample_fg:\n    input: x\n\nrule sample_fg_score:\n")
    (tmp_path / "fit.smk").write_text("rule fit:\n")
    stages = stage_costs.stages_of_rules(tmp_path)
    assert stages == {"sample_fg": "fg", "sample_fg_score": "fg", "fit": "fit"}
    table = stage_costs.cost_table(stage_costs.job_times(LOG.splitlines()), stages)
    rule = table[table["level"] == "rule"].set_index("rule")
    assert rule.loc["sample_fg", "jobs"] == 2 and rule.loc["sample_fg", "job_time_s"] == 160.0
    assert rule.loc["sample_fg", "median_s"] == 80.0
    total = table[table["level"] == "total"].iloc[0]
    assert total["job_time_s"] == 320.0 and total["jobs"] == 3 and total["share"] == pytest.approx(1.0)
    stage = table[table["level"] == "stage"].set_index("stage")
    assert stage.loc["fit", "share"] == pytest.approx(0.5)


def test_main_writes_the_table_and_says_what_did_not_finish(tmp_path, capsys):
    log = tmp_path / "run.snakemake.log"
    log.write_text(LOG)
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "fg.smk").write_text("rule sample_fg:\n")
    out = tmp_path / "costs.tsv"
    assert stage_costs.main([str(log), "--rules", str(rules), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert out.exists() and "(Snakefile)" in out.read_text()  # fit is in no rule file given
    assert "161 s" in printed and "not finished (1 jobs, not counted above): figures" in printed
    with pytest.raises(ValueError, match="no finished job"):
        stage_costs.cost_table({9: ("figures", None, None)}, {})
