#!/usr/bin/env bash
# Download into .whl/ (git-ignored) the wheels that the GPU machine lacks, for
# benchmarks/gpu_check.sh to install there (no network on that machine).
#
#     . .venv/bin/activate && bash benchmarks/gpu_wheels.sh
#
# The GPU machine (nvidia-h200: Python 3.12, torch 2.11.0+cu130, numpy 2.5.2, scipy, pandas,
# matplotlib, pyyaml, pytest, ...) has no openmm, mdtraj, vesin, jsonschema or snakemake. What is
# carried: the dependency closure of snakemake, openmm, mdtraj, vesin and jsonschema, evaluated
# for CPython 3.12 on x86-64 Linux with the versions installed in this venv (so the direct ones
# are pyproject.toml's pins), less the packages that machine already has (MACHINE below, read
# off its image on 2026-11-17), plus OpenMM's CUDA 13 platform plugin (openmm-cuda-13, same
# version as openmm: OpenMM's PyPI wheel has no CUDA platform of its own; the machine's driver
# and torch are CUDA 13). Not carried, on purpose:
#   - torch: the pinned 2.13.0 CUDA build is gigabytes; the machine's torch 2.11.0+cu130 is used;
#   - numpy, scipy, pandas, matplotlib, pyyaml: the machine's own versions are used (numpy 2.5.2
#     there, 2.4.6 pinned), since replacing them under its torch could break it;
#   - nvidia-cuda-nvcc (asked for by openmm-cuda-13): OpenMM compiles its kernels with NVRTC,
#     which the machine has (nvidia-cuda-nvrtc, with torch); the machine also has CUDA's nvcc;
#   - snakemake-executor-plugin-slurm: gpu_check.sh runs snakemake locally, not through Slurm.
# A package whose only release is a source archive (connection_pool 0.0.3) is built here into a
# py3-none-any wheel; anything not pure Python that has no cp312 wheel is an error.
#
# Prints every wheel with its size and the total, and fails if the wheels plus the rest of the
# working tree that travels to the machine exceed the 64 MiB a device call may carry.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
DEST=.whl
BUDGET_MIB=${GPU_WHEELS_BUDGET_MIB:-64}

"$PY" - <<'EOF' || { echo "gpu_wheels: run from the project's venv (. .venv/bin/activate)" >&2; exit 1; }
import snakemake, openmm, mdtraj, vesin, jsonschema, packaging  # noqa: F401
EOF

# Packages in the machine's image (KINDS.md, "Python packages already there", 2026-11-17),
# canonical names. Not carried.
MACHINE="absl-py accelerate aiofiles aiohappyeyeballs aiohttp aiosignal annotated-doc anyio attrs
botorch build certifi charset-normalizer chex click cloudpickle cmake colorama contourpy coverage
cuda-bindings cuda-core cuda-pathfinder cuda-toolkit cupy-cuda13x cycler cython diffrax e3nn einops
equinox etils execnet filelock flatbuffers flax fonttools formulaic frozenlist fsspec gpytorch grpcio
h11 h5py hf-xet httpcore httpx huggingface-hub humanize hypothesis idna imageio iniconfig
interface-meta jax jax-cuda13-pjrt jax-cuda13-plugin jaxlib jaxtyping jinja2 joblib kiwisolver
lazy-loader lightning lightning-utilities linear-operator lineax llvmlite lxml markdown
markdown-it-py markupsafe matplotlib mdurl meson ml-dtypes mpi4py mpmath msgpack multidict
multipledispatch mypy-extensions nanobind narwhals networkx ninja numba numba-cuda numpy numpyro
nvidia-cublas nvidia-cuda-cupti nvidia-cuda-nvrtc nvidia-cuda-runtime nvidia-cudnn-cu13 nvidia-cufft
nvidia-cufile nvidia-curand nvidia-cusolver nvidia-cusparse nvidia-cusparselt-cu13 nvidia-ml-py
nvidia-nccl-cu13 nvidia-nvjitlink nvidia-nvshmem-cu13 nvidia-nvtx onnx onnx-ir onnxruntime onnxscript
opencv-python-headless optax opt-einsum opt-einsum-fx optimistix orbax-checkpoint packaging pandas
pathspec patsy peft pillow pip pluggy portalocker prometheus-client propcache protobuf psutil pyarrow
pybind11 py-cpuinfo pygments pyparsing pyproject-hooks pyre-extensions pytest pytest-benchmark
pytest-cov pytest-mock pytest-timeout pytest-xdist python-dateutil pytorch-lightning pyyaml regex
requests rich sacrebleu safetensors scikit-build-core scikit-image scikit-learn scipy seaborn
sentencepiece sentence-transformers setuptools shellingham simplejson six sortedcontainers
statsmodels sympy tabulate tensorboard tensorboard-data-server tensorstore threadpoolctl tifffile
tiktoken timm tokenizers toolz torch torchaudio torchdiffeq torch-geometric torchmetrics torchvision
tqdm transformers treescope triton typer typing-extensions typing-inspect urllib3 uvloop
wadler-lindig werkzeug wheel wrapt xarray xxhash yarl zipp"

