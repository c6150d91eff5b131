"""The project's one error hierarchy; the CLI turns these into one-line messages and exit codes.

Exit codes (documented in the README): 0 ok, 2 bad input, 3 infeasible targets, 1 other failures.
"""

from __future__ import annotations

import os
import re
from pathlib import Path


class AdvisorError(Exception):
    """Base of every error the advisor raises on purpose."""

    exit_code = 1

    def __init__(self, problem: str, fix: str | None = None) -> None:
        self.problem = problem
        self.fix = fix
        super().__init__(f"{problem} ({fix})" if fix else problem)

    def one_line(self) -> str:
        """The message on one line, safe for a terminal (printable) and without the secrets of
        any URL in it (redact): it may quote a model file's strings or a driver's error. At most
        MAX_LINE characters: a longer problem (a quoted file name, a list of every known name)
        loses its middle, never the fix."""
        problem = " ".join(redact(printable(self.problem)).split())
        fix = " ".join(redact(printable(self.fix)).split()) if self.fix else ""
        room = max(MAX_LINE - (len(fix) + 2 if fix else 0), 120)
        if len(problem) > room:
            head = (room - 5) // 2
            problem = f"{problem[:head]} ... {problem[len(problem) - (room - 5 - head):]}"
        return f"{problem}; {fix}" if fix else problem


MAX_LINE = 380  # with "advisor: error: " in front, an error line stays under 400 characters


class BadInput(AdvisorError):
    """The user's input is wrong: a path, a name, a value. Exit code 2."""

    exit_code = 2


def user_path(text: str | os.PathLike[str], what: str) -> Path:
    """`text` as a Path with `~` and `~user` expanded; BadInput naming `what` (a flag, say)
    when `~user` names no user of this host (Path.expanduser raises RuntimeError then)."""
    try:
        return Path(text).expanduser()
    except RuntimeError:
        raise BadInput(f"{what} {text}: {str(text).split('/')[0]} names no user of this host",
                       "pass the path without ~user, or with the name of an existing user"
                       ) from None


class Infeasible(AdvisorError):
    """No candidate can meet the targets. Exit code 3."""

    exit_code = 3


# Terminal escape sequences (ECMA-48): CSI (ESC [ or the 8-bit 0x9b) parameters, intermediates
# and a final byte; OSC, DCS, SOS, PM, APC strings up to BEL or ST; any other two-byte ESC code.
_ESCAPES = re.compile(r"(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]?"
                      r"|(?:\x1b[\]PX^_]|[\x90\x98\x9d\x9e\x9f])[^\x07\x1b\x9c]*"
                      r"(?:\x07|\x1b\\|\x9c)?"
                      r"|\x1b[ -~]?")
# C0 but tab and line feed, DEL, C1, and the Unicode bidirectional controls (U+202A-U+202E,
# U+2066-U+2069, U+200E/U+200F, U+061C): a name holding U+202E prints reversed ("Trojan
# Source"), so a file name or model name could pose as another
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\u200e\u200f\u061c]")


def printable(text: object, newlines: bool = False) -> str:
    """`text` safe to print on a terminal: escape sequences (colours, OSC titles and links,
    cursor moves) and control characters removed (C0 but tab, DEL, C1); a line break becomes a
    space unless `newlines`. Every other character (any script, emoji) is kept. Strings from a
    model file, a path or an exception go through this before they reach a terminal; rich
    markup in them is escaped where they are printed (rich.markup.escape)."""
    s = _ESCAPES.sub("", str(text))
    if not newlines:
        s = s.replace("\r\n", " ").replace("\n", " ").replace("\r", " ")
    else:
        s = s.replace("\r\n", "\n").replace("\r", "\n")
        return "\n".join(_CONTROLS.sub("", line) for line in s.split("\n"))
    return _CONTROLS.sub("", s)


# A database URL's parts as SQLAlchemy reads them (sqlalchemy.engine.url._parse_url): the
# user name holds no ':' or '/', the password runs to the '@' before the host.
_URL = re.compile(r"(?P<scheme>[A-Za-z][\w+.-]*://)(?:(?P<user>[^:/@\s]*)(?::(?P<pw>[^@]*))?@)?")
_IN_TEXT = re.compile(r"[A-Za-z][\w+.-]*://[^\s'\"<>`]+")
_SECRET_PARAM = re.compile(r"(?i)(?P<key>(?:[?&;]|^)(?:[\w.-]*(?:password|passwd|secret|token)"
                           r"|pass|pwd|api[_-]?key)=)(?P<value>[^&;#\s]*)")
_HIDDEN = "***"


def _url_secrets(url: str) -> list[str]:
    """The password and the secret query values of `url`, raw and %-decoded."""
    from urllib.parse import unquote

    found: list[str] = []
    m = _URL.match(url)
    if m and m.group("pw"):
        found.append(m.group("pw"))
    rest = url[m.end():] if m else url
    query = rest.split("?", 1)[1] if "?" in rest else ""
    found += [p.group("value") for p in _SECRET_PARAM.finditer(query) if p.group("value")]
    return sorted({v for s in found for v in (s, unquote(s)) if len(v) >= 3}, key=len,
                  reverse=True)


def redact_url(url: str) -> str:
    """`url` with its secrets replaced by ***: the password of `user:password@` and the values
    of secret query parameters (password, sslpassword, pass, pwd, secret, token, ..., any case,
    any position). A path or other text without `scheme://` is returned as is. Reports, logs and
    error messages end up in tickets."""
    m = _URL.match(url)
    if not m:
        return url
    head = m.group("scheme")
    if m.group("user") is not None:
        head += m.group("user") + (f":{_HIDDEN}" if m.group("pw") is not None else "") + "@"
    rest = url[m.end():]
    if "?" in rest:
        path, query = rest.split("?", 1)
        rest = path + "?" + _SECRET_PARAM.sub(lambda p: p.group("key") + _HIDDEN, query)
    return head + rest


def redact(text: object, *urls: str) -> str:
    """`text` (an error message, a log line) with every URL in it redacted (redact_url) and
    every secret of `urls` removed wherever it appears: SQLAlchemy and database drivers echo
    the URL, or parts of it, in their messages."""
    s = _IN_TEXT.sub(lambda m: redact_url(m.group(0)), str(text))
    for secret in (v for u in urls for v in _url_secrets(str(u))):
        s = s.replace(secret, _HIDDEN)
    return s
