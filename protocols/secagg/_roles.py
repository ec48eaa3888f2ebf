"""What the per-round-setup roles (:mod:`.client`, :mod:`.server`) and the enrolled roles
(:mod:`.enrolled_client`, :mod:`.enrolled_server`) do the same way, written once.

Both clients encode their input, run their transition table and abort for good on any
:class:`ProtocolError`; both check an unmask request's split of their neighbours, (active
variant) the survivor list they are asked to sign and the signatures an unmask request
carries, with the same rules. Both servers run their table, refuse late and unexpected
messages, close stages on a deadline (aborting on :class:`ProtocolError`), and collect and
check signatures on the survivor list. Each mode keeps its own messages, key schedule and
state enums; a subclass names them in class attributes.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from protocols._machine import transition
from protocols.base import SERVER, AggregateResult, ClientCore, Message, ServerCore, check_header
from protocols.secagg.config import SecAggConfig
from protocols.secagg.messages import Signed
from secagg import sign
from secagg.errors import DropoutError, LateMessageError, ProtocolError, UsageError
from secagg.rng import Csprng

__all__ = ["IdSet", "MaskingClient", "MaskingServer", "check_enough_survivors", "check_signed_split",
           "check_survivor_list", "check_unmask_split"]


class MaskingClient(ClientCore):
    """The receive loop and input encoding of a SecAgg / SecAgg+ client.

    A subclass sets ``_HANDLERS`` (message kind -> handler), ``_ABORTED`` (its state enum's
    aborted member) and ``_INPUT_STATES`` (the states in which the input may still be set),
    and gives every instance ``config``, ``client_id``, ``_rng``, ``_table``, ``state`` and
    ``encoded``; :meth:`_forget` drops its round secrets.
    """

    _HANDLERS: ClassVar[dict[object, Callable[[Any, Message], list[Message]]]]
    _ABORTED: ClassVar[enum.Enum]
    _INPUT_STATES: ClassVar[tuple[enum.Enum, ...]]

    config: SecAggConfig
    client_id: int
    state: enum.Enum
    encoded: np.ndarray | None
    _rng: Csprng
    _table: dict[Any, Any]

    @property
    def aborted(self) -> bool:
        return self.state is self._ABORTED

    def set_input(self, update: np.ndarray, weight: float = 1.0) -> None:
        """Clip, weight and encode the update (see :class:`secagg.encoding.EncodingConfig`)."""
        if self.state not in self._INPUT_STATES:
            raise UsageError(f"input can no longer change: the client is {self.state.name}")
        if len(update) != self.config.dim:
            raise UsageError(f"update has {len(update)} values, the round expects "
                             f"{self.config.dim}")
        encoded = self.config.encoding.encode(update, self._rng, weight)
        noise = self.config.client_noise
        if noise is not None:  # distributed DP: noise before masking, clamped (see config)
            e = noise.client_noise(self.config.dim + 1, self._rng)
            bound = self.config.client_noise_bound
            np.clip(e, -bound, bound, out=e)
            np.add(encoded, e.astype(encoded.dtype), out=encoded)
        self.encoded = encoded

    def receive(self, msg: Message) -> list[Message]:
        """Handle one message from the server.

        Raises:
            ProtocolError: anything the protocol forbids; the client is then ABORTED.
            UsageError: the input was not set before it was needed (state unchanged).
        """
        if self.state is self._ABORTED:
            raise ProtocolError(f"client {self.client_id} has aborted this round")
        try:
            nxt = transition(self._table, self.state, msg.KIND)
            out = self._HANDLERS[msg.KIND](self, msg)
        except ProtocolError:
            self._abort()
            raise
        self.state = nxt
        return out

    def _forget(self) -> None:
        """Drop the round's secrets (after the unmask answer, or on abort)."""
        raise NotImplementedError

    def _abort(self) -> None:
        self.state = self._ABORTED
        self._forget()


def check_unmask_split(me: int, survivors: tuple[int, ...], dropped: tuple[int, ...],
                       neighbours: Collection[int]) -> tuple[set[int], set[int]]:
    """The survivor and dropped sets of an unmask request, after the checks both modes make:
    no repeats, no neighbour both survived and dropped (the invariant that protects every
    input), this client among the survivors, and exactly ``neighbours`` split. (At least t
    survivors is checked after the active variant's consistency check:
    :func:`check_enough_survivors`.)

    Raises:
        ProtocolError: naming the rule the request breaks.
    """
    surv, drop = set(survivors), set(dropped)
    if len(surv) != len(survivors) or len(drop) != len(dropped):
        raise ProtocolError("unmask request lists a client twice")
    both = surv & drop
    if both:
        raise ProtocolError(f"unmask request lists {sorted(both)} both as survivors and as "
                            "dropped; revealing both kinds of share would unmask them")
    if me not in surv:
        raise ProtocolError("unmask request says this client dropped, but it sent its input")
    if surv | drop != set(neighbours) | {me}:
        raise ProtocolError("unmask request does not split exactly the neighbours this "
                            "client masked with")
    return surv, drop


