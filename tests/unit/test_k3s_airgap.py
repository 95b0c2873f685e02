"""The lab's airgap folder (tasks/lab/airgap.py): which airgap_dir lab.up fills, and the
stand-in build copied over only when its bytes differ."""
from __future__ import annotations

from pathlib import Path

from tasks.core import inventory
from tasks.lab import airgap

ROOT = Path(__file__).resolve().parents[2]


def _inv(tmp: Path, airgap_dir: str) -> inventory.Inventory:
    text = (ROOT / "hosts.toml").read_text().replace('airgap_dir = ".lab/kha/airgap"',
                                                      f"airgap_dir = {airgap_dir!r}")
    path = tmp / "hosts.toml"
    path.write_text(text)
    return inventory.load(path)


def test_only_a_relative_folder_inside_dot_lab_is_filled(tmp_path: Path) -> None:
    assert airgap.lab_airgap_dir(_inv(tmp_path, ".lab/kha/airgap")) == \
        (tmp_path / ".lab/kha/airgap").resolve()
    assert airgap.lab_airgap_dir(_inv(tmp_path, "airgap")) is None
    assert airgap.lab_airgap_dir(_inv(tmp_path, ".lab")) is None
    assert airgap.lab_airgap_dir(_inv(tmp_path, ".lab/../x")) is None
    assert airgap.lab_airgap_dir(_inv(tmp_path, str(tmp_path / ".lab/kha/a"))) is None


def test_build_fills_once_and_is_byte_identical(tmp_path: Path) -> None:
    inv = _inv(tmp_path, ".lab/kha/airgap")
    assert airgap.ensure_airgap(inv) is True
    folder = tmp_path / ".lab/kha/airgap"
    assert sorted(p.name for p in folder.iterdir()) == ["install.sh", "k3s"]
    before = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in folder.iterdir()}
    assert airgap.ensure_airgap(inv) is False  # same sources: nothing rewritten
    assert {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in folder.iterdir()} == before
    assert (folder / "k3s").stat().st_mode & 0o777 == 0o755


def test_a_changed_file_is_replaced(tmp_path: Path) -> None:
    inv = _inv(tmp_path, ".lab/kha/airgap")
    airgap.ensure_airgap(inv)
    (tmp_path / ".lab/kha/airgap/install.sh").write_text("tampered\n")
    assert airgap.ensure_airgap(inv) is True
    assert "tampered" not in (tmp_path / ".lab/kha/airgap/install.sh").read_text()
