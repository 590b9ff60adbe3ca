"""Streaming bars from tick *batches*: parse, dedup and pre-aggregate a message's ticks together.

Why: on the DirectRunner every element costs a trip through the bundle executor, and every key
of a stateful DoFn costs a timer the runner rescans on each step, so moving ticks one by one
through dedup (a key and a timer per trade) and the bar windows (a trigger evaluation per tick)
caps throughput well below a live feed's rate, and the more ticks are remembered the worse it
gets. Here the unit is a message (a batch of ticks, see ``alphastream.wire``) and then a
(symbol, bucket) group of it:

    (origin, body) --ParseTickBatches--> ((symbol, dedup bucket), [Tick]) + DeadLetters
        --DedupTickBatches--> (symbol, [kept deliveries])
        --BarsFromTickBatches--> Bars, for every interval

Trades and their deliveries follow transforms.trade_identity. The parser resolves each trade's
deliveries within a message to the kept one and puts them all in the kept delivery's
(symbol, 1-second bucket) group. Dedup remembers, per group, each trade's kept delivery; a timer
forgets them ``horizon`` after the bucket ends (or, on Flink, a later bucket taking the group's
slot does: ``Forget``). A later delivery of a remembered trade is a
duplicate, and if it disagrees with the kept one it is also counted as ``ticks_conflicting``
instead of changing the bars. Emitted bars cannot be retracted here, so a later delivery the
rule would prefer, or one at another time (another bucket), leaves the result dependent on
arrival order: streaming equals batch when each trade's deliveries arrive in one message, or
later only as exact repeats of the kept delivery. Removing the remaining order dependence
means making stored bars final from a durable tick archive with the batch rules
(transforms.batch_bars); that is separate work.

Bars pre-aggregate each group into one partial bar per interval bucket before the windowed
chain (transforms.bars.WindowedBars), so the trigger machinery sees one element per
(message, symbol, bucket) instead of per tick.
"""
# Beam's functions carry no annotations; calling them is the point of this module.
from __future__ import annotations

import enum
import functools
import json
from typing import Any, Iterable, Iterator

import apache_beam as beam
import numpy as np
from apache_beam.coders.coders import StrUtf8Coder
from apache_beam.metrics.metric import Metrics
from apache_beam.pvalue import TaggedOutput
from apache_beam.transforms.timeutil import TimeDomain
from apache_beam.transforms.userstate import ReadModifyWriteStateSpec, TimerSpec, on_timer
from apache_beam.transforms.window import TimestampedValue
from apache_beam.utils.timestamp import Duration, Timestamp

from alphastream.intervals import bucket_start_us, interval_micros
from alphastream.records import METRICS_NAMESPACE, DeadLetterReason, Tick
from alphastream.sessions import NO_SESSION, SessionMap
from transforms.bars import WindowedBars, merge_all, tick_accumulator
from transforms.beam_types import PColl, TaggedTransform, Transform
from transforms.parse import DEAD_LETTERS, TICKS, NowFn, TypeDeadLetters, dead_letter
from transforms.session_days import bucket_starts, follows_sessions
from transforms.trade_identity import Delivery, delivery, kept_deliveries, trade_identity
from transforms.validation import TickRejected, ValidationPolicy, raw_text, tick_from_fields, tick_from_json

GroupKey = tuple[str, int]  # (symbol, bucket start us)


class _Unreadable:
    """Marks a body that is not JSON: the parser rejects it as bad_json with the raw text."""


UNREADABLE = _Unreadable()


def decode_tick_batch(body: bytes) -> list[tuple[Any, bytes]]:
    """One message body -> [(decoded item, its raw JSON)], decoding the JSON once.

    A JSON array gives one entry per item (``[]``, a heartbeat, gives none); any other JSON
    value is one entry; a body that is not JSON is one ``UNREADABLE`` entry with the raw body.
    """
    try:
        decoded = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: absurdly deep nesting
        return [(UNREADABLE, body)]
    if not isinstance(decoded, list):
        return [(decoded, body)]
    return [(item, json.dumps(item, separators=(",", ":")).encode()) for item in decoded]


def group_ticks(ticks: Iterable[Tick], bucket_us: int) -> dict[GroupKey, list[Tick]]:
    """Ticks -> {(symbol, bucket start): ticks}, buckets ``bucket_us`` wide."""
    groups: dict[GroupKey, list[Tick]] = {}
    for tick in ticks:
        groups.setdefault((tick.symbol, bucket_start_us(tick.ts_us, bucket_us)), []).append(tick)
    return groups


