"""The page of ``gidx serve`` in a real headless Chromium (Playwright driving the system's
browser: Debian's ``chromium`` package, which .ci/run installs; Playwright's own browser
download is not used). Skipped, with the reason, only when no Chromium can be found."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from playwright.sync_api import expect, sync_playwright

import gidx
from conftest import YEAST_BEDS, _copy, record_name

TRANSCRIPTS = YEAST_BEDS / "winston_annotations" / "Scer_transcripts_w_verifiedORFs-nonoverlapping.bed.gz"
SSA4 = YEAST_BEDS / "winston_annotations" / "SSA4.bed"
TOKEN = "page-token"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def find_chromium() -> str | None:
    """$GIDX_CHROMIUM, else a Chromium or Chrome on the PATH or in /usr/bin."""
    candidates = [os.environ.get("GIDX_CHROMIUM"), "/usr/bin/chromium", "/usr/bin/chromium-browser"]
    candidates += [shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")]
    for c in candidates:
        if c and Path(c).is_file() and os.access(c, os.X_OK):
            return c
    return None


@pytest.fixture(scope="module")
def browser():
    exe = find_chromium()
    if exe is None:
        pytest.skip("no Chromium found (looked at $GIDX_CHROMIUM, /usr/bin/chromium, chromium, chromium-browser, "
                    "google-chrome on the PATH): install Debian's chromium package (apt-get install chromium)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1100, "height": 900})
    pg = context.new_page()
    yield pg
    context.close()


@pytest.fixture(scope="module")
def tokened(yeast_index, tmp_path_factory, serve_index):
    return serve_index(_copy(yeast_index, tmp_path_factory.mktemp("page-token") / "idx"), token=TOKEN)


def table_rows(page) -> list[list[str]]:
    return page.locator("#results-table tbody tr").evaluate_all(
        "rows => rows.map(r => Array.from(r.cells).map(c => c.textContent.trim()))")


def test_upload_rank_and_follow_stored_query(page, yeast_served):
    page.goto(yeast_served.base + "/")
    expect(page.locator("#status")).to_contain_text("records")
    page.set_input_files("#file", str(TRANSCRIPTS))
    expect(page.locator("#file-name")).to_contain_text(TRANSCRIPTS.name)
    page.fill("#k", "5")
    page.click("#submit")
    expect(page.locator("#results-table tbody tr")).to_have_count(5)
    rows = table_rows(page)

    # the same answer as the API and as Index.query in-process
    status, api, _ = yeast_served.post_file("/query?k=5", TRANSCRIPTS.name, TRANSCRIPTS.read_bytes())
    assert status == 200
    local = gidx.Index.open(yeast_served.index).query(TRANSCRIPTS, k=5, save=False).to_pylist()
    assert [r[1] for r in rows] == [r["record"] for r in api["results"]] == [r["record"] for r in local]
    top = rows[0]
    assert top[0] == "1" and top[1] == record_name(TRANSCRIPTS, YEAST_BEDS)
    assert top[2] == f"{local[0]['exact_score']:.4f}" == "1.0000"
    assert top[4] == f"{local[0]['n_intervals']:,}"
    for row, want in zip(rows, local):
        assert row[2] == f"{want['exact_score']:.4f}" and row[3] == f"{want['score']:.4f}"

    # the stored query: the link opens it on the page ...
    link = page.locator("#query-link")
    href = link.get_attribute("href")
    qid = int(href.rsplit("/", 1)[1])
    assert href == f"/queries/{qid}" and qid != api["query_id"]
    link.click()
    expect(page.locator("#detail")).to_be_visible()
    stored = json.loads(page.locator("#detail-json").text_content())
    assert stored["query"]["id"] == qid and stored["query"]["name"] == TRANSCRIPTS.name
    assert [r["record"] for r in stored["results"]] == [r[1] for r in rows]
    # ... and is a plain URL too
    page.goto(yeast_served.base + href)
    body = json.loads(page.locator("body").inner_text())
    assert body["query"]["id"] == qid and body["results"][0]["record"] == top[1]


def test_bad_file_shows_its_one_line_error(page, yeast_served, tmp_path):
    bad = tmp_path / "peaks.bed"
    bad.write_text("chrI\t100\t200\nchrI\t300\tx\n")
    page.goto(yeast_served.base + "/")
    page.set_input_files("#file", str(bad))
    page.click("#submit")
    error = page.locator("#error")
    expect(error).to_be_visible()
    assert error.text_content().startswith("peaks.bed:2: ")
    assert "/tmp" not in error.text_content() and "\n" not in error.text_content()
    assert page.locator("#results").is_hidden()


def test_drop_a_file_vector_only(page, yeast_served):
    page.goto(yeast_served.base + "/")
    page.evaluate("""text => {
        const dt = new DataTransfer();
        dt.items.add(new File([text], "dropped.bed"));
        document.getElementById("drop").dispatchEvent(new DragEvent("drop", {dataTransfer: dt, bubbles: true}));
    }""", SSA4.read_text())
    expect(page.locator("#file-name")).to_contain_text("dropped.bed")
    page.check("input[name=mode][value=vector]")
    page.fill("#k", "3")
    page.click("#submit")
    expect(page.locator("#results-table tbody tr")).to_have_count(3)
    rows = table_rows(page)
    assert rows[0][1] == record_name(SSA4, YEAST_BEDS) and rows[0][2] == "–"  # no exact S in vector mode
    expect(page.locator("#summary")).to_contain_text("vector")


def test_page_asks_for_the_token(page, tokened):
    page.goto(tokened.base + "/")
    expect(page.locator("#token-box")).to_be_visible()
    page.set_input_files("#file", str(SSA4))
    page.click("#submit")
    expect(page.locator("#error")).to_contain_text("token")
    page.fill("#token", TOKEN)
    page.click("#token-box button")
    expect(page.locator("#token-box")).to_be_hidden()
    expect(page.locator("#status")).to_contain_text("records")
    page.fill("#k", "4")
    page.click("#submit")
    expect(page.locator("#results-table tbody tr")).to_have_count(4)
    assert table_rows(page)[0][1] == record_name(SSA4, YEAST_BEDS)
    page.locator("#query-link").click()  # fetched with the token, shown on the page
    expect(page.locator("#detail")).to_be_visible()
    assert json.loads(page.locator("#detail-json").text_content())["query"]["name"] == "SSA4.bed"
