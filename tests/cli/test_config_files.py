"""Config files passed by mistake: the error names the file and the problem, never quotes it."""

from __future__ import annotations

import pytest

from medseg.cli.main import main

SECRET = "ghp_s3cretT0kenValue"


@pytest.mark.parametrize(("content", "problem"), [
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + SECRET.encode(), "a binary file, not a YAML config"),
    (b"data:\n  root: caf\xe9 " + SECRET.encode() + b"\n", "not UTF-8 text (invalid byte at offset 17)"),
    (f"{SECRET}: 1\n".encode(), "not a medseg config: none of its top-level keys is a section"),
    (f'{{"token": "{SECRET}"}}\n'.encode(), "not a medseg config"),
    (f"-----BEGIN OPENSSH PRIVATE KEY-----\n{SECRET}\n".encode(), "expected a mapping of sections"),
    (f"train: [1\n{SECRET}\n".encode(), "not valid YAML (line 3)"),
])
def test_a_wrong_file_is_named_not_quoted(tmp_path, capsys, content, problem):
    path = tmp_path / "wrong.yaml"
    path.write_bytes(content)
    assert main(["train", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"medseg: error: {path}: {problem}")
    assert err.count("\n") == 1 and "Traceback" not in err
    assert SECRET not in err and "ghp" not in err


def test_a_real_config_still_names_its_misspelt_key(tmp_path, capsys):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  epoch: 3\n")
    assert main(["train", str(path)]) == 2
    assert "unknown key train.epoch; valid keys of train:" in capsys.readouterr().err
