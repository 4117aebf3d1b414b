"""Mailer: a queue with a rate, priorities and dedup ids, and a schedule managed at run time.

The email provider takes two messages a minute, so `send_welcome` runs are on the queue
`emails` (`rate="2/minute"`): the rest wait ENQUEUED, in priority order, each with its position.
A signup form that may post twice starts the welcome with `dedup_id=f"welcome-{user}"`: while
that run is live, a second start returns it instead of sending the mail twice.

`digest` has no schedule in its code: an operator gives it one at run time, pauses it over a
holiday, backfills the days it missed and triggers one now (README, "Operating Durable").

    durable start examples/mailer.py:send_welcome --input '"ada"' --dedup-id welcome-ada
    durable ls --status ENQUEUED
    durable schedules create mailer.digest '0 8 * * *' --timezone Europe/Paris
    durable worker examples/mailer.py
"""

import durable
from durable import Context, workflow

EMAILS = durable.Queue("emails", rate="2/minute")


def deliver(user: str, subject: str) -> str:
    """Stands in for the provider's API; its message id is the step's result."""
    print(f"to {user}: {subject}", flush=True)
    return f"msg-{subject.lower().replace(' ', '-')}-{user}"


@workflow(name="mailer.send_welcome", queue=EMAILS)
async def send_welcome(ctx: Context, user: str) -> str:
    return str(await ctx.step(deliver, user, "Welcome aboard", name="deliver"))


@workflow(name="mailer.digest")
async def digest(ctx: Context) -> str:
    """The daily digest to the team; scheduled through `durable schedules create`."""
    return str(await ctx.step(deliver, "team", "Daily digest", name="deliver"))


if __name__ == "__main__":
    client = durable.Client()
    first = client.start(send_welcome, "ada", dedup_id="welcome-ada")
    again = client.start(send_welcome, "ada", dedup_id="welcome-ada")
    print(first.run_id == again.run_id, client.get(first.run_id).status)
