"""``python -m pipeline`` as a new user meets it: each mistake is one ``error: ...`` line on
stderr with exit code 2 and nothing written; --help puts alphastream's flags first."""
import re
import subprocess
import sys
from pathlib import Path

import pytest

from alphastream.errors import UserFacingError
from alphastream.local_services import free_port
from pipeline import __main__ as cli_main

REPO = Path(__file__).resolve().parents[2]


def _refusal(argv: list[str], capsys) -> str:
    """Run main(argv); assert it refused with exit 2 and one error line; return that line."""
    code = cli_main.main(argv)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def _tick_file(folder: Path, name: str) -> Path:
    path = folder / name
    path.write_text("symbol,ts_us,price,size,trade_id\nAAPL,1704186000000000,190.5,10,t1\n")
    return path


CASES = {
    "files without --input": (["--source", "files"], ["--source files needs --input"]),
    "unknown source": (["--source", "nope"], ["--source", "invalid choice: 'nope'"]),
    "intervals that do not nest": (["--intervals", "1m,7m,1h"], ["7m", "nest"]),
    "intervals that do not nest, streaming": (["--streaming", "--max_duration", "1", "--intervals", "1m,7m,1h"],
                                             ["7m", "nest"]),
    "unknown interval": (["--intervals", "1m,1q"], ["bad interval '1q'"]),
    "bad date": (["--date", "2024-02-30"], ["--date", "YYYY-MM-DD"]),
    "zero symbols": (["--symbols", "0"], ["--symbols", "positive integer"]),
    "share above one": (["--duplicate_rate", "1.5"], ["--duplicate_rate", "between 0 and 1"]),
    "negative lateness": (["--allowed_lateness", "-5"], ["--allowed_lateness", ">= 0"]),
    "misspelt flag": (["--symbol", "5"], ["unknown flag --symbol"]),
    "a glob the shell expanded": (["--source", "files", "--input", "a.csv", "b.csv"], ["'b.csv'", "quote"]),
    "streaming source in batch": (["--source", "pubsub", "--subscription", "projects/p/subscriptions/s"],
                                  ["add --streaming"]),
    "files source in streaming": (["--streaming", "--source", "files", "--input", "x.csv"], ["batch only"]),
    "synthetic stream without an end": (["--streaming"], ["--max_duration"]),
    "unknown runner": (["--runner", "NopeRunner"], ["--runner NopeRunner", "Unexpected pipeline runner"]),
    "dataflow without a project": (["--runner", "DataflowRunner"], ["--runner DataflowRunner", "project"]),
    "malformed secret name": (["--db_url_secret", "my-secret"], ["--db_url_secret", "versions/VERSION"]),
}


@pytest.mark.parametrize("case", CASES)
def test_a_mistake_is_one_line_exit_2_and_nothing_written(case, tmp_path, capsys):
    argv, expected = CASES[case]
    lake = tmp_path / "lake"
    line = _refusal([*argv, "--output", str(lake)], capsys)
    for phrase in expected:
        assert phrase in line
    assert not lake.exists()


def test_a_glob_that_matches_nothing_names_the_glob(tmp_path, capsys):
    pattern = str(tmp_path / "ticks" / "*.csv")
    line = _refusal(["--source", "files", "--input", pattern, "--no_db", "--output", str(tmp_path / "lake")], capsys)
    assert f"--input {pattern!r} matches no file" in line and "quote" in line


def test_a_file_of_unknown_format_asks_for_input_format(tmp_path, capsys):
    _tick_file(tmp_path, "good.csv")
    odd = _tick_file(tmp_path, "ticks.txt")
    line = _refusal(["--source", "files", "--input", str(tmp_path / "*"), "--no_db",
                     "--output", str(tmp_path / "lake")], capsys)
    assert str(odd) in line and "--input_format csv|jsonl|parquet" in line


def test_an_unreachable_database_names_host_and_port_and_what_to_try(tmp_path, capsys):
    port = free_port()  # nothing listens on it
    line = _refusal(["--db_url", f"postgresql://u:hunter2@127.0.0.1:{port}/x", "--symbols", "1",
                     "--output", str(tmp_path / "lake")], capsys)
    assert f"127.0.0.1:{port}" in line and "Connection refused" in line
    assert "python -m store start" in line and "--no_db" in line
    assert "hunter2" not in line


