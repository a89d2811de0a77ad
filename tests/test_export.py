"""The exported TorchScript module (thermocg.export) against thermocg's own energies and forces."""

import inspect
import subprocess
import sys

import numpy as np
import pytest
import torch

from thermocg import export, md, nn
from thermocg.neighbors import NeighborList
from thermocg.units import KB, cubic_box_length

pytestmark = pytest.mark.usefixtures("one_thread")

CUTOFF = 0.5  # nm
T0 = 300.0  # K
N_BEADS = 125
BOX = cubic_box_length(N_BEADS, 0.997)  # 1.554 nm > 2 cutoff


def small_model(dtype="float32", seed=0, **overrides):
    torch.manual_seed(seed)
    config = dict(n_features=12, n_sensitivities=6, n_interaction_layers=2, n_dense_layers=1, cutoff=CUTOFF,
                  sensitivity_soft_min=0.2, sensitivity_soft_max=0.45, heads=("W0", "W1", "W2"),
                  head_scales={"W1": 30.0, "W2": 300.0}, dtype=dtype)  # thermal terms of a visible size
    config.update(overrides)
    return nn.CGModel(**config)


def liquid_like(seed=0):
    """A jittered lattice at water density: every bead has neighbours, some across the box edges."""
    side = round(N_BEADS ** (1 / 3))
    grid = (np.stack(np.meshgrid(*[np.arange(side)] * 3, indexing="ij"), -1).reshape(-1, 3) + 0.5) * BOX / side
    return grid + np.random.default_rng(seed).uniform(-0.06, 0.06, grid.shape)  # some beads outside [0, L)


def exported(tmp_path, model, name="model"):
    nn.save_model(tmp_path / f"{name}.pt", model, {"name": name, "kind": "trf2", "T0_K": T0})
    export.export_model(tmp_path / f"{name}.pt", tmp_path / f"{name}_export.pt")
    return export.load_exported(tmp_path / f"{name}_export.pt")


def thermocg_energy_forces(model, positions, temperature):
    dtype = next(model.parameters()).dtype
    box = torch.full((3,), BOX, dtype=dtype)
    force_field = md.ForceField(model, box, md.dbeta_for(temperature, T0), skin=0.0)
    return force_field(torch.as_tensor(positions, dtype=dtype))


@pytest.mark.parametrize("temperature", [260.0, T0, 360.0])
def test_float32_export_matches_thermocg_within_round_off(tmp_path, temperature):
    model = small_model()
    module, _ = exported(tmp_path, model)
    positions = liquid_like()
    energy, forces = thermocg_energy_forces(model, positions, temperature)
    energy_x, forces_x = export.energy_and_forces(module, positions, [BOX] * 3, temperature)
    scale = float(forces.abs().max())
    assert scale > 1.0  # the test means something: forces of a few kJ/(mol nm) at least
    # float32 round-off: the sums run in another order (another pair list)
    assert abs(float(energy_x) - float(energy)) <= 1e-5 * (1.0 + abs(float(energy)))
    assert float((forces_x - forces).abs().max()) <= 2e-5 * scale


def test_float64_export_matches_to_double_precision_and_depends_on_temperature(tmp_path):
    model = small_model(dtype="float64")
    module, _ = exported(tmp_path, model)
    positions = liquid_like(seed=1)
    energies = []
    for temperature in (280.0, 340.0):
        energy, forces = thermocg_energy_forces(model, positions, temperature)
        energy_x, forces_x = export.energy_and_forces(module, positions, [BOX] * 3, temperature)
        assert forces_x.dtype == torch.float64
        assert abs(float(energy_x - energy)) < 1e-10 * (1.0 + abs(float(energy)))
        assert float((forces_x - forces).abs().max()) < 1e-10 * float(forces.abs().max())
        energies.append(float(energy_x))
    assert abs(energies[0] - energies[1]) > 1e-3, "one file, two temperatures: the thermal heads must count"


def test_any_head_type_exports(tmp_path):
    """The module only calls CGModel.forward, so pair heads (or any other) export as well."""
    if "pair_heads" not in inspect.signature(nn.CGModel).parameters:
        pytest.skip("this CGModel has no pair heads")
    model = small_model(pair_heads=("W1", "W2"), pair_basis={"n_basis": 6, "r_min": 0.22})
    with torch.no_grad():
        for name in ("W1", "W2"):
            model.heads[name].coefficients.copy_(torch.linspace(-50.0, 80.0, 6))
    module, _ = exported(tmp_path, model)
    positions = liquid_like(seed=2)
    energy, forces = thermocg_energy_forces(model, positions, 330.0)
    energy_x, forces_x = export.energy_and_forces(module, positions, [BOX] * 3, 330.0)
    assert abs(float(energy_x) - float(energy)) <= 1e-5 * (1.0 + abs(float(energy)))
    assert float((forces_x - forces).abs().max()) <= 2e-5 * float(forces.abs().max())