def group_deliveries(ticks: list[Tick], bucket_us: int) -> dict[GroupKey, list[Tick]]:
    """Like group_ticks, but every delivery of a trade goes to the group of the trade's kept
    delivery, so dedup sees them together even when their times fall in different buckets."""
    kept = kept_deliveries(ticks)
    groups: dict[GroupKey, list[Tick]] = {}
    for tick in ticks:
        ts_us = kept[trade_identity(tick)].ts_us  # never later than tick.ts_us
        groups.setdefault((tick.symbol, bucket_start_us(ts_us, bucket_us)), []).append(tick)
    return groups


class _ParseTickBatchDoFn(beam.DoFn):
    """(origin, body) -> ((symbol, bucket), [Tick]) per group, stamped with the group's earliest
    tick; rejected ticks -> DeadLetters on the ``dead_letters`` output."""

    def __init__(self, now_us: NowFn, default_source: str, policy: ValidationPolicy, bucket_us: int):
        self._now_us, self._default_source, self._policy, self._bucket_us = now_us, default_source, policy, bucket_us
        self._messages = Metrics.counter(METRICS_NAMESPACE, "messages_read")
        self._read = Metrics.counter(METRICS_NAMESPACE, "ticks_read")
        self._parsed = Metrics.counter(METRICS_NAMESPACE, "ticks_parsed")
        self._rejected = Metrics.counter(METRICS_NAMESPACE, "ticks_dead_lettered")

    def process(self, element: tuple[str, bytes | str], timestamp: Any = beam.DoFn.TimestampParam) -> Iterable[Any]:
        origin, body = element
        body = body.encode("utf-8") if isinstance(body, str) else body
        now_us = self._now_us()
        items = decode_tick_batch(body)
        self._messages.inc()
        self._read.inc(len(items))
        ticks = []
        for item, payload in items:
            try:
                ticks.append(self._tick(item, payload, now_us, timestamp))
            except TickRejected as rejection:
                self._rejected.inc()
                yield TaggedOutput(DEAD_LETTERS, dead_letter(rejection, raw_text(payload), origin, now_us))
        self._parsed.inc(len(ticks))
        for key, group in group_deliveries(ticks, self._bucket_us).items():
            yield TimestampedValue((key, group), Timestamp(micros=min(t.ts_us for t in group)))

    def _tick(self, item: Any, payload: bytes, now_us: int, message_time: Timestamp) -> Tick:
        """The item as a Tick, or TickRejected saying why not."""
        if item is UNREADABLE:  # let the one-tick parser name the JSON error
            tick_from_json(payload, now_us=now_us, default_source=self._default_source, policy=self._policy)
        tick = tick_from_fields(item, now_us=now_us, default_source=self._default_source, policy=self._policy)
        if tick.ts_us < message_time.micros:
            # Beam cannot move an element back in time, and stamping it at the message's
            # time would put it in the wrong bucket.
            raise TickRejected(DeadLetterReason.BAD_TIMESTAMP,
                               f"tick time {tick.ts_us} us is before its message's event time "
                               f"{message_time.micros} us: the 'ts' attribute must be the earliest tick time")
        return tick


class ParseTickBatches(TaggedTransform):
    """(origin, message body) -> {ticks: ((symbol, bucket), [Tick]), dead_letters: DeadLetter}.

    A body is one tick object or a JSON array of them (``alphastream.wire``); ``bucket_us`` is the
    dedup bucket width (the shortest bar interval).
    """

    def __init__(self, now_us: NowFn, default_source: str, policy: ValidationPolicy, bucket_us: int):
        super().__init__()
        self._fn = _ParseTickBatchDoFn(now_us, default_source, policy, bucket_us)

    def expand(self, messages: PColl) -> dict[str, PColl]:
        parsed = messages | "ParseBatch" >> beam.ParDo(self._fn).with_outputs(DEAD_LETTERS, main=TICKS)
        return {TICKS: parsed[TICKS], DEAD_LETTERS: parsed[DEAD_LETTERS] | "TypeDeadLetters" >> TypeDeadLetters()}


# Dedup groups: a message's deliveries of a trade share its kept delivery's group; 1 s keeps
# each group's remembered trades few (they are re-encoded on every write).
DEDUP_BUCKET_US = 1_000_000
# State: one line per trade, its identity as JSON (which escapes tabs and newlines inside ids),
# a tab, then the kept delivery's "ts_us price size".
_LINE, _FIELD = "\n", "\t"


