"""A GitHub webhook that starts a review run only for pull requests opened against `main`, and
answers GitHub synchronously with the run's own response.

Point a repository's webhook (content type application/json) at `/hooks/events/github` of a
`durable server` serving this file. Every delivery is stored as an event (its id is GitHub's
`X-GitHub-Delivery`, so a redelivery starts nothing new); the trigger's CEL filter reads the
`X-GitHub-Event` header and the payload, and only a pull request opened on main starts a run.
That run answers the delivery with `ctx.respond` (GitHub shows the answer in the delivery's log)
and carries on: it labels the pull request and comments on it. Any other delivery is answered
201 with the stored event, and starts nothing.

Run it:

    durable server --worker examples/automation/github_webhook.py
    curl -i localhost:8777/hooks/events/github \\
        -H 'X-GitHub-Event: pull_request' -H 'X-GitHub-Delivery: 72d3162e' \\
        -d '{"action": "opened", "number": 7,
             "pull_request": {"title": "Fix the flaky login test", "base": {"ref": "main"}}}'
"""

import logging

from durable import Context, WebhookRequest, workflow

log = logging.getLogger(__name__)

OPENED_ON_MAIN = ('request.headers["x-github-event"] == "pull_request"'
                  ' && data.action == "opened" && data.pull_request.base.ref == "main"')
"""CEL over the request (headers are lower case) and the JSON payload (`data`)."""

LABELS = {"fix": "bug", "test": "tests", "doc": "docs"}


def choose_labels(title: str) -> list[str]:
    """The labels whose word the title has: a stand-in for asking a model or a CODEOWNERS file."""
    words = title.lower()
    return sorted({label for word, label in LABELS.items() if word in words})


def post_comment(number: int, labels: list[str]) -> str:
    """A stand-in for the GitHub API call (POST /repos/{owner}/{repo}/issues/{number}/comments):
    a step, so it is made once however often the run replays."""
    comment = f"#{number}: labelled {', '.join(labels) or 'nothing'}"
    log.info("commenting %s", comment)
    return comment


@workflow(name="review_pull_request", on_event="github", filter=OPENED_ON_MAIN, respond=True)
async def review_pull_request(ctx: Context, request: WebhookRequest) -> str:
    number = request.body["number"]
    await ctx.respond(202, headers={"X-Review-Run": ctx.run_id},
                      body={"review": "started", "pull_request": number,
                            "delivery": request.headers["x-github-delivery"]})
    labels = await ctx.step(choose_labels, request.body["pull_request"]["title"],
                            name="choose labels")
    return await ctx.step(post_comment, number, labels, name="comment")
