"""``aaa-fmip keys derive``: output against the published vectors, and clean errors for bad input."""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from aaa_fmip import cli
from aaa_fmip.commands import keys as keys_command

VECTORS = json.loads((Path(__file__).resolve().parent / "vectors" / "key-hierarchy.json").read_text(encoding="utf-8"))
H1 = VECTORS["home"][0]
V1 = VECTORS["visited"][0]


def run(argv: list[str], stdin: str = "") -> tuple[int, str, str]:
    """Parse with the command's own parser and run the handler with captured streams."""
    parser = argparse.ArgumentParser(prog="aaa-fmip")
    keys_command.register(parser.add_subparsers())
    out, err = io.StringIO(), io.StringIO()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0), "", ""
    if args.func is not keys_command._derive:
        return int(args.func(args)), "", ""
    code = keys_command.derive_command(args, stdin=io.StringIO(stdin), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def home_args(ar: str = "2001:db8:1::1") -> list[str]:
    return ["keys", "derive", "--emsk", H1["emsk"], "--session-id", H1["eap_session_id"], "--ar-address", ar]


@pytest.mark.parametrize("entry", H1["handover_keys"], ids=lambda e: e["ar_address"])
def test_home_derivation_prints_the_vector(entry: dict[str, str]) -> None:
    code, out, err = run(home_args(entry["ar_address"]))
    assert (code, err) == (0, "")
    assert json.loads(out) == {
        "hmk_name": H1["hmk_name"],
        "spi": H1["spi"],
        "hk": entry["hk"],
        "hk_name": entry["hk_name"],
    }


def test_visited_derivation_prints_the_vector() -> None:
    entry = V1["handover_keys"][1]
    code, out, _ = run(
        ["keys", "derive", "--dsrk", V1["dsrk"], "--emsk-name", V1["emsk_name"], "--ar-address", entry["ar_address"]]
    )
    assert code == 0
    assert json.loads(out) == {
        "hmk_name": V1["hmk_name"],
        "spi": V1["spi"],
        "hk": entry["hk"],
        "hk_name": entry["hk_name"],
    }


def test_secret_from_stdin_and_lenient_hex() -> None:
    entry = H1["handover_keys"][0]
    spaced = " ".join(H1["emsk"][i : i + 2] for i in range(0, len(H1["emsk"]), 2))
    code, out, _ = run(
        [
            "keys",
            "derive",
            "--emsk",
            "-",
            "--session-id",
            "0x" + H1["eap_session_id"].upper(),
            "--ar-address",
            "2001:db8:1::1",
        ],
        stdin=spaced + "\n",
    )
    assert code == 0 and json.loads(out)["hk"] == entry["hk"]
    colons = ":".join(H1["emsk"][i : i + 2] for i in range(0, len(H1["emsk"]), 2))
    code, out, _ = run(
        ["keys", "derive", "--emsk", colons, "--session-id", H1["eap_session_id"], "--ar-address", "2001:db8:1::1"]
    )
    assert code == 0 and json.loads(out)["hk"] == entry["hk"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--emsk", "zz" * 64, "--session-id", "0d", "--ar-address", "::1"], "--emsk: not a hexadecimal string"),
        (["--emsk", "abc", "--session-id", "0d", "--ar-address", "::1"], "--emsk: not a hexadecimal string"),
        (["--emsk", "00" * 63, "--session-id", "0d", "--ar-address", "::1"], "EMSK must be 64..256 octets, got 63"),
        (["--emsk", "00" * 64, "--session-id", "", "--ar-address", "::1"], "--session-id: empty value"),
        (["--emsk", "00" * 64, "--session-id", "0d", "--ar-address", "10.0.0.1"], "is not an IPv6 address"),
        (["--emsk", "00" * 64, "--session-id", "0d", "--ar-address", "ff02::2"], "not a unicast address"),
        (["--emsk", "00" * 64, "--ar-address", "::1"], "must be given together"),
        (["--dsrk", "00" * 64, "--ar-address", "::1"], "must be given together"),
        (["--dsrk", "00" * 64, "--emsk-name", "00" * 7, "--ar-address", "::1"], "EMSKName must be 8 octets, got 7"),
        (["--ar-address", "::1"], "give either"),
        (
            [
                "--emsk",
                "00" * 64,
                "--session-id",
                "0d",
                "--dsrk",
                "00" * 64,
                "--emsk-name",
                "00" * 8,
                "--ar-address",
                "::1",
            ],
            "give either",
        ),
        (["--emsk", "-", "--session-id", "0d", "--ar-address", "::1"], "nothing to read on standard input"),
    ],
)
def test_bad_input_exits_2_with_a_clear_message(argv: list[str], message: str) -> None:
    code, out, err = run(["keys", "derive", *argv])
    assert code == 2 and out == ""
    assert err.startswith("aaa-fmip keys derive: error: ") and message in err
    assert "Traceback" not in err
    assert "zz" * 4 not in err  # the rejected value itself is never echoed


def test_missing_ar_address_is_an_argparse_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, _ = run(["keys", "derive", "--emsk", "00" * 64, "--session-id", "0d"])
    assert code == 2
    assert "--ar-address" in capsys.readouterr().err


def test_help_texts(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["keys", "derive", "--help"])[0] == 0
    text = capsys.readouterr().out
    for expected in (
        "--emsk HEX",
        "--session-id HEX",
        "--dsrk HEX",
        "--emsk-name HEX",
        "--ar-address ADDR",
        "exit status",
    ):
        assert expected in text
    assert run(["keys"])[0] == 2
    assert "derive" in capsys.readouterr().out


def test_through_the_main_entry_point(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(home_args()) == 0
    assert json.loads(capsys.readouterr().out)["hk"] == H1["handover_keys"][0]["hk"]
    assert cli.main(["keys", "derive", "--emsk", "00", "--session-id", "0d", "--ar-address", "::1"]) == 2
    assert "EMSK must be" in capsys.readouterr().err


def test_as_a_process() -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "aaa_fmip.cli",
            "keys",
            "derive",
            "--emsk",
            "xyz",
            "--session-id",
            "0d",
            "--ar-address",
            "::1",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).resolve().parent.parent,
    )
    assert result.returncode == 2
    assert result.stderr.strip() == "aaa-fmip keys derive: error: --emsk: not a hexadecimal string (3 characters)"
    assert result.stdout == ""