def _identity_text(tick: Tick) -> str:
    return json.dumps(trade_identity(tick), separators=(",", ":"))


def _delivery_text(tick: Tick) -> str:
    return f"{tick.ts_us} {tick.price!r} {tick.size!r}"  # repr round-trips floats exactly


def _parse_delivery(text: str) -> Delivery:
    ts_us, price, size = text.split(" ")
    return int(ts_us), float(price), float(size)


# The remembered trades as text: runners encode state on every write, and joining and
# splitting text costs far less than pickling a set.
_KEPT = ReadModifyWriteStateSpec("kept", StrUtf8Coder())
_FORGET = TimerSpec("forget", TimeDomain.WATERMARK)
# Beam finds a DoFn's state and timers through these parameter defaults.
_KEPT_STATE, _FORGET_TIMER = beam.DoFn.StateParam(_KEPT), beam.DoFn.TimerParam(_FORGET)


def _parse_kept(text: str) -> dict[str, str]:
    return dict(line.split(_FIELD, 1) for line in text.split(_LINE)) if text else {}


def _kept_text(kept: dict[str, str]) -> str:
    return _LINE.join(f"{identity}{_FIELD}{text}" for identity, text in kept.items())


def first_deliveries(kept: dict[str, str], ticks: Iterable[Tick]) -> tuple[list[Tick], int]:
    """(the kept delivery of each trade new to ``kept``, which it adds them to; how many of
    ``ticks`` disagree with their trade's kept delivery)."""
    arrived: dict[str, list[Tick]] = {}
    for tick in ticks:
        arrived.setdefault(_identity_text(tick), []).append(tick)
    fresh, conflicting = [], 0
    for identity, deliveries in arrived.items():
        if identity in kept:  # kept from an earlier message: it stays, whatever the rule prefers
            earlier = _parse_delivery(kept[identity])
        else:
            best = min(deliveries, key=delivery)
            earlier = delivery(best)
            kept[identity] = _delivery_text(best)
            fresh.append(best)
        conflicting += sum(delivery(t) != earlier for t in deliveries)
    return fresh, conflicting


class _DedupCounters:
    def __init__(self) -> None:
        self._duplicates = Metrics.counter(METRICS_NAMESPACE, "ticks_duplicate")
        self._conflicting = Metrics.counter(METRICS_NAMESPACE, "ticks_conflicting")
        self._unique = Metrics.counter(METRICS_NAMESPACE, "ticks_unique")

    def count(self, arrived: int, fresh: int, conflicting: int) -> None:
        self._unique.inc(fresh)
        # Conflicting deliveries are duplicates too (read = unique + duplicates + dead-lettered).
        self._duplicates.inc(arrived - fresh)
        self._conflicting.inc(conflicting)


class _KeptDeliveriesDoFn(beam.DoFn):
    """((symbol, bucket), [Tick]) -> (symbol, [new kept deliveries]); a timer forgets the bucket's
    trades once the watermark passes its end + the horizon."""

    def __init__(self, bucket_us: int, horizon_seconds: int):
        self._bucket_us = bucket_us
        self._horizon = Duration(seconds=horizon_seconds)
        self._counters = _DedupCounters()

    def process(self, element: Any, kept_state: Any = _KEPT_STATE, forget: Any = _FORGET_TIMER) -> Iterator[Any]:
        (symbol, bucket), ticks = element
        kept = _parse_kept(kept_state.read())
        fresh, conflicting = first_deliveries(kept, ticks)
        if fresh:
            kept_state.write(_kept_text(kept))
        forget.set(Timestamp(micros=bucket + self._bucket_us) + self._horizon)
        self._counters.count(len(ticks), len(fresh), conflicting)
        if fresh:
            yield symbol, fresh

    @on_timer(_FORGET)
    def _forget(self, kept_state: Any = _KEPT_STATE) -> None:
        kept_state.clear()


