"""The emulator's public face, and that it stands alone from the SDK client."""

from __future__ import annotations

import ast
import pathlib
import sys

import pytest

import analytex_async.emulator as emulator_package
from analytex_async.emulator._multipart import parse_file_upload, parse_header_params

PACKAGE_DIR = pathlib.Path(emulator_package.__file__).parent
ALLOWED_THIRD_PARTY = {"anyio", "attrs", "sniffio", "starlette", "uvicorn"}


def test_all_is_sorted_and_is_exactly_the_public_names():
    names = emulator_package.__all__
    assert names == sorted(names)
    public = {name for name in vars(emulator_package) if not name.startswith("_")}
    public -= {"annotations"}  # from __future__
    assert public == set(names)
    for name in names:
        assert getattr(emulator_package, name).__doc__, f"{name} needs a docstring"


def test_the_emulator_imports_only_the_stdlib_anyio_attrs_sniffio_starlette_and_uvicorn():
    for path in PACKAGE_DIR.glob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level > 0:
                    assert node.level == 1, f"{path.name} reaches outside the emulator package"
                    continue
                modules = [node.module or ""]
            else:
                continue
            for module in modules:
                top = module.split(".")[0]
                assert top in sys.stdlib_module_names or top in ALLOWED_THIRD_PARTY, (
                    f"{path.name} imports {module}"
                )
                assert top != "analytex_async", f"{path.name} imports the SDK: {module}"


def test_uvicorn_is_imported_only_inside_the_serving_functions():
    for path in PACKAGE_DIR.glob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in tree.body:
            if isinstance(node, ast.Import):
                assert all(alias.name != "uvicorn" for alias in node.names), path.name


def test_header_params_are_parsed_with_quotes_and_case():
    assert parse_header_params('Multipart/Form-Data; Boundary="a b;c"; x=1') == (
        "multipart/form-data",
        {"boundary": "a b;c", "x": "1"},
    )
    assert parse_header_params("") == ("", {})


def test_an_extended_filename_is_decoded():
    body = (
        b"--B\r\nContent-Disposition: form-data; name=\"file\"; filename*=UTF-8''caf%C3%A9.ndjson"
        b"\r\n\r\n{}\r\n--B--"
    )
    part = parse_file_upload(body, "multipart/form-data; boundary=B")
    assert (part.filename, part.data) == ("café.ndjson", b"{}")


def test_a_part_without_headers_and_transport_padding_are_tolerated_until_the_file_part():
    body = (
        b"--B  \r\n\r\nheaderless\r\n"
        b'--B\r\nContent-Disposition: form-data; name="file"\r\n\r\nline\r\n--B--\r\nepilogue'
    )
    with pytest.raises(Exception, match="Content-Disposition"):
        parse_file_upload(body, "multipart/form-data; boundary=B")
    body = b'--B \t\r\nContent-Disposition: form-data; name="file"\r\n\r\nline\r\n--B--\r\nepilogue'
    part = parse_file_upload(body, "multipart/form-data; boundary=B")
    assert (part.data, part.filename) == (b"line", None)


def test_the_file_content_may_contain_crlf_and_dashes():
    data = b"a\r\n--not-the-boundary\r\n-B\r\n"
    body = b'--B\r\nContent-Disposition: form-data; name="file"\r\n\r\n' + data + b"\r\n--B--\r\n"
    assert parse_file_upload(body, "multipart/form-data; boundary=B").data == data
