"""A trained CG model as one TorchScript file that runs without thermocg: in OpenMM or in torch alone.

The exported module has the signature that openmm-torch's TorchForce calls:

    energy = module(positions, box_vectors, temperature)

positions (N, 3) in nm, box_vectors (3, 3) in nm (rows are the box vectors; orthorhombic boxes only,
as in thermocg's engine), temperature a 0-d tensor in K -> W(R; beta(T)) in kJ/mol (0-d tensor).
Forces are -dW/dR by autograd (OpenMM does that itself). The model's reference temperature T0 is
stored in the module, which computes dbeta = 1/(k_B T) - 1/(k_B T0) itself, so one file serves every
temperature: in OpenMM the temperature is the context's global parameter :data:`TEMPERATURE_PARAMETER`.

The module finds its own neighbours: every pair closer than the cutoff under the minimum image,
by brute force over blocks of rows (O(N^2) work, bounded memory). The minimum image gives every
pair exactly once when each box edge is at least twice the cutoff, the condition thermocg's engine
has too; a smaller box is refused. Whatever the head types of the model, the module only calls its
``forward`` (thermocg.nn.CGModel), so the energy is the one thermocg computes, up to the order of the
float sums.

The file also holds the model's metadata (name, kind, T0, cutoff, ...) as JSON; read it back with
:func:`load_exported`.
"""

import json
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import List, Tuple

import torch
from torch import Tensor

from thermocg import nn
from thermocg.io import atomic_write
from thermocg.units import KB

#: Name of the OpenMM global parameter that holds the temperature (K) of an exported model.
TEMPERATURE_PARAMETER = "thermocg_temperature"
#: Name of the JSON metadata inside an exported file.
METADATA_NAME = "thermocg_metadata.json"
#: Format tag stored in the metadata (bump when the module's signature changes).
EXPORT_FORMAT = "thermocg.export/1"
#: At most this many (row, column) distances are held at once by the neighbour search.
PAIR_BLOCK_ELEMENTS = 1 << 20


@contextmanager
def _torchscript():
    """torch 2.13 calls TorchScript deprecated; it is still what openmm-torch loads, so say it once, in the docs."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"`torch\.jit\.\w+` is deprecated", category=DeprecationWarning)
        yield


def minimum_image_pairs(positions: Tensor, box: Tensor, cutoff: float, block_elements: int = PAIR_BLOCK_ELEMENTS
                        ) -> Tuple[Tensor, Tensor, Tensor]:
    """Full pair list (i, j, shift) of the pairs closer than ``cutoff`` (nm) in an orthorhombic box (3,) nm.

    thermocg's convention: displacement = positions[j] - positions[i] + shift; each pair appears as
    (i, j) and (j, i). Only the pairs j > i are searched (blocks of rows against the columns from
    the block on), then mirrored. The shifts carry no gradient (the model differentiates the
    displacement through the positions).
    """
    n = positions.shape[0]
    x = positions.detach()
    rows_per_block = max(1, block_elements // max(n, 1))
    firsts: List[Tensor] = [torch.zeros(0, dtype=torch.long, device=x.device)]
    seconds: List[Tensor] = [torch.zeros(0, dtype=torch.long, device=x.device)]
    shifts: List[Tensor] = [x.new_zeros((0, 3))]
    for start in range(0, n, rows_per_block):
        stop = min(start + rows_per_block, n)
        raw = x[start:].unsqueeze(0) - x[start:stop].unsqueeze(1)  # (rows, N - start, 3): x_j - x_i
        shift = -box * torch.round(raw / box)
        close = (raw + shift).square().sum(2) < cutoff * cutoff
        close = torch.triu(close, diagonal=1)  # j > i only (column k is bead start + k)
        found = torch.nonzero(close)
        firsts.append(found[:, 0] + start)
        seconds.append(found[:, 1] + start)
        shifts.append(shift[found[:, 0], found[:, 1]])
    i, j, shift = torch.cat(firsts), torch.cat(seconds), torch.cat(shifts)
    return torch.cat([i, j]), torch.cat([j, i]), torch.cat([shift, -shift])


class ExportedModel(torch.nn.Module):
    """(positions nm, box_vectors nm, temperature K) -> W(R; beta(T)) kJ/mol, for TorchScript and OpenMM."""

    def __init__(self, model: torch.nn.Module, reference_temperature: float):
        super().__init__()
        if not reference_temperature or reference_temperature <= 0:
            raise ValueError(f"reference temperature T0 must be > 0 K, got {reference_temperature}")
        nn.check_reference_temperature(model, reference_temperature)
        self.model = model
        self.cutoff = float(model.cutoff)
        self.reference_temperature = float(reference_temperature)
        self.beta0 = 1.0 / (KB * self.reference_temperature)  # mol/kJ, in double precision
        self.kb = KB  # kJ/(mol K); a module attribute because TorchScript reads no globals
        self.block_elements = PAIR_BLOCK_ELEMENTS

    def forward(self, positions: Tensor, box_vectors: Tensor, temperature: Tensor) -> Tensor:
        dtype = self.model.dtype_reference.dtype
        if bool((box_vectors - torch.diag_embed(torch.diagonal(box_vectors))).abs().max() > 0):
            raise RuntimeError("thermocg models support orthorhombic boxes only (box vectors along x, y, z)")
        box = torch.diagonal(box_vectors).to(dtype)
        if bool((box < 2.0 * self.cutoff).any()):
            raise RuntimeError("every box edge must be at least twice the model's cutoff")
        x = positions.to(dtype)
        i, j, shift = minimum_image_pairs(x, box, self.cutoff, self.block_elements)
        # in double, then rounded once: the same dbeta as thermocg.md.ForceField
        dbeta = (1.0 / (self.kb * temperature.to(torch.float64)) - self.beta0).to(dtype)
        return self.model(x, i, j, shift, dbeta)


def reference_temperature_of(metadata, path="the model"):
    """T0 (K) from a model file's metadata, or a clear error."""
    t0 = metadata.get("T0_K")
    if t0 is None:
        raise ValueError(f"{path} stores no reference temperature (metadata T0_K): pass it explicitly (K)")
    return float(t0)