def slot_count(bucket_us: int, horizon_seconds: int) -> int:
    """Slots per symbol for SLOTS dedup: twice the buckets that end within the horizon, so a
    bucket is forgotten only after the symbol's ticks have moved on by at least twice the horizon
    in event time (the watermark lags the newest tick; the timer waits for the watermark)."""
    return 2 * -(-(horizon_seconds * 1_000_000 + bucket_us) // bucket_us)


class _SlotKeptDeliveriesDoFn(beam.DoFn):
    """((symbol, slot), (bucket, [Tick])) -> (symbol, [new kept deliveries]), with no timer. A slot
    holds one bucket's trades: a later bucket of the slot replaces them, and the ticks of an
    earlier one (its trades already forgotten) all count as new, as after the timer fired."""

    def __init__(self) -> None:
        self._counters = _DedupCounters()

    def process(self, element: Any, kept_state: Any = _KEPT_STATE) -> Iterator[Any]:
        (symbol, _), (bucket, ticks) = element
        stored_bucket, _, stored = (kept_state.read() or "").partition(_LINE)
        held = int(stored_bucket) if stored_bucket else None
        if held is not None and held > bucket:
            fresh, conflicting = first_deliveries({}, ticks)  # forgotten: nothing to compare with
        else:
            kept = _parse_kept(stored) if held == bucket else {}
            fresh, conflicting = first_deliveries(kept, ticks)
            if fresh:
                kept_state.write(f"{bucket}{_LINE}{_kept_text(kept)}")
        self._counters.count(len(ticks), len(fresh), conflicting)
        if fresh:
            yield symbol, fresh


class Forget(enum.Enum):
    """How DedupTickBatches forgets a bucket's trades after the horizon."""

    TIMER = "timer"  # an event-time timer per bucket, at its end + the horizon
    # Per symbol a ring of slot_count() slots, each holding one bucket's trades until a later
    # bucket takes the slot: no timer. For Flink, where a pending timer holds the step's output
    # watermark back, and with it every bar window after it (docs/kafka-flink.md).
    SLOTS = "slots"


class DedupTickBatches(Transform):
    """((symbol, bucket), [Tick]) -> (symbol, [kept delivery of each trade new to its group])."""

    def __init__(self, bucket_us: int, horizon_seconds: int, forget: Forget = Forget.TIMER):
        super().__init__()
        self._bucket_us, self._horizon_seconds, self._forget = bucket_us, horizon_seconds, forget

    def expand(self, groups: PColl) -> PColl:
        if self._forget is Forget.TIMER:
            kept: PColl = groups | "FirstDeliveries" >> beam.ParDo(
                _KeptDeliveriesDoFn(self._bucket_us, self._horizon_seconds))
            return kept
        bucket_us, slots = self._bucket_us, slot_count(self._bucket_us, self._horizon_seconds)
        by_slot: PColl = (
            groups
            | "KeyBySlot" >> beam.Map(lambda group: ((group[0][0], group[0][1] // bucket_us % slots),
                                                     (group[0][1], group[1])))
            | "FirstDeliveriesInSlots" >> beam.ParDo(_SlotKeptDeliveriesDoFn()))
        return by_slot


class _PartialBarsOfGroupDoFn(beam.DoFn):
    """(symbol, [Tick]) -> (symbol, OhlcvAccumulator) per interval bucket, stamped with the
    bucket's earliest tick (never earlier than the input: that is the group's earliest tick).
    Ticks outside every session make no partial bar of a session-following interval."""

    def __init__(self, interval: str, sessions: SessionMap | None = None):
        self._interval, self._sessions, self._bucket_us = interval, sessions, interval_micros(interval)
        self._by_session = follows_sessions(interval, sessions)

    def process(self, element: Any) -> Iterator[Any]:
        symbol, ticks = element
        groups = (self._session_groups(symbol, ticks) if self._by_session
                  else group_ticks(ticks, self._bucket_us).values())
        for group in groups:
            acc = merge_all(tick_accumulator(t) for t in group)
            assert acc is not None  # groups are never empty
            yield TimestampedValue((symbol, acc), Timestamp(micros=acc.first[0]))

    def _session_groups(self, symbol: str, ticks: list[Tick]) -> Iterable[list[Tick]]:
        opens = bucket_starts(symbol, self._interval, np.array([t.ts_us for t in ticks], dtype=np.int64),
                              self._sessions).tolist()
        groups: dict[int, list[Tick]] = {}
        for tick, open_us in zip(ticks, opens, strict=True):
            if open_us != NO_SESSION:
                groups.setdefault(open_us, []).append(tick)
        return groups.values()


class BarsFromTickBatches(WindowedBars):
    """(symbol, [unique Tick]) -> Bars for every interval: WindowedBars fed with each group's
    partial bars, one per interval bucket, not with single ticks. ``sessions``: see WindowedBars."""

    def __init__(self, intervals: tuple[str, ...], allowed_lateness_seconds: int, early_firing_seconds: int,
                 sessions: SessionMap | None = None):
        super().__init__(intervals, allowed_lateness_seconds, early_firing_seconds,
                         functools.partial(_PartialBarsOfGroupDoFn, sessions=sessions), sessions)
