"""The README's commands name subcommands, options, scripts and config files that exist."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from medseg.cli.main import COMMANDS, build_parser, main
from medseg.config import load_config

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def _sections() -> dict[str, str]:
    parts = re.split(r"^## ", README, flags=re.MULTILINE)
    return {part.splitlines()[0].strip(): part for part in parts[1:]}


def _commands(section: str) -> list[list[str]]:
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", _sections()[section], flags=re.DOTALL):
        for line in block.splitlines():
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            commands.extend(shlex.split(part, comments=True) for part in line.split("&&"))
    return commands


def _medseg_argv(argv: list[str]) -> list[str] | None:
    """The arguments given to medseg in a shell command, or None if it runs something else."""
    if argv[0] == "docker":
        assert argv[1] in ("build", "run"), argv
        if argv[1] == "build":
            return None
        rest = argv[argv.index("medseg") + 1 :]
        if "--entrypoint" in argv:
            assert argv[argv.index("--entrypoint") + 1] == "torchrun"
            return _medseg_argv(["torchrun", *rest])
        return rest
    if Path(argv[0]).name == "torchrun":
        if "-m" in argv:
            assert argv[argv.index("-m") + 1] == "medseg"
            return argv[argv.index("-m") + 2 :]
        launched = next(a for a in argv[1:] if not a.startswith("-") and not a.isdigit())
        return _medseg_argv(argv[argv.index(launched) :])
    if Path(argv[0]).name == "medseg":
        return argv[1:]
    return None


def _check_medseg(argv: list[str]) -> None:
    assert argv and argv[0] in COMMANDS, f"unknown subcommand in {argv}"
    build_parser().parse_args(argv)  # argparse exits on an unknown option
    configs = [a for a in argv if a.endswith(".yaml")]
    for config in configs:
        assert (ROOT / config).is_file(), f"{config} does not exist"
    if argv[0] in ("train", "compare") and configs:
        overrides = [argv[i + 1] for i, a in enumerate(argv) if a == "--set"]
        load_config(ROOT / configs[0], overrides)  # validates every --set key


@pytest.mark.parametrize(
    "section",
    ["Quickstart", "The real datasets", "Training", "Comparing optimizers", "The app", "Docker"],
)
def test_readme_commands_exist(section):
    commands = _commands(section)
    assert commands, f"no commands in README section {section!r}"
    for argv in commands:
        medseg_argv = _medseg_argv(argv)
        if medseg_argv is not None:
            _check_medseg(medseg_argv)
        elif argv[0] == "scripts/setup.sh":
            script = (ROOT / argv[0]).read_text()
            assert all(f"{flag})" in script for flag in argv[1:]), argv
        elif argv[0] == ".venv/bin/streamlit":
            assert (ROOT / argv[2]).is_file()
        else:
            assert argv[:3] in (["docker", "build", "-t"], [".venv/bin/python", "-m", "pytest"]), argv


def test_quickstart_has_two_commands_and_ci_runs_the_test_command():
    blocks = re.findall(r"```bash\n(.*?)```", _sections()["Quickstart"], flags=re.DOTALL)
    lines = [
        line for block in blocks for line in block.splitlines() if line and not line.startswith("#")
    ]
    assert len(lines) == 2
    assert "medseg train" in lines[0] and "pytest" in lines[1]
    assert lines[1] in (ROOT / ".ci" / "run").read_text().splitlines()


def test_help_lists_every_subcommand_with_an_example(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    listing = capsys.readouterr().out
    for name in ("train", "evaluate", "predict", "compare", "data", "demo-data", "app"):
        assert re.search(rf"^\s+{re.escape(name)}\s+\S", listing, flags=re.MULTILINE), name
        with pytest.raises(SystemExit):
            main([name, "--help"])
        assert f"example:\n  medseg {name}" in capsys.readouterr().out
