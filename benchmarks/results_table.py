"""Where the benchmark tables go: benchmarks/results/<name>.tsv (git-ignored), printed as well."""

from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def write(table, path):
    """Write a DataFrame as TSV (4 significant digits) and print it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(path, sep="\t", index=False, float_format="%.4g")
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
