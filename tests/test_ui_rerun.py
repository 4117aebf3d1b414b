"""The run page's rerun form, in a real headless Chromium: on a failed run it starts from the
step that failed and holds the recorded input, ready to edit; a rerun with one field edited
keeps the others and reuses the steps before."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.kit import wait_until
from tests.serverkit import Server
from tests.test_rerun_patch import ORDER
from tests.test_ui import TOKEN, browser, log_in, page

__all__ = ["browser", "page"]  # the fixtures, shared with tests/test_ui.py


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    with Server(tmp_path, TOKEN, "--worker", "tests/apps/rerun_app.py",
                env={"RERUN_EFFECTS": str(tmp_path / "effects.txt")}) as s:
        yield s


def test_the_rerun_form_starts_at_the_failed_step_with_the_recorded_input_to_edit(
        page: Page, server: Server, tmp_path: Path) -> None:
    with server.client() as api:
        api.post("/api/runs", json={"workflow": "order", "input": ORDER, "id": "too-many"})
        wait_until(lambda: api.get("/api/runs/too-many/result").json()["status"] == "FAILED",
                   "the order to fail at its charge", interval=0.05)
    log_in(page, server)
    page.goto(f"{server.url}/runs/too-many")
    form = page.locator("form[data-kind=rerun]")
    step = form.get_by_label("From step")
    expect(step).to_have_value("charge")  # not "reserve", the first step listed
    assert step.locator("option").all_inner_texts() == ["reserve", "charge"]
    box = form.locator("textarea[name=input]")
    assert json.loads(box.input_value()) == ORDER
    box.fill(box.input_value().replace('"qty": 9', '"qty": 2'))
    form.get_by_role("button", name="Rerun").click()
    expect(page).not_to_have_url(f"{server.url}/runs/too-many")  # on to the new run's page
    new_id = page.url.rsplit("/", 1)[-1]
    with server.client() as api:
        wait_until(lambda: api.get(f"/api/runs/{new_id}/result").json()["status"]
                   == "SUCCEEDED", "the rerun to succeed", interval=0.05)
        assert api.get(f"/api/runs/{new_id}").json()["run"]["input"] == {**ORDER, "qty": 2}
    effects = (tmp_path / "effects.txt").read_text().splitlines()
    assert effects == ["reserve lamp", "charge 9", "charge 2"]
