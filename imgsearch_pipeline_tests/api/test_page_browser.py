"""The search page in a real browser: Debian's headless Chromium, driven by Playwright, over a live uvicorn server.

The server is the real app over real resources (PostgreSQL, S3, OpenSearch) with an ingested catalogue, as in
test_app.py. A missing browser or Playwright fails the tests with a clear message: nothing here skips.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
import uvicorn
from dagster import instance_for_test

from imgsearch_pipeline.api.app import create_app
from imgsearch_pipeline.api.security import ApiSecurity
from imgsearch_pipeline_tests.harness import Pipeline

UNLIMITED = ApiSecurity(requests_per_minute=1_000_000)  # the page's thumbnails in quick succession

try:
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import expect, sync_playwright
except ImportError:  # reported by the `browser` fixture, as a failure
    sync_playwright = None

CHROMIUM = Path("/usr/bin/chromium")
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
               "--disable-component-update", "--disable-sync"]
SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "screenshots" / "search-page.png"
QUERY = "green t shirt with no prints"
GREENS = {"green", "lime", "olive"}  # what "green" means to the parser


@contextlib.contextmanager
def serve(app) -> Iterator[str]:
    """`app` under uvicorn on a free port of 127.0.0.1, in a thread; yields its base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                pytest.fail(f"uvicorn did not start on 127.0.0.1:{port}")
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()


@pytest.fixture(scope="module")
def live(new_settings) -> Iterator[tuple[str, Pipeline]]:
    """The app on a live server over a catalogue ingested once for the module."""
    with instance_for_test() as instance:
        pipeline = Pipeline(new_settings(), instance, n_products=40, seed=3)
        pipeline.run()
        with serve(create_app(lambda: pipeline.res, UNLIMITED)) as url:
            yield url, pipeline


@pytest.fixture(scope="module")
def browser():
    if sync_playwright is None:
        pytest.fail("the Python package `playwright` is missing: pip install -e '.[dev]'", pytrace=False)
    if not (CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK)):
        pytest.fail(f"no browser at {CHROMIUM}: install Debian's chromium with `bash scripts/install_browser.sh`",
                    pytrace=False)
    expect.set_options(timeout=30_000)  # the first searches load the models
    with sync_playwright() as pw:
        try:
            browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, chromium_sandbox=False,
                                         args=LAUNCH_ARGS, timeout=60_000)
        except PlaywrightError as e:
            pytest.fail(f"{CHROMIUM} did not start under Playwright: {e}", pytrace=False)
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    """A fresh page (own context) that fails the test on any uncaught script error."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(20_000)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    yield page
    context.close()
    assert not errors, f"script errors on the page: {errors}"


# Helpers ------------------------------------------------------------------------------------------------


def settle(page) -> None:
    """Wait until the page's latest request has been drawn."""
    expect(page.locator("#results")).to_have_attribute("aria-busy", "false")


def open_page(page, base: str, q: str | None = None) -> None:
    """The page as a link opens it: the whole catalogue, or the results of `?q=`."""
    page.goto(f"{base}/" + (f"?q={quote(q)}" if q is not None else ""))
    settle(page)


def type_query(page, q: str) -> None:
    box = page.get_by_label("search query")
    box.fill(q)
    box.press("Enter")
    settle(page)


def cards(page) -> list[dict]:
    """The cards on screen, by their data attributes (product, image, category, colors, pattern, print)."""
    return page.locator("#grid .card").evaluate_all("cs => cs.map(c => ({...c.dataset}))")


def products(page) -> list[str]:
    return [c["product"] for c in cards(page)]


