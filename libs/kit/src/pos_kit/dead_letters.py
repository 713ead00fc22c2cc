"""Dead letters seen and sent again: list the dead-letter stream, redrive after a fix.

A consumer dead-letters a message it could not apply (consumer.py) to `pos.dlq.<consumer>`
with the original subject, the deliveries it took and the error. After the cause is fixed, a
redrive publishes the message again on its original subject, marked for that one consumer
(`Omnitill-Redrive-For`): the other consumers of the subject ack it unread, so only the consumer
that failed sees it again, with a fresh count of attempts. The inbox still makes its effect
apply once. The dead letter is deleted only after JetStream acknowledged the republish, and the
republish is deduplicated on its dead letter's sequence, so a redrive that is interrupted and
run again sends the message once.

`python -m pos_kit.dead_letters list [--consumer NAME]`, `... redrive SEQ` and
`... redrive --all [--consumer NAME]` (NATS_URL from the environment).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
from dataclasses import asdict, dataclass
from datetime import datetime

from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from pos_kit.events import EVENT_ID_HEADER, EVENT_TYPE_HEADER, MERCHANT_HEADER
from pos_kit.streams import DLQ_PREFIX, DLQ_STREAM

ORIGINAL_SUBJECT = "Omnitill-Original-Subject"
CONSUMER = "Omnitill-Consumer"
DELIVERIES = "Omnitill-Deliveries"
ERROR = "Omnitill-Error"
REDRIVE_FOR = "Omnitill-Redrive-For"
_DEAD_LETTER_HEADERS = (ORIGINAL_SUBJECT, CONSUMER, DELIVERIES, ERROR, "Nats-Msg-Id")


class Unroutable(ValueError):
    """A dead letter that does not say its consumer and subject (not one a consumer set
    aside: put on the stream by hand): nowhere to send it again, so it stays."""


class UnknownConsumer(LookupError):
    """A redrive of a consumer there is not (a typo): nothing is sent, and the caller is told,
    where an empty redrive read as "its queue is empty"."""


@dataclass(frozen=True)
class DeadLetter:
    sequence: int
    consumer: str
    subject: str
    event_id: str
    event_type: str
    merchant_id: str
    error: str
    deliveries: int
    dead_lettered_at: datetime | None


def _subject(consumer: str | None) -> str:
    return f"{DLQ_PREFIX}.{consumer}" if consumer else f"{DLQ_PREFIX}.>"


def _read(sequence: int, headers: dict[str, str], at: datetime | None) -> DeadLetter:
    return DeadLetter(
        sequence=sequence,
        consumer=headers.get(CONSUMER, ""),
        subject=headers.get(ORIGINAL_SUBJECT, ""),
        event_id=headers.get(EVENT_ID_HEADER, ""),
        event_type=headers.get(EVENT_TYPE_HEADER, ""),
        merchant_id=headers.get(MERCHANT_HEADER, ""),
        error=headers.get(ERROR, ""),
        deliveries=int(headers.get(DELIVERIES, "0") or 0),
        dead_lettered_at=at,
    )


async def list_dead_letters(
    js: JetStreamContext, consumer: str | None = None, after: int = 0, limit: int = 100
) -> list[DeadLetter]:
    """Dead letters in stream order, optionally of one consumer, from after `after`."""
    found: list[DeadLetter] = []
    sequence = after + 1
    while len(found) < limit:
        try:
            raw = await js.get_msg(DLQ_STREAM, seq=sequence, subject=_subject(consumer), next=True)
        except NotFoundError:
            break  # nothing at or after `sequence`
        assert raw.seq is not None
        found.append(_read(raw.seq, dict(raw.headers or {}), raw.time))
        sequence = raw.seq + 1
    return found


async def redrive(js: JetStreamContext, sequence: int) -> DeadLetter:
    """Send one dead letter again to the consumer that failed it; NotFoundError if gone,
    Unroutable (and it stays) if it does not say its consumer and subject."""
    raw = await js.get_msg(DLQ_STREAM, seq=sequence)
    headers = dict(raw.headers or {})
    letter = _read(sequence, headers, raw.time)
    if not letter.consumer or not letter.subject:
        raise Unroutable(f"dead letter {sequence} does not say its consumer and subject")
    again = {k: v for k, v in headers.items() if k not in _DEAD_LETTER_HEADERS}
    again[REDRIVE_FOR] = letter.consumer
    again["Nats-Msg-Id"] = f"redrive:{DLQ_STREAM}:{sequence}"
    await js.publish(letter.subject, raw.data or b"", headers=again)
    await js.delete_msg(DLQ_STREAM, sequence)
    return letter


async def consumer_known(js: JetStreamContext, consumer: str) -> bool:
    """Whether `consumer` names a consumer there is: one whose dead letters wait here, or a
    durable consumer of one of the streams. The letters are looked at first: an ordered
    consumer made again from its ack floor (`Consumer._rewind_if_needed`) is missing from its
    stream for a moment, and its letters still say it is one."""
    try:
        await js.get_msg(DLQ_STREAM, seq=1, subject=_subject(consumer), next=True)
        return True
    except NotFoundError:
        pass
    for stream in await js.streams_info():
        name = stream.config.name
        if not name or name == DLQ_STREAM:
            continue
        try:
            await js.consumer_info(name, consumer)
            return True
        except NotFoundError:
            continue
    return False


async def redrive_all(js: JetStreamContext, consumer: str | None = None) -> list[DeadLetter]:
    """Every dead letter (or a consumer's) sent again, oldest first; one that is Unroutable
    stays where it is, and the others are sent all the same. UnknownConsumer for a consumer
    there is not (`consumer_known`)."""
    if consumer is not None and not await consumer_known(js, consumer):
        raise UnknownConsumer(consumer)
    sent: list[DeadLetter] = []
    after = 0
    while batch := await list_dead_letters(js, consumer, after):
        for letter in batch:
            if not letter.consumer or not letter.subject:
                continue
            sent.append(await redrive(js, letter.sequence))
        after = batch[-1].sequence
    return sent


async def _main(argv: list[str] | None = None) -> None:
    import nats

    parser = argparse.ArgumentParser(prog="python -m pos_kit.dead_letters")
    sub = parser.add_subparsers(dest="command", required=True)
    show = sub.add_parser("list", help="list dead letters (JSON, one a line)")
    show.add_argument("--consumer")
    again = sub.add_parser("redrive", help="send dead letters again to their consumer")
    again.add_argument("sequence", nargs="?", type=int)
    again.add_argument("--all", action="store_true")
    again.add_argument("--consumer")
    args = parser.parse_args(argv)
    nc = await nats.connect(os.environ.get("NATS_URL", "nats://127.0.0.1:4222"))
    try:
        js = nc.jetstream()
        if args.command == "list":
            letters = await list_dead_letters(js, args.consumer, limit=10_000)
        elif args.all:
            try:
                letters = await redrive_all(js, args.consumer)
            except UnknownConsumer:
                parser.error(f"no such consumer: {args.consumer}")
        elif args.sequence is not None:
            letters = [await redrive(js, args.sequence)]
        else:
            parser.error("redrive takes a sequence or --all")
        for letter in letters:
            print(json.dumps(asdict(letter), default=str))
    finally:
        await nc.close()


if __name__ == "__main__":
    asyncio.run(_main())
