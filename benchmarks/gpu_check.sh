#!/usr/bin/env bash
# The GPU check of issue 15, as one script for the GPU machine (nvidia-h200; no network there).
#
#   here:   . .venv/bin/activate && bash benchmarks/gpu_wheels.sh     # wheels into .whl/
#   there:  bash benchmarks/gpu_check.sh                              # carry .whl; about 5-7 min
#   here, a CPU rehearsal of every step but the wheel install:
#           bash benchmarks/gpu_check.sh --cpu-dry                    # or GPU_CHECK_CPU_DRY=1
#
# Parts, in this order, each under its own time limit inside an overall budget
# (GPU_CHECK_BUDGET_S: 465 s on the GPU, so that the whole run stays under 8 minutes); a part's
# failure is recorded and the next part runs anyway:
#   install   carried wheels -> /tmp/site (pip --no-index --no-deps --target), PYTHONPATH=/tmp/site:src,
#             LD_LIBRARY_PATH to the machine's CUDA libraries (for OpenMM's CUDA plugin)
#   env       versions (python, torch, OpenMM, snakemake), the CUDA device, OpenMM's platforms and
#             a CUDA context, requirements of the carried packages that the machine does not meet
#   tests     the CUDA tests (-k cuda in tests/test_cuda.py and every test file that checks for
#             CUDA); on the GPU a skipped test counts as a failure
#   pipeline  config/test.yaml end to end (fg.platform auto) in a scratch directory,
#             snakemake --cores 16 (at most 170 s)
#   logcheck  the log of every GPU rule of the Slurm profile names CUDA: sample_fg(_score, _fine)
#             "OpenMM platform: CUDA", fit/fit_oracle/sweep_fit "training on cuda",
#             friction_lines/cgmd/dynamics_cg/refine_diffsim "on cuda"; friction_lines and
#             dynamics_cg are not in config/test.yaml's DAG (constant friction, no law comparison)
#   bench     benchmarks/bench_gpu.py: FG and CG MD ns/day at 512, 4096 and 32768 molecules, CG/FG
#             ratio, training frames/s, DiffSim s/iteration; what is left of the budget less 60 s
#             (each of its tables is written as soon as it is measured, so a time-out keeps the
#             finished ones)
#   estimate  bench_gpu.py --parts estimate: wall time of config/paper.yaml on this machine from
#             the bench tables and the tiny run's per-job benchmark files
#
# GPU_CHECK_PARTS (default: all of the above) runs only the parts it names, and
# GPU_CHECK_BENCH_PARTS (default: fg cg ratio train diffsim) only those of bench_gpu.py, e.g. to
# measure again what changed: GPU_CHECK_PARTS="install env tests bench" GPU_CHECK_BENCH_PARTS="fg cg ratio".
#
# Everything lands in $OUT (./gpu_out when OUT is unset), 7 files, within what the device tool
# brings back: summary.txt (rc per part, the log check, the tables), env.log, tests.log,
# bench.log, pipeline.log, tables.tar.gz (bench_gpu's TSVs), pipeline_logs.tar.gz (the tiny
# run's logs and benchmark files). Exit status 0 when every part passed.
#
# Torch: the machine's own (2.11.0+cu130), not the pinned 2.13.0, whose CUDA build (GBs) cannot
# travel; numpy, scipy, pandas, matplotlib and pyyaml are the machine's as well (gpu_wheels.sh).
set -uo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD

DRY=0
for arg in "$@"; do
    case "$arg" in
        --cpu-dry) DRY=1 ;;
        *) echo "usage: bash benchmarks/gpu_check.sh [--cpu-dry]" >&2; exit 2 ;;
    esac
done
[ "${GPU_CHECK_CPU_DRY:-0}" = 1 ] && DRY=1

OUT=${OUT:-$REPO/gpu_out}
mkdir -p "$OUT" && OUT=$(cd "$OUT" && pwd)
SUMMARY=$OUT/summary.txt
: >"$SUMMARY"
rm -f "$OUT"/env.log "$OUT"/tests.log "$OUT"/bench.log "$OUT"/pipeline.log "$OUT"/tables.tar.gz \
    "$OUT"/pipeline_logs.tar.gz
