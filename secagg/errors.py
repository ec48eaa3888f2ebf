"""The one error hierarchy of secagg.

Every error the library raises on purpose derives from :class:`SecAggError`, so a caller
can catch the whole family in one clause. The subclasses say *whose* fault it was:

- :class:`ProtocolError`: the peer misbehaved (forged, replayed, inconsistent or late
  messages). A client that raises it has moved to ``ABORTED`` for good.
  :class:`DropoutError` (too few survivors) and :class:`LateMessageError` (a message for
  a stage already closed) refine it.
- :class:`UsageError`: the caller misused the API (wrong order of calls, a one-shot object
  used twice).
- :class:`ConfigError`: parameters that cannot work. The message names the numbers that
  would. It is also a :class:`ValueError`.
- :class:`DecodeError`: malformed bytes on the wire. It is also a :class:`ValueError`.
- :class:`SecAggTypeError`: an argument of the wrong type (a string where a number goes).
  It is also a :class:`TypeError`, so ``except TypeError`` keeps working, and
  ``except SecAggError`` catches it too.
- :class:`BudgetExceededError`: running the next step would spend more privacy budget
  than the ledger allows.
"""

from __future__ import annotations

__all__ = [
    "AlreadyFinalized",
    "BudgetExceededError",
    "ConfigError",
    "DecodeError",
    "DropoutError",
    "LateMessageError",
    "ProtocolError",
    "SecAggError",
    "SecAggTypeError",
    "UsageError",
]


class SecAggError(Exception):
    """Root of every error secagg raises on purpose."""


class ProtocolError(SecAggError):
    """A peer sent something the protocol forbids (forged, replayed, inconsistent)."""


class DropoutError(ProtocolError):
    """Too few parties survived where the protocol needs at least a threshold of them."""


class LateMessageError(ProtocolError):
    """A message arrived for a stage that is already closed; its sender counts as dropped."""


class UsageError(SecAggError):
    """The caller used the API in a way it does not allow."""


class AlreadyFinalized(UsageError):
    """A one-shot object (a round's decryption, a result) was used a second time."""


class ConfigError(SecAggError, ValueError):
    """Parameters that cannot work; the message names numbers that would."""


class SecAggTypeError(SecAggError, TypeError):
    """An argument of the wrong type; the message names the type that would work."""


class DecodeError(SecAggError, ValueError):
    """Bytes that do not decode to a well-formed message."""


class BudgetExceededError(SecAggError):
    """The next step would exceed the privacy budget (epsilon at delta)."""
