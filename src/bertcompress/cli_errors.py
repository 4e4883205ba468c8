"""How the command line reports a failure: one `error:` line, exit 2 for bad input, 1 for our own bugs."""
from __future__ import annotations

import json
import sys
import traceback
import unicodedata

import yaml
from safetensors import SafetensorError

from bertcompress.core.errors import BertCompressError

try:  # typer >= 0.20 ships its own copy of click
    from typer._click.exceptions import ClickException, NoArgsIsHelpError, UsageError
except ImportError:  # pragma: no cover - older typer uses click itself
    from click.exceptions import ClickException, UsageError

    NoArgsIsHelpError = ()

BAD_INPUT, BUG, INTERRUPTED = 2, 1, 130
MAX_MESSAGE = 600


def one_line(text: str) -> str:
    """Newlines and control characters escaped, so an echoed value can never forge a second line."""
    escaped = "".join(c if unicodedata.category(c)[0] != "C" else repr(c)[1:-1] for c in str(text))
    return escaped if len(escaped) <= MAX_MESSAGE else escaped[: MAX_MESSAGE - 3] + "..."


def _os_message(error: OSError) -> str:
    where = error.filename or ""
    return f"{where}: {error.strerror or type(error).__name__}" if where else (error.strerror or str(error))


def describe(error: BaseException) -> tuple[str, int]:
    """(message, exit code) for any failure."""
    if isinstance(error, BertCompressError):
        return str(error), BAD_INPUT
    if isinstance(error, UsageError):
        command = f"{error.ctx.command_path}: " if getattr(error, "ctx", None) is not None else ""
        return f"{command}{error.format_message()}", BAD_INPUT
    if isinstance(error, ClickException):
        return error.format_message(), BAD_INPUT
    if isinstance(error, UnicodeDecodeError):
        return f"a file is not UTF-8 text ({error.reason} at byte {error.start})", BAD_INPUT
    if isinstance(error, OSError):
        return _os_message(error), BAD_INPUT
    if isinstance(error, (SafetensorError, json.JSONDecodeError, yaml.YAMLError)):
        return f"unreadable file: {error}", BAD_INPUT
    return f"unexpected {type(error).__name__}: {error} (rerun with --debug for the traceback)", BUG


def report(error: BaseException, debug: bool) -> int:
    if isinstance(error, NoArgsIsHelpError):
        return BAD_INPUT  # the help text is already printed
    message, code = describe(error)
    if debug:
        traceback.print_exception(error, file=sys.stderr)
    sys.stderr.write(f"error: {one_line(message)}\n")
    return code