WORK=$(mktemp -d)
[ "${GPU_CHECK_KEEP:-0}" = 1 ] || trap 'rm -rf "$WORK"' EXIT
START=$SECONDS

if [ "$DRY" = 1 ]; then
    MODE="CPU dry run (no wheel install, CUDA tests skip, tiny sizes, CPU expected in the logs)"
    if [ -x "$REPO/.venv/bin/python" ]; then PY=${PYTHON:-$REPO/.venv/bin/python}; else PY=${PYTHON:-python3}; fi
    BUDGET=${GPU_CHECK_BUDGET_S:-3600}
    CORES=${GPU_CHECK_CORES:-$(nproc)}
    EXPECT=cpu
    BENCH_ARGS=(--sizes 512 --quick --device cpu --threads 1)
    PIPELINE_LIMIT=1500  # 2 shared cores: several minutes
else
    MODE="GPU"
    PY=${PYTHON:-python3}
    BUDGET=${GPU_CHECK_BUDGET_S:-465}
    CORES=${GPU_CHECK_CORES:-16}
    EXPECT=cuda
    BENCH_ARGS=(--sizes 512 4096 32768 --device cuda --threads 4)
    PIPELINE_LIMIT=170
fi
PARTS=${GPU_CHECK_PARTS:-install env tests pipeline logcheck bench estimate}
BENCH_PARTS=${GPU_CHECK_BENCH_PARTS:-fg cg ratio train diffsim}
TABLES=$WORK/tables
export PY REPO WORK OUT CORES EXPECT

say() { echo "$*" | tee -a "$SUMMARY"; }

declare -A RC
ORDER=()
# run_part NAME LIMIT_S LOG COMMAND...: the command under `timeout`, capped by what is left of the
# budget less RESERVE seconds (30 unless set: the closing steps), output appended to LOG, rc recorded.
run_part() {
    local name=$1 want=$2 log=$3 left
    shift 3
    case " $PARTS " in
        *" $name "*) ;;
        *) say "== $name: not asked for (GPU_CHECK_PARTS)"; return ;;
    esac
    left=$((BUDGET - (SECONDS - START) - ${RESERVE:-30}))
    [ "$left" -lt "$want" ] && want=$left
    ORDER+=("$name")
    if [ "$want" -lt 10 ]; then
        say "== $name: not run (budget of ${BUDGET} s spent)"
        RC[$name]=124
        return
    fi
    say "== $name (limit ${want} s)"
    local t0=$SECONDS pid
    echo "== $name: $*" >>"$log"
    # In a session of its own, so that whatever the part leaves behind (a snakemake still
    # cleaning up after the time-out, say) is ended with it.
    setsid timeout --kill-after=15 "$want" "$@" >>"$log" 2>&1 &
    pid=$!
    wait "$pid"
    RC[$name]=$?
    kill -KILL -- "-$pid" 2>/dev/null
    say "== $name: rc ${RC[$name]} after $((SECONDS - t0)) s$(case "${RC[$name]}" in 124|137) echo " (timed out)" ;; esac)"
}

say "gpu_check: $MODE; $(date -u +%FT%TZ); $(nproc) cores; budget ${BUDGET} s; OUT=$OUT"

# --- install (GPU only; the exports must reach the later parts) --------------------------------
if [ "$DRY" = 0 ]; then
    if ls .whl/*.whl >/dev/null 2>&1; then
        run_part install 120 "$OUT/env.log" "$PY" -m pip install -q --no-index --no-deps --no-compile \
            --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    else
        ORDER+=(install)
        RC[install]=1
        say "== install: no wheels in .whl/ (run benchmarks/gpu_wheels.sh here and carry .whl)"
    fi
    export PYTHONPATH=/tmp/site:$REPO/src${PYTHONPATH:+:$PYTHONPATH}
    export PATH=/tmp/site/bin:$PATH
    # OpenMM's CUDA plugin looks for libnvrtc.so.13 and libcufft.so.12 in nvidia/cu13/lib beside
    # its own install folder, where a --target install has none: point it at the machine's.
    NVLIBS=$("$PY" -c "import glob, nvidia; print(':'.join(sorted({d for p in nvidia.__path__ for d in glob.glob(p + '/*/lib')})))" 2>/dev/null)
    export LD_LIBRARY_PATH=${NVLIBS}${NVLIBS:+:}/usr/local/cuda/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