def check_enough_survivors(config: SecAggConfig, surv: Collection[int]) -> None:
    """An unmask request keeps at least t survivors (this client counted) and, for the
    complete graph, where the list is global, at least the release floor
    ``max(2, min_clients)`` (the active variant also checks the floor on the list it signs).

    Raises:
        ProtocolError: too few survivors.
    """
    t = config.threshold
    if len(surv) < t:
        raise ProtocolError(f"unmask request names {len(surv)} survivors; t={t} are required")
    floor = config.release_floor
    if config.complete and len(surv) < floor:
        raise ProtocolError(f"unmask request names {len(surv)} survivors; min_clients="
                            f"{config.min_clients} (release floor {floor}) refuses "
                            "to help unmask a smaller sum")


@dataclass(frozen=True)
class IdSet(Collection[int]):
    """A set of client ids (non-negative ints) held as a bitmap: what a client keeps of a
    roster of n clients is n / 8 bytes, not a hash set of n ints (about 80 bytes each), so a
    simulated cohort of n clients holds O(n^2) bits, not O(n^2) objects. A dataclass, so a
    Flower node's snapshot of the client carries it (:mod:`fl.flower.state`)."""

    bits: bytes = b""

    @classmethod
    def of(cls, ids: Iterable[int]) -> IdSet:
        """The set of ``ids``."""
        at = np.fromiter(ids, np.int64)
        if at.size and at.min() < 0:
            raise UsageError("client ids are non-negative")
        member = np.zeros(int(at.max()) + 1 if at.size else 0, bool)
        member[at] = True
        return cls(np.packbits(member, bitorder="little").tobytes())  # bit v & 7 of byte v >> 3

    def __contains__(self, v: object) -> bool:
        if not isinstance(v, int) or v < 0 or v >> 3 >= len(self.bits):
            return False
        return bool(self.bits[v >> 3] >> (v & 7) & 1)

    def __iter__(self) -> Iterator[int]:
        return (i for i in range(len(self.bits) * 8) if i in self)

    def __len__(self) -> int:
        return sum(b.bit_count() for b in self.bits)


def check_survivor_list(config: SecAggConfig, me: int, survivors: tuple[int, ...],
                        allowed: Collection[int], neighbours: Collection[int]) -> None:
    """Active variant: the checks both modes make on a survivor list before signing it.

    ``allowed`` are the clients the list may name (the roster, or the cohort), and
    ``neighbours`` those this client masked with.

    Raises:
        ProtocolError: unsorted or repeated, outside ``allowed``, without this client, too
            few of this client's neighbours for t, fewer than ``signature_threshold``, or
            fewer possible contributors than the release floor.
    """
    if list(survivors) != sorted(set(survivors)):
        raise ProtocolError("survivor list must be sorted and without repeats")
    if me not in survivors:
        raise ProtocolError("survivor list omits this client, which sent its input")
    outside = [v for v in survivors if v not in allowed]
    if outside:
        raise ProtocolError(f"survivor list names clients {outside[:5]} that are not "
                            "in the roster or cohort")
    alive = (set(neighbours) | {me}) & set(survivors)
    if len(alive) < config.threshold:
        raise ProtocolError(f"survivor list keeps {len(alive)} of this client's neighbours "
                            f"and itself; t={config.threshold} are required")
    if len(survivors) < config.signature_threshold:
        raise ProtocolError(f"survivor list has {len(survivors)} clients; unmasking needs "
                            f"{config.signature_threshold} signatures")
    # The complete graph: every real contributor masked with this client, so names it did
    # not mask with (clients that never shared) do not count towards the floor.
    counted = len(alive) if config.complete else len(survivors)
    if counted < config.release_floor:
        raise ProtocolError(f"survivor list has {counted} clients that can have "
                            f"contributed; min_clients={config.min_clients} (release floor "
                            f"{config.release_floor}) refuses to sign a smaller sum")


def check_signed_split(config: SecAggConfig, me: int, neighbours: Collection[int],
                       surv: set[int], drop: set[int], signed: frozenset[int] | None,
                       signatures: Iterable[Signed], verify_key: Callable[[int], bytes] | None,
                       message: Callable[[tuple[int, ...]], bytes]) -> None:
    """Active variant: an unmask request carries ``signature_threshold`` valid signatures,
    by distinct clients of the list this client signed, on that list (``message`` of it),
    and splits this client's neighbours exactly as that list does.

    Raises:
        ProtocolError: before the consistency exchange, a repeated or foreign signer, a bad
            signature, too few, or a split that contradicts the list.
    """
    if signed is None or verify_key is None:
        raise ProtocolError("unmask request before the consistency exchange")
    sigs = tuple(signatures)
    signers = [s.client for s in sigs]
    if len(set(signers)) != len(signers):
        raise ProtocolError("unmask request repeats a signer")
    if not set(signers) <= signed:
        raise ProtocolError("unmask request carries signatures of clients not on the list")
    need = config.signature_threshold
    if len(signers) < need:
        raise ProtocolError(f"only {len(signers)} signatures on the survivor list; "
                            f"{need} needed")
    body = message(tuple(sorted(signed)))
    for s in sigs:
        sign.verify(verify_key(s.client), body, s.signature)
    nbrs = set(neighbours)
    if surv != (nbrs & signed) | {me} or drop != nbrs - signed:
        raise ProtocolError("unmask request contradicts the survivor list this client signed")


