"""The one exception type users see.

A `Seq2SeqError` carries a single line that names the file, line or option at fault and what to do about
it. The CLI prints it without a traceback; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class Seq2SeqError(Exception):
    """A problem with the user's input (file, option, config key, checkpoint), explained in one line."""
