"""Reading one-sentence-per-line files: lines end at \\n (or \\r\\n) only, so line i is example i in every reader."""

from __future__ import annotations

import pytest

from stilts_jax.core.errors import InputError
from stilts_jax.core.io_utils import iter_lines, read_lines, read_text
from stilts_jax.data.mlm import read_text_lines


def test_lines_end_at_newlines_only(tmp_path):
    path = tmp_path / "s.txt"
    path.write_bytes("\ufeffone\u2028still one\r\ntwo\x85still two\nthree\x0cstill three\rstill three\nfour".encode())
    assert read_lines(path) == ["one\u2028still one", "two\x85still two", "three\x0cstill three\rstill three", "four"]
    assert [n for n, _ in iter_lines(path)] == [1, 2, 3, 4]
    path.write_bytes(b"a\n\nb\n")
    assert read_lines(path) == ["a", "", "b"]  # a final line break ends the last line; a blank line stays a line
    path.write_bytes(b"")
    assert read_lines(path) == []


def test_bytes_that_are_not_utf8_name_the_file_and_line(tmp_path):
    path = tmp_path / "latin1.txt"
    path.write_bytes("fine\nalso fine\ncaf\u00e9\n".encode("latin-1"))
    with pytest.raises(InputError, match=rf"{path} line 3: not UTF-8 text .* at byte 4 of the line"):
        read_lines(path)
    with pytest.raises(InputError, match=rf"{path} line 3: not UTF-8 text .* at byte 4 of the line"):
        read_text(path)
    path.write_bytes("one\ntwo\n".encode("utf-16"))
    with pytest.raises(InputError, match=rf"{path} line 1: not UTF-8 text .*UTF-16 byte-order mark"):
        read_lines(path)


def test_mlm_text_keeps_one_example_per_line(tmp_path):
    path = tmp_path / "mlm.txt"
    path.write_text("first\u2028sentence\nsecond\x0csentence\n", encoding="utf-8")
    assert read_text_lines([path]) == ["first\u2028sentence", "second\x0csentence"]