def test_a_malformed_dsn_is_named_with_its_expected_shape(tmp_path, capsys):
    line = _refusal(["--db_url", "localhost:5432", "--output", str(tmp_path / "lake")], capsys)
    assert "is not a PostgreSQL DSN" in line and "postgresql://user:password@host:5432/dbname" in line


def test_the_db_command_reports_an_unreachable_database_in_one_line():
    port = free_port()
    run = subprocess.run([sys.executable, "-m", "store", "migrate", "--db_url",
                          f"postgresql://u@127.0.0.1:{port}/x"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert run.returncode == 2
    assert run.stderr.strip().splitlines() == [run.stderr.strip()]
    assert run.stderr.startswith(f"error: cannot connect to PostgreSQL at 127.0.0.1:{port}")


def test_a_user_facing_error_from_any_stage_keeps_its_exit_code(monkeypatch, tmp_path, capsys):
    """Sources and sinks raise UserFacingError (e.g. a missing Pub/Sub subscription); main prints it."""
    def refuse(*args, **kwargs):
        raise UserFacingError("subscription projects/p/subscriptions/s does not exist", exit_code=3)

    monkeypatch.setattr(cli_main, "build_graph", refuse)
    assert cli_main.main(["--no_db", "--output", str(tmp_path)]) == 3
    err = capsys.readouterr().err  # progress lines may come first; the error is the last line, alone
    assert err.endswith("\nerror: subscription projects/p/subscriptions/s does not exist\n")
    assert "Traceback" not in err


def test_an_internal_error_keeps_its_traceback(monkeypatch, tmp_path):
    def bug(*args, **kwargs):
        raise KeyError("a bug")

    monkeypatch.setattr(cli_main, "build_graph", bug)
    with pytest.raises(KeyError):
        cli_main.main(["--no_db", "--output", str(tmp_path)])


def test_a_usage_error_from_the_real_command_has_no_traceback_and_no_usage_dump(tmp_path):
    run = subprocess.run([sys.executable, "-m", "pipeline", "--intervals", "1m,7m,1h", "--no_db",
                          "--output", str(tmp_path)], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert run.returncode == 2
    assert run.stderr.count("\n") == 1 and run.stderr.startswith("error: argument --intervals:")


@pytest.fixture(scope="module")
def help_text() -> str:
    run = subprocess.run([sys.executable, "-m", "pipeline", "--help"], cwd=REPO, capture_output=True, text=True,
                         timeout=120, check=True)
    return run.stdout


def _entries(section: str) -> dict[str, str]:
    """Flag -> its whole help entry, for the flags listed in a part of --help."""
    parts = re.split(r"\n  (?=--)", section)
    return {part.split()[0]: part for part in parts[1:]}


def test_help_says_how_to_run_it_and_gives_examples(help_text):
    assert help_text.startswith("usage: python -m pipeline ")
    assert "__main__.py" not in help_text
    assert "examples:" in help_text
    assert "python -m pipeline --source files --input 'ticks/*.csv' --no_db" in help_text


def test_help_lists_alphastreams_flags_first_then_beams_under_its_own_heading(help_text):
    ours, beams = help_text.split("\nBeam's flags:\n")
    for flag in ("--source", "--input", "--intervals", "--output", "--db_url", "--no_db", "--max_duration"):
        assert flag in _entries(ours)
    for flag in ("--runner", "--streaming", "--project", "--region", "--setup_file", "--dry_run", "--experiment"):
        assert flag in _entries(beams), flag
        assert flag not in _entries(ours)


def test_help_prints_each_default_once(help_text):
    ours = help_text.split("\nBeam's flags:\n")[0]
    for entry in _entries(ours).values():
        assert entry.lower().count("default") <= 1, entry
    assert "(default: None)" not in help_text and "(default: False)" not in help_text
    assert "(default: 1m,5m,1h)" in " ".join(_entries(ours)["--intervals"].split())
