"""What a person first touches, in a real browser: headless Chromium against the product
started as the README starts it (uvicorn config.asgi:application + manage.py run_worker
on the embedded default: SQLite, no Redis, demo data). One product and one browser for
the module; every step leaves a screenshot (tests/browser.py says where)."""

from __future__ import annotations

import uuid

import pytest
from django.conf import settings
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from tests.browser import Browser, chromium, screenshots_clear, skip_or_fail_without_a_browser
from tests.factories import CRITICAL_RISK_TEXT, HIGH_RISK_TEXT, LARGE_PAYMENT_TEXT
from tests.live import Product, live_product
from tests.support import wait_until

pytestmark = [
    pytest.mark.embedded,
    pytest.mark.skipif(settings.DATABASES["default"]["ENGINE"] != "django.db.backends.sqlite3",
                       reason="the embedded default as .ci/start runs it: once, in the embedded run"),
]

# Only stops a broken run from hanging; never a speed assertion.
BOUND = 90


@pytest.fixture(scope="module")
def product() -> Product:
    skip_or_fail_without_a_browser()
    screenshots_clear()
    with live_product(debug=True, worker=True, seed=True) as product:
        yield product


@pytest.fixture(scope="module")
def driver(product):
    with chromium() as driver:
        yield driver


@pytest.fixture
def browser(driver, product, request) -> Browser:
    return Browser(driver, product.http, prefix=request.node.name.removeprefix("test_")[:40])


def submit(product: Product, title: str, text: str) -> dict:
    with product.api("acme-agent") as api:
        response = api.post("/api/v1/tenants/acme/contracts/", json={"title": title, "text": text})
    assert response.status_code == 202, response.text
    return response.json()


def tasks_of(product: Product, contract_id: str, **params: str) -> list[dict]:
    with product.api("acme-admin") as api:
        return api.get("/api/v1/tenants/acme/reviews/", params={"contract": contract_id, **params}).json()["results"]


def task_of(product: Product, contract_id: str, kind: str) -> dict:
    return wait_until(lambda: next((t for t in tasks_of(product, contract_id, status="pending") if t["kind"] == kind),
                                   None), what=f"the {kind} task", bound=BOUND)


def contract_status(product: Product, contract_id: str) -> str:
    with product.api("acme-admin") as api:
        return api.get(f"/api/v1/tenants/acme/contracts/{contract_id}/").json()["status"]


def unique(title: str) -> str:
    return f"{title} {uuid.uuid4().hex[:6]}"


# --- Styles and docs -------------------------------------------------------------------------


def test_the_admin_is_styled(browser):
    browser.open("/admin/login/")
    header = browser.find("#header")
    # The admin's stylesheet sets its header colour; unstyled, the header is transparent.
    assert header.value_of_css_property("background-color") == "rgba(65, 118, 144, 1)"
    assert browser.find("#id_username").value_of_css_property("border-top-style") == "solid"
    browser.shot("login page styled")


def test_the_api_docs_list_the_operations(browser):
    browser.open("/api/v1/docs/")
    browser.wait(lambda d: len(d.find_elements(By.CSS_SELECTOR, ".opblock")) >= 20, "Swagger UI's operations")
    paths = {e.text for e in browser.driver.find_elements(By.CSS_SELECTOR, ".opblock-summary-path")}
    assert "/api/v1/tenants/{tenant_slug}/reviews/{task_id}/resume/" in {p.replace("\u200b", "") for p in paths}
    browser.shot("api docs")


# --- A reviewer's day -------------------------------------------------------------------------


def test_a_reviewer_sees_a_new_contract_appear_claims_and_approves_it(browser, product):
    browser.login("acme-reviewer1")
    browser.open("/admin/reviews/reviewtask/")
    browser.wait(lambda d: d.find_element(By.ID, "hitl-live").text == "live", "the live queue")
    # The seeded contracts are waiting (the critical one first, highest risk).
    first_row = browser.text("#result_list tbody tr")
    assert "Exclusive supply deal" in first_row and "Critical" in first_row
    browser.driver.execute_script("window.hitlNoReload = true")
    browser.shot("queue on login")

    title = unique("Reseller agreement")
    contract = submit(product, title, HIGH_RISK_TEXT)
    row = browser.wait(lambda d: d.execute_script(
        "return [...document.querySelectorAll('#result_list tbody tr')].map(r => r.innerText)"
        ".find(text => text.includes(arguments[0]))", title), "the new contract's row")
    assert browser.driver.execute_script("return window.hitlNoReload") is True  # the page was not reloaded
    assert "High" in row and "legal" in row.lower()
    browser.shot("new contract appeared live")

    browser.click_link(title)
    browser.wait(lambda d: title in d.find_element(By.CSS_SELECTOR, "h1.hitl-title").text, "the task page")
    assert "HIGH RISK" in browser.text(".hitl-recommendation")
    assert len(browser.driver.find_elements(By.CSS_SELECTOR, "mark.hitl-finding")) >= 3
    browser.shot("task page")

    browser.click_button("Claim this task")
    browser.wait(lambda d: "claimed by acme-reviewer1" in d.find_element(By.CSS_SELECTOR, ".hitl-meta").text,
                 "the claim")
    browser.shot("claimed")
    browser.click_button("Approve")
    browser.wait(lambda d: "Approved:" in d.find_element(By.CSS_SELECTOR, ".messagelist").text, "the confirmation")
    browser.shot("approved back in the queue")
    assert wait_until(lambda: contract_status(product, contract["id"]) == "approved", what="the run to finish",
                      bound=BOUND)


