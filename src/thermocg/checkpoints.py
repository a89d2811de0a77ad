"""Checkpoints bound to what produced them (sampling, training, CG MD, DiffSim).

A checkpoint file is one header line of JSON after a magic line, then the payload bytes (an
``np.savez`` or ``torch.save`` archive). The header holds the payload's SHA-256 and the
fingerprint of the job: the settings the numbers depend on (canonical JSON) and the SHA-256 of
every input file. Loading one:

- no file: start fresh;
- another fingerprint (a changed setting or input): it is renamed ``<name>.stale`` with one log
  line naming what changed, and the job starts fresh;
- unreadable, or a payload that fails its checksum: :class:`CheckpointError` names the path.

Jobs remove their checkpoint once their outputs are written, so a forced rerun recomputes.
"""

import hashlib
import json
import logging
import os
from io import BytesIO
from pathlib import Path

import numpy as np

from thermocg import io

log = logging.getLogger(__name__)

MAGIC = b"thermocg checkpoint 1\n"


class CheckpointError(Exception):
    """A checkpoint that cannot be used; the message names it and says what to do."""

    def __init__(self, path, problem):
        super().__init__(f"checkpoint {path} {problem}; delete it to start this job afresh")


def file_hash(paths):
    """SHA-256 of the bytes of these files, in sorted order of their paths."""
    digest = hashlib.sha256()
    for path in sorted(map(str, paths)):
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def array_digest(*values):
    """SHA-256 of arrays (numpy, torch or None) as float64, for a fingerprint's settings."""
    digest = hashlib.sha256()
    for value in values:
        if value is None:
            digest.update(b"none")
        else:
            value = value.detach().cpu().numpy() if hasattr(value, "detach") else value
            digest.update(np.ascontiguousarray(value, dtype=np.float64).tobytes())
    return digest.hexdigest()


def _canonical(value):
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def fingerprint(settings, inputs=None):
    """What a checkpoint must match to be resumed: plain-JSON ``settings`` and the SHA-256 of each
    input file (``inputs`` maps a name, e.g. "model", to a path)."""
    return {
        "settings": json.loads(_canonical(settings)),
        "inputs": {name: file_hash([path]) for name, path in (inputs or {}).items()},
    }


def save(path, fingerprint, write):
    """Write a checkpoint atomically; ``write(handle)`` writes the payload into a binary buffer."""
    buffer = BytesIO()
    write(buffer)
    payload = buffer.getvalue()
    header = _canonical({"fingerprint": fingerprint, "payload_sha256": hashlib.sha256(payload).hexdigest()})
    io.atomic_write(path, lambda tmp: Path(tmp).write_bytes(MAGIC + header.encode() + b"\n" + payload))


def read(path):
    """(header dict, payload bytes) of a checkpoint; CheckpointError if it is damaged."""
    try:
        data = Path(path).read_bytes()
    except OSError as error:
        raise CheckpointError(path, f"cannot be read ({error})") from error
    line, _, payload = data[len(MAGIC):].partition(b"\n")
    try:
        if not data.startswith(MAGIC):
            raise ValueError("no magic line")
        header = json.loads(line)
        expected = header["payload_sha256"]
    except (ValueError, KeyError, TypeError) as error:
        raise CheckpointError(path, "is not a thermocg checkpoint, or its header is damaged") from error
    if hashlib.sha256(payload).hexdigest() != expected:
        raise CheckpointError(path, "is damaged (its payload does not match its checksum)")
    return header, payload


def load(path, fingerprint):
    """The payload (a binary buffer) of the checkpoint at ``path`` if it belongs to ``fingerprint``,
    else None (no checkpoint, or one set aside because its settings or inputs differ)."""
    path = Path(path)
    if not path.exists():
        return None
    header, payload = read(path)
    saved = header["fingerprint"]
    if _canonical(saved) != _canonical(fingerprint):
        stale = path.with_name(path.name + ".stale")
        os.replace(path, stale)
        log.warning("checkpoint %s set aside as %s, starting afresh: it was made with %s", path, stale.name,
                    "; ".join(_differences(saved, fingerprint)))
        return None
    return BytesIO(payload)


def _flatten(value, prefix=""):
    if not isinstance(value, dict):
        return {prefix: value}
    flat = {}
    for key, item in value.items():
        flat.update(_flatten(item, f"{prefix}.{key}" if prefix else str(key)))
    return flat


def _differences(saved, current):
    """What differs between two fingerprints, e.g. 'training.learning_rate 0.01 (now 0.001)'."""
    old, new = _flatten(saved.get("settings", {})), _flatten(current["settings"])
    changed = [f"{key} {old.get(key)} (now {new.get(key)})" for key in sorted(old.keys() | new.keys())
               if old.get(key) != new.get(key)]
    files = saved.get("inputs", {}), current["inputs"]
    changed += [f"another {name} file" for name in sorted(files[0].keys() | files[1].keys())
                if files[0].get(name) != files[1].get(name)]
    return changed or ["another fingerprint"]