else
    export PYTHONPATH=$REPO/src${PYTHONPATH:+:$PYTHONPATH}
fi

# --- env --------------------------------------------------------------------------------------
env_check() {
    echo "python: $("$PY" -c 'import sys; print(sys.executable, sys.version.split()[0])')"
    echo "glibc: $(ldd --version 2>/dev/null | head -1)"
    if command -v nvidia-smi >/dev/null; then
        nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
    fi
    "$PY" - <<'EOF'
import importlib.metadata as md
import os
import sys

failures = []
import torch
print(f"torch {torch.__version__} (CUDA {torch.version.cuda}); cuda available: {torch.cuda.is_available()}")
if torch.cuda.is_available():
    print(f"CUDA device: {torch.cuda.get_device_name()}, capability {torch.cuda.get_device_capability()}")
elif os.environ["EXPECT"] == "cuda":
    failures.append("torch sees no CUDA device")
import openmm
print(f"OpenMM {openmm.__version__} from {os.path.dirname(openmm.__file__)}")
names = [openmm.Platform.getPlatform(k).getName() for k in range(openmm.Platform.getNumPlatforms())]
print(f"OpenMM platforms: {names}")
for failure in openmm.Platform.getPluginLoadFailures():
    print(f"OpenMM plugin load failure: {failure}")
if os.environ["EXPECT"] == "cuda":
    try:
        system = openmm.System()
        system.addParticle(1.0)
        context = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("CUDA"))
        platform = context.getPlatform()
        print("OpenMM CUDA context:", {k: platform.getPropertyValue(context, k) for k in ("DeviceName", "Precision")})
    except Exception as error:
        failures.append(f"no OpenMM CUDA context: {error}")
for name, dist in (("thermocg", "thermocg"), ("snakemake", "snakemake"), ("mdtraj", "mdtraj"), ("vesin", "vesin"),
                   ("jsonschema", "jsonschema"), ("numpy", "numpy"), ("scipy", "scipy"), ("pandas", "pandas"),
                   ("matplotlib", "matplotlib"), ("yaml", "pyyaml"), ("pytest", "pytest")):
    try:
        module = __import__(name)
    except Exception as error:
        failures.append(f"import {name}: {error}")
        continue
    try:
        version = md.version(dist)
    except md.PackageNotFoundError:
        version = "(no metadata: from src/)"
    print(f"{name} {version} from {os.path.dirname(module.__file__)}")
# Requirements of the carried packages that the machine's own packages do not meet.
from packaging.requirements import Requirement
carried = [d for d in md.distributions() if str(d.locate_file("")).startswith("/tmp/site")]
for dist in carried:
    for text in dist.requires or []:
        requirement = Requirement(text)
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
            continue
        try:
            version = md.version(requirement.name)
        except md.PackageNotFoundError:
            version = None
        if version is None or not requirement.specifier.contains(version, prereleases=True):
            # openmm-cuda-13 asks for nvidia-cuda-nvcc; OpenMM compiles with NVRTC (gpu_wheels.sh)
            note = " (expected: not carried)" if requirement.name == "nvidia-cuda-nvcc" else ""
            print(f"unmet: {dist.metadata['Name']} requires {text}; found {version}{note}")
print(f"{len(carried)} carried packages in /tmp/site")
if failures:
    sys.exit("env: " + "; ".join(failures))
EOF
    local rc=$?
    "$PY" -m snakemake --version || rc=1
    return $rc
}
export -f env_check
run_part env 90 "$OUT/env.log" bash -c env_check