class MaskingServer(ServerCore):
    """The stage machine of a SecAgg / SecAgg+ server.

    A subclass sets ``_HANDLERS`` (message kind -> handler), ``_CLOSERS`` (stage -> what
    closing it sends), ``_STAGE_OF`` (message kind -> the stage that collects it),
    ``_FINISHED`` and ``_ABORTED`` (its stage enum's members), ``_DEADLINE`` (its deadline
    event), and implements
    :meth:`_check_recoverable`, :meth:`_unmask_requests`, :meth:`_survivors_message` and
    :meth:`_release`; every instance has ``config``, ``stage``, ``_table``, ``_started``,
    ``_waiting``, ``_signatures``, ``_survivor_list``, ``_result`` and ``dropped_at``.
    """

    _HANDLERS: ClassVar[dict[object, Callable[[Any, Message], None]]]
    _CLOSERS: ClassVar[dict[Any, Callable[[Any], list[Message]]]]
    _STAGE_OF: ClassVar[Mapping[object, enum.Enum]]
    _FINISHED: ClassVar[enum.Enum]
    _ABORTED: ClassVar[enum.Enum]
    _DEADLINE: ClassVar[enum.Enum]

    config: SecAggConfig
    stage: enum.Enum
    _table: dict[Any, Any]
    _started: bool
    _waiting: set[int]
    _signatures: dict[int, bytes]
    _survivor_list: tuple[int, ...]
    _result: AggregateResult | None
    dropped_at: dict[Any, tuple[int, ...]]

    @property
    def finished(self) -> bool:
        return self.stage is self._FINISHED

    def receive(self, msg: Message) -> list[Message]:
        """Take one client message; returns the next stage's requests once all have answered.

        Raises:
            ProtocolError: the message is refused (late: LateMessageError); state unchanged.
            DropoutError: a stage closed with too few survivors; the round is ABORTED.
        """
        if not self._started:
            raise UsageError("call start() before receive()")
        kind = msg.KIND
        own_stage = self._STAGE_OF.get(kind)
        if own_stage is not None and own_stage.value < self.stage.value:
            raise LateMessageError(f"{kind.name} from {msg.sender} arrived after its stage "
                                   "closed")
        transition(self._table, self.stage, kind)
        self._HANDLERS[kind](self, msg)
        return self._advance() if not self._waiting else []

    def close_round(self) -> list[Message]:
        """The stage's deadline passed: whoever has not answered has dropped."""
        if not self._started:
            raise UsageError("call start() before close_round()")
        if self.stage in (self._FINISHED, self._ABORTED):
            return []
        return self._advance()

    def result(self) -> AggregateResult:
        if self._result is None:
            raise UsageError(f"no result: the round is {self.stage.name}")
        return self._result

    def _expect(self, msg: Message, cls: type[Message]) -> None:
        check_header(msg, cls, self.config, sender=None, recipient=SERVER)
        if msg.sender not in self._waiting:
            raise ProtocolError(f"no {cls.__name__} expected from client {msg.sender} now "
                                "(duplicate, excluded, outside the cohort, or never asked)")

    def _advance(self) -> list[Message]:
        nxt = transition(self._table, self.stage, self._DEADLINE)
        self.dropped_at[self.stage] = tuple(sorted(self._waiting))
        try:
            out = self._CLOSERS[self.stage](self)
        except ProtocolError:
            self.stage = self._ABORTED
            self._release()
            raise
        self.stage = nxt
        return out

    def _on_consistency_response(self, msg: Message, cls: type[Message],
                                 verify_key: Callable[[int], bytes]) -> None:
        self._expect(msg, cls)
        signature = getattr(msg, "signature", None)
        if not isinstance(msg, cls) or not isinstance(signature, bytes):
            raise ProtocolError(f"expected {cls.__name__}")
        sign.verify(verify_key(msg.sender), self._survivors_message(self._survivor_list),
                    signature)
        self._signatures[msg.sender] = signature
        self._waiting.discard(msg.sender)

    def _close_signatures(self) -> list[Message]:
        signers = frozenset(self._signatures)
        need = self.config.signature_threshold
        if len(signers) < need:
            raise DropoutError(f"only {len(signers)} clients signed the survivor list; "
                               f"{need} signatures are needed")
        self._check_recoverable(signers)
        sigs = tuple(Signed(u, self._signatures[u]) for u in sorted(signers))
        return self._unmask_requests(signers, sigs)

    def _check_recoverable(self, holders: frozenset[int]) -> None:
        raise NotImplementedError

    def _unmask_requests(self, recipients: frozenset[int],
                         sigs: tuple[Signed, ...]) -> list[Message]:
        raise NotImplementedError

    def _survivors_message(self, survivors: tuple[int, ...]) -> bytes:
        raise NotImplementedError

    def _release(self) -> None:
        raise NotImplementedError
