"""Checkpoints bound to their inputs (thermocg.checkpoints) and clear errors for damaged files."""

import logging
import resource
import signal

import numpy as np
import pytest

from thermocg import checkpoints, io


def save_arrays(path, fingerprint, **arrays):
    checkpoints.save(path, fingerprint, lambda handle: np.savez(handle, **arrays))


def test_a_checkpoint_loads_back_only_for_its_fingerprint(tmp_path, caplog):
    data = tmp_path / "data.bin"
    data.write_bytes(b"frames")
    fingerprint = checkpoints.fingerprint({"fit": {"learning_rate": 0.01}, "seed": 1}, {"data": data})
    path = tmp_path / "state.ckpt"
    assert checkpoints.load(path, fingerprint) is None  # none yet: start fresh
    save_arrays(path, fingerprint, x=np.arange(3.0))
    np.testing.assert_array_equal(np.load(checkpoints.load(path, fingerprint))["x"], np.arange(3.0))

    data.write_bytes(b"other frames")
    changed = checkpoints.fingerprint({"fit": {"learning_rate": 0.001}, "seed": 1}, {"data": data})
    caplog.set_level(logging.INFO)
    assert checkpoints.load(path, changed) is None
    [line] = [record.getMessage() for record in caplog.records]
    assert str(path) in line and "fit.learning_rate 0.01 (now 0.001)" in line and "another data file" in line
    assert not path.exists() and (tmp_path / "state.ckpt.stale").exists()


@pytest.mark.parametrize("damage", ["flip", "truncate", "not a checkpoint"])
def test_a_damaged_checkpoint_is_reported_with_its_path(tmp_path, damage):
    path = tmp_path / "state.ckpt"
    fingerprint = checkpoints.fingerprint({"a": 1})
    save_arrays(path, fingerprint, x=np.arange(100.0))
    data = bytearray(path.read_bytes())
    if damage == "flip":
        data[-300] ^= 0x04  # a bit of the array, as a failing disk would
    elif damage == "truncate":
        data = data[: len(data) // 2]
    else:
        data = bytearray(b"PK\x03\x04 an npz of an older version")
    path.write_bytes(bytes(data))
    with pytest.raises(checkpoints.CheckpointError, match=f"checkpoint {path} .*delete it to start this job afresh"):
        checkpoints.load(path, fingerprint)
    assert path.exists(), "a damaged checkpoint is left for the user to inspect"


def frames_file(path):
    io.save_frames(path, positions=np.random.default_rng(0).normal(size=(4, 10, 3)), time=np.arange(4.0))
    return path


@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_a_damaged_frame_file_names_its_path_and_the_fix(tmp_path, damage):
    path = frames_file(tmp_path / "beads.npz")
    data = bytearray(path.read_bytes())
    if damage == "flip":
        data[200] ^= 0x01  # inside the positions array: a CRC mismatch
    else:
        data = data[:-50]
    path.write_bytes(bytes(data))
    with pytest.raises(io.DamagedFileError, match=f"{path} is damaged or truncated .*snakemake --cores 1 -R {path}"):
        io.load_frames(path)


def test_a_failed_write_names_the_file_and_leaves_nothing_behind(tmp_path):
    """Files may grow to 4 KiB only (as on a full disk): the DCD writer's failure (mdtraj reports
    it as a TypeError) and a plain write's both surface as an OSError naming the output."""
    positions = np.zeros((20, 50, 3))
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (4096, hard))
    try:
        with pytest.raises(OSError, match=f"cannot write {tmp_path / 'trajectory.dcd'}"):
            io.write_cg_trajectory(tmp_path / "trajectory.dcd", tmp_path / "topology.pdb", positions,
                                   np.ones((20, 3)), np.arange(20.0))
        with pytest.raises(OSError, match=f"cannot write {tmp_path / 'frames.npz'}: File too large"):
            io.save_frames(tmp_path / "frames.npz", positions=positions)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, handler)
    assert list(tmp_path.iterdir()) == []
