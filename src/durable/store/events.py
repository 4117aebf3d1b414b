"""The event tables (schema migrations 16 and 18): events, the triggers workers serve, what
each trigger made of each event, and running workflows' subscriptions with their buffered
events."""

from __future__ import annotations

from typing import Any

from durable.model.events import Delivery, Event
from durable.store.rows import Table

_EVENT_COLUMNS = "seq, topic, event_id, data, published_at, generation, request"


def _event(row: Any) -> Event:
    return Event(int(row[0]), row[1], row[2], row[3], float(row[4]), int(row[5]), row[6])


class Events(Table):
    """Events by topic and id, deliveries to triggers, subscriptions and their inboxes."""

    def insert_event(self, topic: str, event_id: str, data: str, now: float,
                     request: str | None = None) -> bool:
        """Store the event unless one with this topic and id exists; whether this stored it."""
        return self._one(
            "INSERT INTO events (topic, event_id, data, published_at, request)"
            " VALUES (?, ?, ?, ?, ?) ON CONFLICT (topic, event_id) DO NOTHING RETURNING seq",
            (topic, event_id, data, now, request)) is not None

    def get_event(self, topic: str, event_id: str, lock: bool = False) -> Event | None:
        row = self._one(f"SELECT {_EVENT_COLUMNS} FROM events WHERE topic = ? AND event_id = ?"
                        + (self.row_lock_clause if lock else ""), (topic, event_id))
        return None if row is None else _event(row)

    def event_by_seq(self, seq: int, lock: bool = False) -> Event | None:
        row = self._one(f"SELECT {_EVENT_COLUMNS} FROM events WHERE seq = ?"
                        + (self.row_lock_clause if lock else ""), (seq,))
        return None if row is None else _event(row)

    def list_events(self, topic: str | None, limit: int, before: int | None = None
                    ) -> list[Event]:
        """Newest first; `before`: only events older than that seq (the next page)."""
        where, params = ["1 = 1"], list[object]()
        if topic is not None:
            where.append("topic = ?")
            params.append(topic)
        if before is not None:
            where.append("seq < ?")
            params.append(before)
        return [_event(r) for r in self._rows(
            f"SELECT {_EVENT_COLUMNS} FROM events WHERE {' AND '.join(where)}"
            " ORDER BY seq DESC LIMIT ?", (*params, limit))]

    def bump_generation(self, seq: int) -> None:
        self._exec("UPDATE events SET generation = generation + 1 WHERE seq = ?", (seq,))

    def delete_events(self, published_before: float, limit: int) -> int:
        """Delete up to `limit` events published before then, with their deliveries."""
        seqs = [r[0] for r in self._rows(
            "SELECT seq FROM events WHERE published_at < ? ORDER BY seq LIMIT ?"
            + self.claim_lock_clause, (published_before, limit))]
        if seqs:
            marks = ", ".join("?" * len(seqs))
            self._exec(f"DELETE FROM event_deliveries WHERE seq IN ({marks})", seqs)
            self._exec(f"DELETE FROM subscription_inbox WHERE seq IN ({marks})", seqs)
            self._exec(f"DELETE FROM events WHERE seq IN ({marks})", seqs)
        return len(seqs)

    # -- triggers and what they made of each event -------------------------------------------
    def register_trigger(self, workflow: str, topic: str, filter: str | None,
                         respond: float | None, now: float) -> None:
        """Record the trigger a worker serves. Events published before a trigger (or before a
        deploy changed its topic or filter) start no run of it: `since` moves to now. A
        change of `respond` alone keeps `since`: it changes who answers, not what starts."""
        self._exec(
            "INSERT INTO event_triggers (workflow, topic, filter, since, respond)"
            " VALUES (?, ?, ?, ?, ?)"
            " ON CONFLICT (workflow) DO UPDATE SET topic = excluded.topic,"
            " filter = excluded.filter, respond = excluded.respond,"
            " since = CASE WHEN event_triggers.topic <> excluded.topic"
            " OR event_triggers.filter IS DISTINCT FROM excluded.filter"
            " THEN excluded.since ELSE event_triggers.since END"
            " WHERE event_triggers.topic <> excluded.topic"
            " OR event_triggers.filter IS DISTINCT FROM excluded.filter"
            " OR event_triggers.respond IS DISTINCT FROM excluded.respond",
            (workflow, topic, filter, now, respond))

    def responders(self, topic: str) -> list[tuple[str, str | None, float, float]]:
        """(workflow, filter, respond seconds, since) of the triggers of `topic` that answer
        webhook requests, by workflow name."""
        return [(r[0], r[1], float(r[2]), float(r[3])) for r in self._rows(
            "SELECT workflow, filter, respond, since FROM event_triggers"
            " WHERE topic = ? AND respond IS NOT NULL ORDER BY workflow", (topic,))]

    def delivery(self, event: Event, workflow: str) -> Delivery | None:
        """What the workflow's trigger made of this generation of the event, once dispatched."""
        row = self._one("SELECT workflow, generation, run_id, delivered_at FROM event_deliveries"
                        " WHERE seq = ? AND workflow = ? AND generation = ?",
                        (event.seq, workflow, event.generation))
        return None if row is None else Delivery(row[0], int(row[1]), row[2], float(row[3]))

    def trigger_since(self, workflow: str) -> float | None:
        row = self._one("SELECT since FROM event_triggers WHERE workflow = ?", (workflow,))
        return None if row is None else float(row[0])

    def undelivered(self, workflow: str, topic: str, since: float, limit: int) -> list[Event]:
        """The oldest events of `topic` since `since` that the workflow's trigger has not
        dispatched in their current generation, locked: a second worker skips them
        (PostgreSQL) or waits for this transaction (SQLite's one writer)."""
        return [_event(r) for r in self._rows(
            f"SELECT {_EVENT_COLUMNS} FROM events e WHERE topic = ? AND published_at >= ?"
            " AND NOT EXISTS (SELECT 1 FROM event_deliveries d WHERE d.seq = e.seq"
            " AND d.workflow = ? AND d.generation = e.generation)"
            " ORDER BY seq LIMIT ?" + self.claim_lock_clause,
            (topic, since, workflow, limit))]

    def add_delivery(self, event: Event, workflow: str, run_id: str | None,
                     now: float) -> bool:
        """Record what the trigger made of this generation of the event; False if that was
        recorded already (another worker dispatched it first)."""
        return self._one(
            "INSERT INTO event_deliveries (seq, workflow, generation, run_id, delivered_at)"
            " VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING RETURNING seq",
            (event.seq, workflow, event.generation, run_id, now)) is not None

    def deliveries(self, seq: int) -> list[Delivery]:
        return [Delivery(r[0], int(r[1]), r[2], float(r[3])) for r in self._rows(
            "SELECT workflow, generation, run_id, delivered_at FROM event_deliveries"
            " WHERE seq = ? ORDER BY generation, workflow", (seq,))]

    # -- subscriptions of running workflows ---------------------------------------------------
    def add_subscription(self, run_id: str, sub_key: str, topic: str, filter: str | None,
                         now: float) -> None:
        self._exec("INSERT INTO subscriptions (run_id, sub_key, topic, filter, created_at)"
                   " VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                   (run_id, sub_key, topic, filter, now))

    def has_subscription(self, run_id: str, sub_key: str) -> bool:
        return self._one("SELECT 1 FROM subscriptions WHERE run_id = ? AND sub_key = ?",
                         (run_id, sub_key)) is not None

    def set_waiter(self, run_id: str, sub_key: str, op_id: str | None) -> None:
        """The next_event operation waiting on the subscription (None: none waits)."""
        self._exec("UPDATE subscriptions SET waiter = ? WHERE run_id = ? AND sub_key = ?",
                   (op_id, run_id, sub_key))

    def waiter_of(self, run_id: str, sub_key: str) -> str | None:
        row = self._one("SELECT waiter FROM subscriptions WHERE run_id = ? AND sub_key = ?",
                        (run_id, sub_key))
        return None if row is None else row[0]

    def subscriptions_of(self, topic: str) -> list[tuple[str, str, str | None]]:
        """(run id, key, filter) of every subscription to `topic`, of runs still live."""
        return [(r[0], r[1], r[2]) for r in self._rows(
            "SELECT s.run_id, s.sub_key, s.filter FROM subscriptions s JOIN runs r"
            " ON r.run_id = s.run_id WHERE s.topic = ? AND r.ended_at IS NULL"
            " ORDER BY s.run_id, s.sub_key", (topic,))]

    def push_inbox(self, run_id: str, sub_key: str, seq: int) -> None:
        self._exec("INSERT INTO subscription_inbox (run_id, sub_key, seq) VALUES (?, ?, ?)"
                   " ON CONFLICT DO NOTHING", (run_id, sub_key, seq))

    def pop_inbox(self, run_id: str, sub_key: str) -> Event | None:
        """The oldest buffered event of the subscription, taken out of its inbox."""
        row = self._one(
            f"SELECT {', '.join('e.' + c for c in _EVENT_COLUMNS.split(', '))}"
            " FROM subscription_inbox i JOIN events e ON e.seq = i.seq"
            " WHERE i.run_id = ? AND i.sub_key = ? ORDER BY i.seq LIMIT 1", (run_id, sub_key))
        if row is None:
            return None
        self._exec("DELETE FROM subscription_inbox WHERE run_id = ? AND sub_key = ? AND seq = ?",
                   (run_id, sub_key, row[0]))
        return _event(row)
