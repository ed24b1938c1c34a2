"""`sheaftune generate` at the CLI boundary: help, exit codes, atomic output, stdout text."""

from __future__ import annotations

from pathlib import Path

import pytest

from sheaftune.cli import main

ROOT = Path(__file__).resolve().parents[2]
CHURN = str(ROOT / "workloads" / "maple-vma-churn.yaml")


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as e:
        main(list(argv))
    out, err = capsys.readouterr()
    return int(e.value.code or 0), out, err


def test_help_ends_with_examples(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "generate", "--help")
    assert code == 0
    tail = out.rstrip().splitlines()[-4:]
    assert tail[0].strip() == "Examples:"
    assert all(line.strip().startswith("sheaftune generate ") for line in tail[1:])


def test_text_to_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(
        capsys, "generate", CHURN, "-o", "-", "--format", "ftrace", "--events", "50"
    )
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "# tracer: nop"
    assert "entries-in-buffer/entries-written: 50/50   #P:2" in lines[2]
    assert sum(1 for x in lines if not x.startswith("#")) == 50
    assert "vmachurn-11959" in out or "vmachurn-11960" in out
    assert "wrote 50 events" in err


def test_bad_workload_exit_3_names_file_and_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(Path(CHURN).read_text().replace("rate: 64425", "rate: -64425"))
    out = tmp_path / "out.npz"
    code, _, err = run(capsys, "generate", str(bad), "-o", str(out))
    assert code == 3
    assert err.startswith(f"sheaftune: error: {bad}: streams[2].rate: must be > 0")
    assert not out.exists()


def test_usage_errors_leave_no_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out.txt"
    out.write_text("previous content")
    numa = str(ROOT / "workloads" / "numa-remote-frees.yaml")
    code, _, err = run(
        capsys, "generate", numa, "-o", str(out), "--format", "report", "--cpus", "1"
    )
    assert code == 2 and "NUMA nodes" in err
    assert out.read_text() == "previous content"
    code, _, err = run(capsys, "generate", CHURN, "-o", "-")
    assert code == 2 and "standard output" in err
    code, _, err = run(capsys, "generate", CHURN, "-o", str(out), "--events", "0")
    assert code == 2
    assert list(tmp_path.iterdir()) == [out]  # no temporary file left behind