def test_minimum_image_pairs_are_thermocg_neighbour_pairs():
    positions = torch.as_tensor(liquid_like(seed=3))
    box = torch.full((3,), BOX, dtype=torch.float64)
    i, j, shift = export.minimum_image_pairs(positions, box, CUTOFF, block_elements=300)  # several blocks
    reference = NeighborList(CUTOFF)(positions, box)

    def as_set(i, j, shift):
        return {(a, b, *np.round(s, 6)) for a, b, s in zip(i.tolist(), j.tolist(), shift.numpy())}

    found = as_set(i, j, shift)
    assert len(found) == len(i) > 10 * N_BEADS
    assert found == as_set(*reference)


def test_the_file_carries_its_metadata_and_runs_without_thermocg(tmp_path):
    model = small_model()
    _, metadata = exported(tmp_path, model)
    assert metadata["T0_K"] == T0 and metadata["cutoff_nm"] == CUTOFF and metadata["model"]["name"] == "model"
    assert metadata["openmm_temperature_parameter"] == export.TEMPERATURE_PARAMETER
    positions = liquid_like()
    energy, _ = thermocg_energy_forces(model, positions, 320.0)
    np.save(tmp_path / "x.npy", positions)
    script = f"""
import sys
sys.modules["thermocg"] = None  # importing thermocg now fails: the file must not need it
import numpy as np, torch
module = torch.jit.load({str(tmp_path / 'model_export.pt')!r})
x = torch.tensor(np.load({str(tmp_path / 'x.npy')!r}), dtype=torch.float32, requires_grad=True)
energy = module(x, torch.eye(3) * {BOX!r}, torch.tensor(320.0, dtype=torch.float64))
energy.backward()
print(float(energy), float(x.grad.abs().max()))
"""
    result = subprocess.run([sys.executable, "-c", script], check=False, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    value, gradient = map(float, result.stdout.split())
    assert value == pytest.approx(float(energy), rel=1e-5) and gradient > 0


def test_bad_input_is_refused_with_clear_errors(tmp_path):
    model = small_model()
    module, _ = exported(tmp_path, model)
    x = torch.as_tensor(liquid_like(), dtype=torch.float32)
    temperature = torch.tensor(300.0, dtype=torch.float64)
    skewed = torch.eye(3) * BOX
    skewed[1, 0] = 0.3
    with pytest.raises(Exception, match="orthorhombic"):
        module(x, skewed, temperature)
    with pytest.raises(Exception, match="twice the model's cutoff"):
        module(x, torch.eye(3) * 0.9, temperature)
    nn.save_model(tmp_path / "no_t0.pt", model, {"name": "no_t0"})
    with pytest.raises(ValueError, match="stores no reference temperature"):
        export.export_model(tmp_path / "no_t0.pt", tmp_path / "out.pt")
    export.export_model(tmp_path / "no_t0.pt", tmp_path / "out.pt", reference_temperature=290.0)
    assert export.load_exported(tmp_path / "out.pt")[1]["T0_K"] == 290.0
    with pytest.raises(FileNotFoundError):
        export.load_exported(tmp_path / "missing.pt")
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), tmp_path / "foreign.pt")
    with pytest.raises(ValueError, match="not one written by thermocg.export"):
        export.load_exported(tmp_path / "foreign.pt")


def test_openmm_runs_the_exported_file_at_any_temperature(tmp_path):
    """Needs an openmm-torch build that works with this torch and OpenMM (none on PyPI did: docs/usage.md)."""
    pytest.importorskip("openmmtorch", reason="no openmm-torch build installs beside torch 2.13 / OpenMM 8.6")
    import openmm

    model = small_model()
    exported(tmp_path, model)
    positions = liquid_like()
    system = export.openmm_system(tmp_path / "model_export.pt", N_BEADS, [BOX] * 3)
    context = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
    context.setPositions(positions)
    for temperature in (280.0, 340.0):
        context.setParameter(export.TEMPERATURE_PARAMETER, temperature)
        state = context.getState(getEnergy=True, getForces=True)
        energy, forces = thermocg_energy_forces(model, positions, temperature)
        assert state.getPotentialEnergy()._value == pytest.approx(float(energy), rel=1e-5, abs=1e-5)
        np.testing.assert_allclose(state.getForces(asNumpy=True)._value, forces.numpy(),
                                   atol=2e-5 * float(forces.abs().max()))



def test_a_reduced_expansion_model_refuses_another_t0(tmp_path):
    """The reduced expansion's beta0/beta factor is built on the model's own T0: another T0 would move dbeta
    only, a model of no kind. The beta series takes any T0 (a consistent, if different, model)."""
    reduced = small_model(expansion="reduced", reference_beta=1.0 / (KB * T0))
    positions, box = liquid_like(), np.full(3, BOX)
    md.Simulation(reduced, positions, box, 350.0, reference_temperature=T0, device="cpu")  # its own T0
    with pytest.raises(ValueError, match="reduced expansion is built on its own T0, 300 K"):
        md.Simulation(reduced, positions, box, 350.0, reference_temperature=320.0, device="cpu")
    with pytest.raises(ValueError, match="reduced expansion is built on its own T0"):
        nn.save_model(tmp_path / "reduced.pt", reduced, {"name": "reduced", "kind": "trf1", "T0_K": T0})
        export.export_model(tmp_path / "reduced.pt", tmp_path / "x.pt", reference_temperature=320.0)
    md.Simulation(small_model(), positions, box, 350.0, reference_temperature=320.0, device="cpu")  # beta series
