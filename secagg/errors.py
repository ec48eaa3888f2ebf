"""The one error hierarchy of secagg.

Every error the library raises on purpose derives from :class:`SecAggError`, so a caller
can catch the whole family in one clause. The subclasses say *whose* fault it was:

- :class:`ProtocolError`: the peer misbehaved (forged, replayed, inconsistent or late
  messages). A client that raises it has moved to ``ABORTED`` for good.
  :class:`DropoutError` (too few survivors) and :class:`LateMessageError` (a message for
  a stage already closed) refine it. :class:`ForgedShareError` (a secret share that does not
  rebuild the committed secret) and :class:`RangeCheckError` (a decoded sum no set of honest
  contributors could produce) refine it too.
- :class:`UsageError`: the caller misused the API (wrong order of calls, a one-shot object
  used twice).
- :class:`ConfigError`: parameters that cannot work. The message names the numbers that
  would. It is also a :class:`ValueError`. :class:`PolicyError` refines it: a config that
  is weaker than what the client's own policy accepts.
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
    "ForgedShareError",
    "LateMessageError",
    "PolicyError",
    "ProtocolError",
    "RangeCheckError",
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


class ForgedShareError(ProtocolError):
    """Secret shares that do not rebuild the secret their owner committed to.

    Attributes:
        owner: the client whose secret could not be rebuilt.
        suspects: the clients one of which forged (the share holders, and the owner, who
            may have dealt inconsistent shares).
    """

    def __init__(self, message: str, owner: int = -1, suspects: tuple[int, ...] = ()) -> None:
        super().__init__(message)
        self.owner = owner
        self.suspects = suspects


class RangeCheckError(ProtocolError):
    """A decoded aggregate outside what its contributors can produce: something was forged."""


class UsageError(SecAggError):
    """The caller used the API in a way it does not allow."""


class AlreadyFinalized(UsageError):
    """A one-shot object (a round's decryption, a result) was used a second time."""


class ConfigError(SecAggError, ValueError):
    """Parameters that cannot work; the message names numbers that would."""


class PolicyError(ConfigError):
    """A round config weaker than the client's own policy accepts (names the setting)."""


class SecAggTypeError(SecAggError, TypeError):
    """An argument of the wrong type; the message names the type that would work."""


class DecodeError(SecAggError, ValueError):
    """Bytes that do not decode to a well-formed message."""


class BudgetExceededError(SecAggError):
    """The next step would exceed the privacy budget (epsilon at delta)."""