def test_four_eyes_the_first_signer_cannot_sign_off_another_senior_can(browser, product):
    title = unique("Critical supply")
    contract = submit(product, title, CRITICAL_RISK_TEXT)
    legal = task_of(product, contract["id"], "legal")
    browser.login("acme-senior")
    browser.open(f"/admin/reviews/reviewtask/{legal['id']}/change/")
    browser.click_button("Approve")
    browser.wait(lambda d: "Approved:" in d.find_element(By.CSS_SELECTOR, ".messagelist").text, "the legal approval")

    signoff = task_of(product, contract["id"], "signoff")
    browser.open(f"/admin/reviews/reviewtask/{signoff['id']}/change/")
    assert "First signature: acme-senior" in browser.text(".hitl-first-signature")
    browser.find("#hitl-comment").send_keys("signing my own approval")
    browser.click_button("Approve")
    error = browser.wait(lambda d: d.find_element(By.CSS_SELECTOR, ".messagelist .error"), "the refusal")
    assert error.text.startswith("Four eyes:")
    assert len(browser.driver.find_elements(By.CSS_SELECTOR, ".messagelist li")) == 1
    assert browser.find("#hitl-comment").get_attribute("value") == "signing my own approval"
    browser.shot("four eyes refusal")

    browser.login("acme-admin")  # the tenant admin signs off too (signoff_role: senior reviewers and admins)
    browser.open(f"/admin/reviews/reviewtask/{signoff['id']}/change/")
    browser.click_button("Approve")
    browser.wait(lambda d: "Approved:" in d.find_element(By.CSS_SELECTOR, ".messagelist").text, "the sign-off")
    browser.shot("signed off by another")
    assert wait_until(lambda: contract_status(product, contract["id"]) == "approved", what="the run", bound=BOUND)


def test_bulk_approve_confirms_and_skips_critical_tasks(browser, product):
    batch = unique("Bulk")
    plain = [submit(product, f"{batch} plain {i}", HIGH_RISK_TEXT) for i in range(2)]
    critical = submit(product, f"{batch} critical", CRITICAL_RISK_TEXT)
    for contract in (*plain, critical):
        task_of(product, contract["id"], "legal")
    browser.login("acme-reviewer1")
    browser.open(f"/admin/reviews/reviewtask/?show=pending&q={batch.replace(' ', '+')}")
    browser.wait(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#result_list tbody tr")) == 3, "the three tasks")
    browser.find("#action-toggle").click()
    Select(browser.find("select[name=action]")).select_by_value("approve_selected")
    browser.shot("three selected")
    browser.find("button[name=index]").click()

    listing = browser.wait(lambda d: d.find_element(By.ID, "hitl-bulk-list"), "the confirmation page").text
    assert f"{batch} critical" in listing and "skipped: critical risk is never decided in bulk" in listing
    assert listing.count("will be approved") == 2 and "Critical" in listing and "High" in listing
    browser.shot("confirmation page")
    browser.find("#hitl-bulk-confirm").click()
    browser.wait(lambda d: "Approved 2 task(s)" in d.find_element(By.CSS_SELECTOR, ".messagelist").text, "the result")
    browser.shot("bulk done")
    for contract in plain:
        assert wait_until(lambda c=contract: contract_status(product, c["id"]) == "approved", what="a run", bound=BOUND)
    assert [t["status"] for t in tasks_of(product, critical["id"])] == ["pending"]


# --- A tenant admin ----------------------------------------------------------------------------


def test_a_tenant_admin_grants_a_task_by_its_contract_title(browser, product):
    title = unique("Large order")
    contract = submit(product, title, LARGE_PAYMENT_TEXT)
    finance = task_of(product, contract["id"], "finance")
    with product.api("acme-reviewer1") as reviewer:
        assert reviewer.get(f"/api/v1/tenants/acme/reviews/{finance['id']}/").json()["can_resume"] is False

    browser.login("acme-admin")
    browser.open("/admin/reviews/reviewtaskuserpermission/add/")
    Select(browser.find("#id_content_object")).select_by_visible_text(f"{title} — Finance review (risk 0.00)")
    Select(browser.find("#id_user")).select_by_visible_text("acme-reviewer1")
    browser.shot("grant form")
    browser.find("input[name=_save]").click()
    listing = browser.wait(lambda d: d.find_element(By.ID, "result_list"), "the grants list").text
    assert f"{title} — Finance review" in listing and "acme-reviewer1" in listing
    browser.shot("granted")
    with product.api("acme-reviewer1") as reviewer:
        assert reviewer.get(f"/api/v1/tenants/acme/reviews/{finance['id']}/").json()["can_resume"] is True

    # A grant to a viewer is refused with a message saying why.
    browser.open("/admin/reviews/reviewtaskuserpermission/add/")
    Select(browser.find("#id_content_object")).select_by_visible_text(f"{title} — Finance review (risk 0.00)")
    Select(browser.find("#id_user")).select_by_visible_text("acme-viewer")
    browser.find("input[name=_save]").click()
    assert "that role never decides review tasks" in browser.text(".errorlist")
    browser.shot("grant to a viewer refused")