def api_search(base: str, q: str) -> dict:
    r = httpx.get(f"{base}/search", params={"q": q, "size": 40}, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()


def assert_obeys(card: dict, plan: dict) -> None:
    """A card's analysed attributes satisfy every clause of the plan."""
    values = {"category": {card["category"]}, "color": set(card["colors"].split()), "pattern": {card["pattern"]}}
    for clause in plan["filters"]:
        assert values[clause["field"]] & set(clause["values"]), (card, clause)
    for clause in plan["exclude"]:
        assert not values[clause["field"]] & set(clause["values"]), (card, clause)
    if plan["has_print"] is not None:
        assert card["print"] == str(plan["has_print"]).lower(), card


def assert_images_loaded(page) -> None:
    images = page.locator("#grid .card img")
    for i in range(images.count()):  # lazy images load once near the viewport
        images.nth(i).scroll_into_view_if_needed()
    page.wait_for_function("() => [...document.querySelectorAll('#grid img')].every(i => i.complete)",
                           timeout=30_000)
    widths = images.evaluate_all("is => is.map(i => [i.getAttribute('src'), i.naturalWidth])")
    assert widths and all(w > 0 for _, w in widths), f"images that did not load: {widths}"
    page.evaluate("window.scrollTo(0, 0)")


# Tests --------------------------------------------------------------------------------------------------


def test_query_shows_chips_and_cards_that_obey_the_plan(live, page):
    base, pipeline = live
    open_page(page, base)
    expect(page.locator("#summary")).to_contain_text(f"{len(pipeline.products)} products match")  # all of them
    expect(page.locator("#facets .facet")).to_have_count(3)
    type_query(page, QUERY)
    expect(page.locator('#plan .chip[data-field="category"]')).to_contain_text("t shirt")
    expect(page.locator('#plan .chip[data-field="color"]')).to_contain_text("green")
    expect(page.locator('#plan .chip[data-kind="print"] .chip-text')).to_have_text("no print")
    expect(page).to_have_url(f"{base}/?q=green%20t%20shirt%20with%20no%20prints")

    expected = api_search(base, QUERY)
    assert products(page) == [h["product_id"] for h in expected["hits"]] and expected["hits"]
    for card in cards(page):
        assert card["category"] == "t-shirt" and set(card["colors"].split()) & GREENS and card["print"] == "false"
        assert_obeys(card, expected["plan"])
    expect(page.locator("#summary")).to_contain_text(f"{expected['total_products']} products match")
    assert_images_loaded(page)

    # the sidebar counts products of the filtered set and marks what the query already asks for
    expect(page.locator('#facets .facet-value[data-field="category"]')).to_have_count(1)
    active = page.locator('#facets .facet-value[data-field="color"][data-value="green"]')
    expect(active).to_have_attribute("aria-pressed", "true")
    expect(active.locator(".count")).to_have_text(str(expected["total_products"]))
    expect(page.locator("#banner")).to_be_hidden()


def test_removing_the_colour_chip_searches_again_without_it(live, page):
    base, _ = live
    open_page(page, base, QUERY)
    green = set(products(page))
    page.get_by_role("button", name="remove colour: green").click()
    settle(page)

    expect(page.get_by_label("search query")).to_have_value("t shirt with no prints")
    expect(page).to_have_url(f"{base}/?q=t%20shirt%20with%20no%20prints")
    expect(page.locator('#plan .chip[data-field="color"]')).to_have_count(0)
    expect(page.locator('#plan .chip[data-kind="print"]')).to_be_visible()
    wider = cards(page)
    assert green < {c["product"] for c in wider}, "dropping the colour must widen the results"
    assert any(not set(c["colors"].split()) & GREENS for c in wider)
    for card in wider:
        assert card["category"] == "t-shirt" and card["print"] == "false"

    page.get_by_role("button", name="remove no print").click()  # the print words go too
    settle(page)
    expect(page.get_by_label("search query")).to_have_value("t shirt")
    expect(page.locator('#plan .chip[data-kind="print"]')).to_have_count(0)


def test_clicking_a_facet_adds_its_words_to_the_query(live, page):
    base, _ = live
    open_page(page, base, "t-shirt")
    before = set(products(page))
    facet = page.locator('#facets .facet-value[data-field="color"][aria-pressed="false"]').first
    value = facet.get_attribute("data-value")
    count = int(facet.locator(".count").inner_text())
    facet.click()
    settle(page)

    expect(page.get_by_label("search query")).to_have_value(f"{value} t-shirt")
    expect(page.locator('#plan .chip[data-field="color"]')).to_contain_text(value)
    plan = httpx.get(f"{base}/parse", params={"q": f"{value} t-shirt"}).json()
    narrowed = cards(page)
    assert narrowed and {c["product"] for c in narrowed} <= before and len(narrowed) >= count
    for card in narrowed:
        assert_obeys(card, plan)
    pressed = page.locator(f'#facets .facet-value[data-field="color"][data-value="{value}"]')
    expect(pressed).to_have_attribute("aria-pressed", "true")

    pressed.click()  # an active value is a toggle: its words leave the query again
    settle(page)
    expect(page.get_by_label("search query")).to_have_value("t-shirt")
    assert set(products(page)) == before


def test_more_like_this_shows_look_alikes_without_the_source_product(live, page):
    base, _ = live
    open_page(page, base, QUERY)
    results = products(page)
    first = page.locator("#grid .card").first
    source, name = first.get_attribute("data-product"), first.locator(".name").inner_text()
    first.get_by_role("button", name=f"more like {name}").click()
    settle(page)

    banner = page.locator("#banner")
    expect(banner).to_be_visible()
    expect(banner).to_contain_text(f"Products that look like {name}")
    look_alikes = cards(page)
    assert look_alikes, "more like this found nothing"
    assert source not in {c["product"] for c in look_alikes}
    plan = api_search(base, QUERY)["plan"]
    for card in look_alikes:  # under the query's filters still
        assert_obeys(card, plan)
    assert_images_loaded(page)

    page.get_by_role("button", name="Back to results").click()
    settle(page)
    expect(banner).to_be_hidden()
    assert products(page) == results


def test_search_by_uploaded_photo(live, page, tmp_path):
    base, pipeline = live
    open_page(page, base, QUERY)
    hit = api_search(base, QUERY)["hits"][0]
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(pipeline.res["images"].read(hit["s3_key"]))
    page.locator("#photo").set_input_files(str(photo))
    settle(page)

    expect(page.locator("#banner")).to_contain_text("Products that look like your photo")
    found = cards(page)
    assert found and found[0]["product"] == hit["product_id"], "the catalogue's own photo should match itself first"
    plan = api_search(base, QUERY)["plan"]
    for card in found:
        assert_obeys(card, plan)

    not_an_image = tmp_path / "notes.jpg"
    not_an_image.write_bytes(b"%PDF-1.4 not a photo")
    page.locator("#photo").set_input_files(str(not_an_image))
    settle(page)
    expect(page.locator("#message.error")).to_contain_text("not a usable image")
    expect(page.locator("#grid .card")).to_have_count(0)


def test_a_query_that_matches_nothing_says_so(live, page):
    base, _ = live
    assert api_search(base, "camouflage dress")["total_products"] == 0  # the catalogue has none
    open_page(page, base, "camouflage dress")
    expect(page.locator("#message")).to_contain_text("No products match this search")
    expect(page.locator("#message")).to_contain_text("Remove a chip")
    expect(page.locator("#grid .card")).to_have_count(0)
    expect(page.locator("#summary")).to_contain_text("0 products match")


def test_a_10000_character_query_shows_a_clear_error(live, page):
    base, _ = live
    long_query = ("green t shirt " * 800)[:10_000]
    open_page(page, base, QUERY)
    type_query(page, long_query)
    error = page.locator("#message.error")
    expect(error).to_be_visible()
    expect(error).to_contain_text("The query is too long: 10000 characters, the limit is 512")
    expect(error).to_have_attribute("role", "alert")
    expect(page.locator("#grid .card")).to_have_count(0)

    type_query(page, QUERY)  # the page still works
    expect(error).to_be_hidden()
    assert products(page) == [h["product_id"] for h in api_search(base, QUERY)["hits"]]


def test_unreachable_search_index_says_search_is_temporarily_unavailable(new_settings, page):
    from imgsearch_pipeline.definitions import build_resources
    from imgsearch_pipeline.stack.process import free_port

    settings = new_settings().model_copy(update={"opensearch_url": f"http://127.0.0.1:{free_port()}"})
    with serve(create_app(lambda: build_resources(settings), UNLIMITED)) as base:
        open_page(page, base, QUERY)
        expect(page.locator("#message.error")).to_contain_text("Search is temporarily unavailable")
        expect(page.locator("#grid .card")).to_have_count(0)


def test_screenshot_of_the_results_page(live, page):
    base, _ = live
    open_page(page, base, "shirts or t shirts without prints")
    expect(page.locator("#plan .chip")).not_to_have_count(0)
    expect(page.locator("#facets .facet")).to_have_count(3)
    assert len(cards(page)) >= 4
    assert_images_loaded(page)
    page.get_by_label("search query").blur()
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOT))
    assert SCREENSHOT.stat().st_size > 20_000
