"""A logging filter that passes every log line through `redact`."""

from __future__ import annotations

import logging

from display.privacy.redact import redact

_formatter = logging.Formatter()


class RedactingFilter(logging.Filter):
    """Rewrites each record so that no log line carries personal data.

    Attach it to handlers (`handler.addFilter(RedactingFilter())`): a filter on a logger
    does not see records that propagate from its children. The message is formatted with
    its arguments first, so a name passed as an argument is caught as well; a traceback
    and stack are formatted and redacted too, since exception messages quote values.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string must not hide the line, nor leak args
            message = f"{record.msg!s} (unformattable arguments)"
        record.msg = redact(message).text
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = _formatter.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text).text
        if record.stack_info:
            record.stack_info = redact(record.stack_info).text
        return True
