"""Secrets and strays of the study storage (issue 22, finding 9): a database password never
reaches an error message, a log line or a report, in the URL or in a driver's message quoting
it; a `--storage` value that is neither a database URL nor a SQLite file is refused before any
work and leaves nothing behind."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from advisor.errors import AdvisorError, BadInput, redact, redact_url

PW = "s3cr3t-pw"


@pytest.mark.parametrize("url,kept", [
    (f"postgresql://advisor:{PW}@db:5432/advisor", "postgresql://advisor:***@db:5432/advisor"),
    (f"postgresql+psycopg2://advisor@db/advisor?password={PW}",
     "postgresql+psycopg2://advisor@db/advisor?password=***"),
    (f"postgresql://db/advisor?application_name=x&PassWord={PW}&sslmode=require",
     "postgresql://db/advisor?application_name=x&PassWord=***&sslmode=require"),
    (f"mysql://u@h/d?charset=utf8&token={PW}", "mysql://u@h/d?charset=utf8&token=***"),
    (f"postgresql://u@h/d?sslmode=verify-full&sslpassword={PW}&x=1",
     "postgresql://u@h/d?sslmode=verify-full&sslpassword=***&x=1"),
    (f"mysql://u@h/d?pwd={PW}", "mysql://u@h/d?pwd=***"),
    (f"mysql://u@h/d?pass={PW};secret={PW}", "mysql://u@h/d?pass=***;secret=***"),
    (f"postgresql://u:{PW}@h/d?password={PW}", "postgresql://u:***@h/d?password=***"),
    # SQLAlchemy reads the password up to the '@' before the host: '/' and '?' belong to it
    ("postgresql://u:pa/ss?w@h/d", "postgresql://u:***@h/d"),
    ("postgresql://h/d?application_name=a@b", "postgresql://h/d?application_name=a@b"),
    ("sqlite:////tmp/studies.db", "sqlite:////tmp/studies.db"),
    ("/tmp/rec.study.db", "/tmp/rec.study.db"),
])
def test_redact_url(url: str, kept: str) -> None:
    assert redact_url(url) == kept


def test_redact_url_is_the_one_the_study_uses() -> None:
    from advisor.search import study

    assert study.redact_url is redact_url


def test_a_message_quoting_the_url_or_its_password_is_redacted() -> None:
    url = f"postgresql://advisor:{PW}@db:5432/advisor?sslpassword=k3y-pass"
    msg = (f"(psycopg2.OperationalError) could not connect to '{url}'\n"
           f"password {PW} rejected; sslpassword k3y-pass rejected")
    out = redact(msg, url)
    assert PW not in out and "k3y-pass" not in out
    assert "postgresql://advisor:***@db:5432/advisor?sslpassword=***" in out
    # a URL in any text, even without knowing it beforehand
    assert PW not in redact(f"engine for {url} failed")
    # an encoded password is removed in both spellings
    enc = "postgresql://u:p%40ss-word@h/d"
    assert "p@ss-word" not in redact("auth failed for p@ss-word", enc)
    # AdvisorError.one_line redacts whatever URL a message quotes
    assert PW not in AdvisorError(f"cannot reach {url}", "retry").one_line()


def test_a_storage_error_quoting_the_url_keeps_the_password_out(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """SQLAlchemy and the drivers may echo the URL in their messages: `load_job` (advisor
    worker) and `create_job_study` (advisor recommend) show them redacted."""
    from advisor.search import job

    url = f"postgresql+psycopg2://advisor:{PW}@db:5432/advisor?password={PW}"

    def fail(u: str, *a: object) -> None:
        raise RuntimeError(f"(sqlalchemy.exc.ArgumentError) bad URL {u!r}: password {PW}")

    monkeypatch.setattr(job, "open_storage", fail)
    with pytest.raises(BadInput) as e:
        job.load_job(url, "some-study")
    assert PW not in e.value.one_line() and PW not in str(e.value)
    assert "cannot open the study storage postgresql+psycopg2://advisor:***@db" in str(e.value)


def _run(cwd: Path, *args: str, timeout: int = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "advisor.cli", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("command", [
    ("recommend", "--max-size", "90M", "--trials", "2", "--out", "out"),
    ("worker", "--study", "some-study"),
])
@pytest.mark.parametrize("storage", ["notaurl", "studies", "postgresq://u@h/d"])
def test_storage_that_is_no_url_nor_sqlite_file_is_refused_and_nothing_is_created(
        tmp_path: Path, command: tuple[str, ...], storage: str) -> None:
    """`--storage notaurl` used to become sqlite:///<cwd>/notaurl: a stray database in the
    working directory, written after minutes of work. Now: exit 2, one line, nothing made."""
    r = _run(tmp_path, *command, "--storage", storage)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("advisor: error: the study storage"), lines
    assert "sqlite:///" in lines[0] and "postgresql://" in lines[0]  # the fix is named
    assert list(tmp_path.iterdir()) == []


def test_storage_refusal_keeps_a_password_out(tmp_path: Path) -> None:
    for storage in (f"postgresq://advisor:{PW}@db/advisor",  # a typo of the scheme
                    f"advisor:{PW}@db/advisor"):  # no scheme at all
        r = _run(tmp_path, "worker", "--study", "x", "--storage", storage)
        assert r.returncode == 2 and PW not in r.stderr and "***" in r.stderr, r.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("storage", ["sqlite:///studies.db", "sqlite://", "x/y/rec.study.db",
                                     "rec.sqlite3", "postgresql://u:pw@h:5432/d",
                                     "postgres://u@h/d", "mysql+pymysql://u@h/d"])
def test_documented_storages_pass_the_check_and_it_creates_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, storage: str) -> None:
    from advisor.search.study import check_storage, storage_url

    monkeypatch.chdir(tmp_path)
    check_storage(storage)
    assert list(tmp_path.iterdir()) == []
    existing = tmp_path / "my-studies"  # an existing file is a SQLite file, whatever its name
    existing.write_bytes(b"")
    assert storage_url(existing) == f"sqlite:///{existing.resolve()}"


def test_log_lines_and_internal_errors_are_redacted(tmp_path: Path) -> None:
    """The CLI's last-resort message and its log handler: a URL in either loses its secrets
    (and terminal escape codes)."""
    url = f"postgresql://advisor:{PW}@db/advisor?token={PW}"
    script = textwrap.dedent(f"""
        import importlib, logging, sys
        m = importlib.import_module("advisor.cli.main")

        def boom(args):
            logging.getLogger("advisor.x").warning("retrying %s \\x1b]0;pwn\\x07", {url!r})
            raise RuntimeError("engine " + {url!r} + " failed")

        m.COMMANDS["profiles"] = boom
        sys.exit(m.main(["profiles"]))
    """)
    r = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 1, r.stderr
    assert "retrying postgresql://advisor:***@db/advisor?token=***" in r.stderr
    assert "internal error: RuntimeError: engine postgresql://advisor:***@db" in r.stderr
    assert PW not in r.stderr and "\x1b" not in r.stderr and "\x07" not in r.stderr
