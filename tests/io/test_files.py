"""Reading users' files: one reader decodes every text file, so prompt files, benchmark files and run records fail
the same way (file, line, byte) and all accept a byte-order mark."""

from __future__ import annotations

import pytest

from noisyclip_metrics.errors import DataFileError, SchemaError
from noisyclip_metrics.evaluation.benchmarks._files import read_text
from noisyclip_metrics.io.files import read_prompt_file
from noisyclip_metrics.io.jsonfile import read_json_file, read_text_file


def test_prompt_file_with_a_byte_order_mark(tmp_path):
    path = tmp_path / "prompts.txt"
    path.write_bytes("\ufeffa red circle\r\ntwo blue squares\n".encode())
    # the mark is not part of the first prompt (it was, before the prompt reader used read_text_file)
    assert read_prompt_file(path) == ["a red circle", "two blue squares"]


@pytest.mark.parametrize(
    ("read", "message"),
    [
        (lambda p: read_prompt_file(p), r"x.txt:3: prompt file is not valid UTF-8 \(byte 0xe9 at offset 7\)"),
        (lambda p: read_text(p), r"x.txt:3: file is not valid UTF-8 \(byte 0xe9 at offset 7\)"),
        (lambda p: read_json_file(p, "run record"), r"x.txt:3: run record is not valid UTF-8 \(byte 0xe9"),
    ],
)
def test_every_reader_names_the_line_of_a_bad_byte(tmp_path, read, message):
    path = tmp_path / "x.txt"
    path.write_bytes(b"a\nb\ncaf\xe9\n")
    with pytest.raises((DataFileError, SchemaError), match=message):
        read(path)


def test_missing_and_unreadable(tmp_path):
    with pytest.raises(DataFileError, match=r"nope.txt: prompt file not found"):
        read_text_file(tmp_path / "nope.txt", "prompt file")
    with pytest.raises(SchemaError, match=r": cannot read the judgments file \(Is a directory\)"):
        read_text_file(tmp_path, "judgments file", SchemaError)