# NAME==VERSION of every package to carry (closure here, for CPython 3.12 on Linux x86-64).
WANTED=$(MACHINE="$MACHINE" "$PY" - <<'EOF'
import importlib.metadata as md
import os
import re
import sys
import tomllib

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

machine = set(os.environ["MACHINE"].split())
target = {"python_version": "3.12", "python_full_version": "3.12.3", "platform_system": "Linux",
          "sys_platform": "linux", "platform_machine": "x86_64", "implementation_name": "cpython",
          "platform_python_implementation": "CPython", "os_name": "posix", "extra": ""}
roots = ["snakemake", "openmm", "mdtraj", "vesin", "jsonschema"]
pins = {}
for spec in tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]:
    name, version = re.split(r"==", spec)
    pins[canonicalize_name(name)] = version
closure, stack = {}, [(name, ()) for name in roots]
while stack:
    name, extras = stack.pop()
    key = canonicalize_name(name)
    if key in closure:
        continue
    try:
        dist = md.distribution(name)
    except md.PackageNotFoundError:
        sys.exit(f"gpu_wheels: {name} is needed on Python 3.12 but not installed in this venv; add it by hand")
    closure[key] = dist.version
    for text in dist.requires or []:
        requirement = Requirement(text)
        if requirement.marker is None or any(requirement.marker.evaluate(dict(target, extra=e)) for e in ("", *extras)):
            stack.append((requirement.name, tuple(requirement.extras)))
for key in roots:
    key = canonicalize_name(key)
    if key in pins and closure[key] != pins[key]:
        sys.exit(f"gpu_wheels: this venv has {key} {closure[key]}, pyproject.toml pins {pins[key]}")
carried = {k: v for k, v in closure.items() if k not in machine}
carried["openmm-cuda-13"] = closure["openmm"]  # the CUDA platform plugin (see the header)
for key in sorted(carried):
    print(f"{key}=={carried[key]}")
EOF
)

rm -rf "$DEST" && mkdir -p "$DEST"
PLATFORMS="--platform manylinux_2_34_x86_64 --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64
           --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64"
BUILD=$(mktemp -d)
trap 'rm -rf "$BUILD"' EXIT
for requirement in $WANTED; do
    # shellcheck disable=SC2086
    if ! "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
            --abi cp312 --abi abi3 --abi none $PLATFORMS -d "$DEST" "$requirement" 2>"$BUILD/err"; then
        # No wheel for cp312: a pure-Python source release is built here into a universal wheel.
        if ! "$PY" -m pip wheel -q --no-deps --no-binary=:all: -w "$BUILD/wheel" "$requirement" 2>>"$BUILD/err"; then
            cat "$BUILD/err" >&2
            echo "gpu_wheels: no cp312 wheel and no source build for $requirement" >&2
            exit 1
        fi
        built=$(ls "$BUILD"/wheel/*.whl)
        case "$built" in
            *-py3-none-any.whl|*-py2.py3-none-any.whl) mv "$built" "$DEST"/ ;;
            *) echo "gpu_wheels: $requirement built as $(basename "$built"), not pure Python: cannot carry it" >&2; exit 1 ;;
        esac
        echo "built $(basename "$built") from its source release"
    fi
done

# One version of each package (two stop the whole install there).
dups=$(ls "$DEST" | sed -E 's/-[0-9].*//' | tr 'A-Z_.' 'a-z--' | sort | uniq -d)
[ -z "$dups" ] || { echo "gpu_wheels: more than one wheel of: $dups" >&2; exit 1; }

wheels_bytes=$(du -cb "$DEST"/*.whl | tail -1 | cut -f1)
# The rest of what travels: tracked and untracked-not-ignored files of the working tree.
tree_bytes=$(git ls-files -z --cached --others --exclude-standard | xargs -0 -r du -cb 2>/dev/null | awk '/\ttotal$/ {s += $1} END {print s + 0}')
ls -l "$DEST" | awk 'NR > 1 {printf "%10.2f MiB  %s\n", $5 / 1048576, $9}'
total=$((wheels_bytes + tree_bytes))
budget=$((BUDGET_MIB * 1048576))
awk -v n="$(ls "$DEST"/*.whl | wc -l)" -v w="$wheels_bytes" -v t="$tree_bytes" -v b="$BUDGET_MIB" 'BEGIN {
    printf "gpu_wheels: %d wheels, %.1f MiB; working tree %.1f MiB; together %.1f of %d MiB\n", n, w / 2^20, t / 2^20, (w + t) / 2^20, b }'
if [ "$total" -gt "$budget" ]; then
    echo "gpu_wheels: OVER BUDGET: a device call carries at most $BUDGET_MIB MiB (wheels + working tree)" >&2
    exit 1
fi