def export_model(model_path, output_path, reference_temperature=None):
    """Write a thermocg model file (nn.save_model) as a TorchScript file for OpenMM or torch; returns its metadata.

    ``reference_temperature`` (K) defaults to the model file's T0.
    """
    model, metadata = nn.load_model(model_path)
    t0 = float(reference_temperature) if reference_temperature is not None else reference_temperature_of(metadata, model_path)
    with _torchscript():
        module = torch.jit.script(ExportedModel(model, t0))
    info = {
        "format": EXPORT_FORMAT,
        "source": str(model_path),
        "model": metadata,
        "T0_K": t0,
        "cutoff_nm": float(model.cutoff),
        "dtype": str(model.dtype_reference.dtype).removeprefix("torch."),
        "signature": "energy kJ/mol = module(positions (N,3) nm, box_vectors (3,3) nm, temperature 0-d K)",
        "openmm_temperature_parameter": TEMPERATURE_PARAMETER,
    }
    extra = {METADATA_NAME: json.dumps(info)}
    with _torchscript():
        atomic_write(output_path, lambda tmp: torch.jit.save(module, tmp, _extra_files=extra))
    return info


def load_exported(path, map_location="cpu"):
    """(scripted module, metadata dict) of a file written by :func:`export_model`."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no exported model at {path}")
    extra = {METADATA_NAME: ""}
    with _torchscript():
        module = torch.jit.load(str(path), map_location=map_location, _extra_files=extra)
    if not extra[METADATA_NAME]:
        raise ValueError(f"{path} is a TorchScript file but not one written by thermocg.export")
    return module, json.loads(extra[METADATA_NAME])


def energy_and_forces(module, positions, box, temperature):
    """(W kJ/mol, forces (N, 3) kJ/(mol nm)) of an exported module: what OpenMM computes from it.

    positions (N, 3) and box (3,) in nm (tensors or arrays), temperature in K.
    """
    dtype = module.model.dtype_reference.dtype
    positions = torch.as_tensor(positions, dtype=dtype).detach().requires_grad_(True)
    box_vectors = torch.diag(torch.as_tensor(box, dtype=dtype).reshape(3))
    energy = module(positions, box_vectors, torch.tensor(float(temperature), dtype=torch.float64))
    (gradient,) = torch.autograd.grad(energy, positions)
    return energy.detach(), -gradient


def openmm_force(path):
    """An openmm-torch TorchForce that runs an exported file, periodic, its temperature the global
    parameter :data:`TEMPERATURE_PARAMETER` (K, starts at the model's T0; change it with
    ``context.setParameter``). Needs the openmmtorch package (see docs/usage.md)."""
    try:
        import openmmtorch
    except ImportError as error:
        raise ImportError(
            "openmm-torch (the openmmtorch module) is not installed: see docs/usage.md for which builds "
            "work beside this torch; the exported file still runs with torch alone (load_exported)"
        ) from error
    _, metadata = load_exported(path)
    force = openmmtorch.TorchForce(str(path))
    force.setUsesPeriodicBoundaryConditions(True)
    force.addGlobalParameter(TEMPERATURE_PARAMETER, float(metadata["T0_K"]))
    return force


def openmm_system(path, n_beads, box, masses=None):
    """An openmm.System of ``n_beads`` CG beads (masses amu, default water's) in the box (3,) nm,
    with the exported model as its only force."""
    import openmm

    from thermocg.units import WATER_MASS

    masses = [WATER_MASS] * n_beads if masses is None else [float(m) for m in masses]
    if len(masses) != n_beads:
        raise ValueError(f"{len(masses)} masses for {n_beads} beads")
    system = openmm.System()
    for mass in masses:
        system.addParticle(mass)
    a, b, c = (float(v) for v in box)
    system.setDefaultPeriodicBoxVectors(openmm.Vec3(a, 0, 0), openmm.Vec3(0, b, 0), openmm.Vec3(0, 0, c))
    system.addForce(openmm_force(path))
    return system
