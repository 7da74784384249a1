"""The README's quick commands run as written, in order, on the embedded digits data.

The block that follows the ``<!-- readme-smoke ... -->`` comment in README.md is run line by line
in a fresh folder through ``veilnet.cli.main`` (one process: torch is imported once), so the
README cannot drift from the command line. A line whose comment starts with ``# slow`` is not run;
it is reported as a skipped test with its reason. Each command must exit 0. The README's links
to files must lead to files that exist.
"""

from __future__ import annotations

import re
import shlex
import time
from pathlib import Path

import pytest

from veilnet import cli

README = Path(__file__).resolve().parents[1] / "README.md"
MARKER = "<!-- readme-smoke"
#: The quick commands' budget in CPU seconds of this process, all together (the whole suite has a
#: 10-minute budget; CPU time, unlike wall time, does not grow with other jobs on the machine).
BUDGET_CPU_S = 20.0


def smoke_commands(text: str) -> list[tuple[str, str | None]]:
    """(command, reason it is slow or None) for each ``veilnet`` line of the block after the marker."""
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith(MARKER)), None)
    assert start is not None, f"README.md has no {MARKER} marker"
    assert lines[start + 1].startswith("```"), "the marker must be followed by a fenced block"
    commands = []
    for line in lines[start + 2 :]:
        if line.startswith("```"):
            return commands
        command, _, comment = line.partition("#")
        command, comment = command.strip(), comment.strip()
        if not command:
            continue
        assert command.startswith("veilnet "), f"not a veilnet command: {line!r}"
        commands.append((command, comment if comment.startswith("slow") else None))
    raise AssertionError("the README's smoke block is not closed")


COMMANDS = smoke_commands(README.read_text(encoding="utf-8"))


def test_the_smoke_block_has_quick_and_slow_commands() -> None:
    assert len([c for c, slow in COMMANDS if slow is None]) >= 5
    assert smoke_commands("x\n<!-- readme-smoke -->\n```\nveilnet a b  # slow: 2 min\nveilnet c\n```\n") == [
        ("veilnet a b", "slow: 2 min"),
        ("veilnet c", None),
    ]


def test_readme_quick_commands_run_in_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("VEILNET_DATA", raising=False)
    start = time.process_time()
    for command, slow in COMMANDS:
        if slow is not None:
            continue
        try:
            code = cli.main(shlex.split(command)[1:])
        except SystemExit as exc:  # --help exits through argparse
            code = exc.code
        out = capsys.readouterr()
        assert code in (0, None), f"{command!r} exited {code}: {out.err.strip()[-500:]}"
    seconds = time.process_time() - start
    assert seconds < BUDGET_CPU_S, f"the README's quick commands took {seconds:.1f} CPU s (budget {BUDGET_CPU_S:.0f} s): mark the slow ones '# slow'"
    assert (tmp_path / "runs" / "quick" / "served.json").exists()


@pytest.mark.parametrize("command", [c for c, slow in COMMANDS if slow is not None])
def test_readme_slow_commands_are_skipped(command: str) -> None:
    reason = dict(COMMANDS)[command]
    pytest.skip(f"README {reason}: {command}")


def test_readme_links_lead_to_files() -> None:
    text = README.read_text(encoding="utf-8")
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text)
    local = [t for t in targets if "://" not in t]
    assert local, "no relative links found"
    missing = [t for t in local if not (README.parent / t).exists()]
    assert not missing, f"README.md links to missing files: {missing}"
    for page in sorted((README.parent / "docs").glob("*.md")):
        links = [t for t in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text(encoding="utf-8")) if "://" not in t]
        missing = [t for t in links if not (page.parent / t).exists()]
        assert not missing, f"{page.name} links to missing files: {missing}"