# --- tests ------------------------------------------------------------------------------------
cuda_tests() {
    local files rc
    files=$(grep -l "cuda.is_available\|needs CUDA" tests/test_*.py | tr '\n' ' ')
    echo "CUDA tests in: $files"
    # -s: the tests print what they measured (host synchronisations per step, for one)
    # shellcheck disable=SC2086
    "$PY" -m pytest -p no:cacheprovider -rs -v -s -k cuda $files
    rc=$?
    if [ "$rc" = 0 ] && [ "$EXPECT" = cuda ] && grep -q "SKIPPED" "$OUT/tests.log"; then
        echo "a CUDA test was skipped on the GPU machine: failure"
        return 1
    fi
    return $rc
}
export -f cuda_tests
run_part tests 120 "$OUT/tests.log" bash -c cuda_tests

# --- pipeline ---------------------------------------------------------------------------------
tiny_pipeline() {
    mkdir -p "$WORK/tiny"
    "$PY" - <<'EOF' || return 1
import os, yaml
config = yaml.safe_load(open(os.path.join(os.environ["REPO"], "config", "test.yaml")))
config["fg"]["platform"] = "auto" if os.environ["EXPECT"] == "cuda" else "CPU"
yaml.safe_dump(config, open(os.path.join(os.environ["WORK"], "tiny", "config.yaml"), "w"))
print("config/test.yaml with fg.platform", config["fg"]["platform"])
EOF
    "$PY" -m snakemake -s "$REPO/Snakefile" --directory "$WORK/tiny" --cores "$CORES" \
        --configfile "$WORK/tiny/config.yaml" --keep-going
}
export -f tiny_pipeline
run_part pipeline "$PIPELINE_LIMIT" "$OUT/pipeline.log" bash -c tiny_pipeline
if [ -d "$WORK/tiny/logs" ]; then
    tar czf "$OUT/pipeline_logs.tar.gz" -C "$WORK/tiny" logs \
        $(cd "$WORK/tiny" && ls -d results/benchmarks .snakemake/log 2>/dev/null)
fi

# --- logcheck ---------------------------------------------------------------------------------
check_logs() {
    "$PY" - <<'EOF'
"""Every GPU rule's log names the device it ran on; it must be CUDA (CPU in the dry run)."""
import os, re, sys
from pathlib import Path

sys.path.insert(0, os.path.join(os.environ["REPO"], "benchmarks"))
from bench_gpu import gpu_rules  # the rules the Slurm profile gives a GPU

logs = Path(os.environ["WORK"]) / "tiny" / "logs"
cuda = os.environ["EXPECT"] == "cuda"
openmm = (r"OpenMM platform: (\w+)", "CUDA" if cuda else "CPU")
training = (r"training on (\w+)", "cuda" if cuda else "cpu")
torch_md = (r"\bon (cuda|cpu)\b", "cuda" if cuda else "cpu")
# rule -> (glob of its log files, (pattern of the device line, the device it must name))
checks = {
    "sample_fg": ("fg/T*/sample_fg.log", openmm),
    "sample_fg_score": ("fg/T*/sample_fg_score.log", openmm),
    "sample_fg_fine": ("fg/T*/sample_fg_fine.log", openmm),
    "fit": ("models/*/fit.log", training),
    "fit_oracle": ("models/*/T*/fit.log", training),
    "sweep_fit": ("sweep/**/sweep_fit.log", training),
    "friction_lines": ("cgmd/*/friction_lines.log", torch_md),
    "cgmd": ("cgmd/*/T*/cgmd.log", torch_md),
    "dynamics_cg": ("dynamics/**/dynamics_cg.log", torch_md),
    "refine_diffsim": ("models/*_diffsim/refine_diffsim.log", torch_md),
}
# The stages every run has; the others (friction_lines, the dynamics rules) are not in
# config/test.yaml's DAG (its friction is a constant, it compares no friction laws).
required = {"sample_fg", "sample_fg_score", "fit", "fit_oracle", "sweep_fit", "cgmd", "refine_diffsim"}
bad = 0
unchecked = sorted(set(gpu_rules()) - set(checks))
if unchecked:
    print(f"GPU rules of the Slurm profile without a log check here: {unchecked}")
    bad += 1
print(f"{'rule':<16}{'logs':>5}{'on ' + ('CUDA' if cuda else 'CPU'):>9}  verdict")
for rule, (pattern_of_files, (pattern, want)) in checks.items():
    files = sorted(logs.glob(pattern_of_files))
    good, problems = 0, []
    for path in files:
        found = set(re.findall(pattern, path.read_text()))
        if found == {want}:
            good += 1
        else:
            problems.append(f"{path.relative_to(logs)}: {sorted(found) if found else 'no device line'}")
    if not files:
        ok = rule not in required
        verdict = "FAIL (no log found)" if not ok else "not in this DAG"
    else:
        ok = not problems
        verdict = "OK" if ok else "FAIL: " + "; ".join(problems[:3]) + (
            f"; ... {len(problems) - 3} more" if len(problems) > 3 else "")
    bad += not ok
    print(f"{rule:<16}{len(files):>5}{good:>9}  {verdict}")
sys.exit(1 if bad else 0)
EOF
}
export -f check_logs
run_part logcheck 60 "$OUT/pipeline.log" bash -c check_logs
[ -f "$OUT/pipeline.log" ] && sed -n '/^rule  *logs/,$p' "$OUT/pipeline.log" >>"$SUMMARY"

