"""Rule dynamics_table: D_CG / D_FG per model, friction law and temperature (results/metrics/dynamics.tsv)."""

import json

from thermocg import friction, io, logs

log = logs.to_file(snakemake.log[0])
fg = [json.loads(open(path).read()) for path in snakemake.input.fg]
# one row per (model, law, T); a run shared at T0 reports under each law it serves
cg = [dict(json.loads(open(path).read()), law=law)
      for path, (model, law, t) in zip(snakemake.input.cg, snakemake.params.runs)]
table = friction.dynamics_table(fg, cg)
io.write_table(snakemake.output.table, table, comment="D in nm^2/ps (x1000 = 1e-5 cm^2/s); errors: standard "
               "errors over groups of beads; ratio = D_CG / D_FG; gamma in 1/ps; timestep in ps (thermocg.friction)")
log.info("\n%s", table.to_string())