# --- bench (measurements) ---------------------------------------------------------------------
RESERVE=60 run_part bench 300 "$OUT/bench.log" env PYTHONUNBUFFERED=1 "$PY" benchmarks/bench_gpu.py "${BENCH_ARGS[@]}" \
    --parts $BENCH_PARTS --out-dir "$TABLES"

# --- estimate ---------------------------------------------------------------------------------
run_part estimate 90 "$OUT/bench.log" env PYTHONUNBUFFERED=1 "$PY" benchmarks/bench_gpu.py "${BENCH_ARGS[@]}" \
    --parts estimate --tiny-run "$WORK/tiny" --cores "$CORES" --out-dir "$TABLES"

if [ -d "$TABLES" ]; then
    tar czf "$OUT/tables.tar.gz" -C "$WORK" tables
    for table in "$TABLES"/*.tsv; do
        { echo; echo "## $(basename "$table")"; column -t -s $'\t' "$table" 2>/dev/null || cat "$table"; } >>"$SUMMARY"
    done
    [ -f "$TABLES/paper_estimate.txt" ] && { echo; cat "$TABLES/paper_estimate.txt"; } >>"$SUMMARY"
fi

# --- summary ----------------------------------------------------------------------------------
failed=0
say ""
say "gpu_check summary ($MODE), $((SECONDS - START)) s:"
for name in "${ORDER[@]}"; do
    say "  $(printf '%-9s' "$name") rc ${RC[$name]}$([ "${RC[$name]}" = 0 ] && echo ' ok' || echo ' FAILED')"
    [ "${RC[$name]}" = 0 ] || failed=1
done
[ -f "$OUT/tests.log" ] && grep -E "^=+ .*(passed|failed|skipped|error)" "$OUT/tests.log" | sed 's/^/  tests: /' | tee -a "$SUMMARY"
if [ -f "$TABLES/cg_fg_ratio.tsv" ]; then
    "$PY" - "$TABLES/cg_fg_ratio.tsv" <<'EOF' | tee -a "$SUMMARY"
import sys
import pandas as pd
for row in pd.read_csv(sys.argv[1], sep="\t").itertuples():
    print(f"  CG/FG ns/day at {row.molecules} molecules: {row.cg_over_fg_ns_per_day:.3g}"
          f" (CG {row.ns_per_day_cg:.4g}, FG {row.ns_per_day_fg:.4g} ns/day on {row.device} / {row.platform})")
EOF
fi
[ -f "$TABLES/paper_estimate.txt" ] && tail -1 "$TABLES/paper_estimate.txt" | sed 's/^/  /' | tee -a "$SUMMARY"
say "files in $OUT: $(ls "$OUT" | tr '\n' ' ')"
exit $failed
