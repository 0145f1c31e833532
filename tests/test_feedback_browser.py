"""The feedback pages in a real headless browser (Debian's chromium, driven through chromium-driver by Selenium)
against the real server on loopback: rank by dragging, chat with a thumbs down and a ranking in context, write a
demonstration; the stored rows say exactly what was done. Skipped, with the reason, where no browser is installed
(`.ci/run` installs it)."""

from __future__ import annotations

import json
import shutil

import pytest

from corpusforge.feedback.store import Store
from feedback_servers import serve, tiny_run

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(not (CHROMIUM and DRIVER), reason="no chromium and chromedriver installed (Debian: "
                                                                 "apt-get install chromium chromium-driver)")
HOSTILE = "<script>window.pwned=1</script><b>bold?</b> What is a cat?"


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    root = tmp_path_factory.mktemp("browser")
    run = tiny_run(root / "run")
    prompts = root / "prompts.txt"
    prompts.write_text(f"{HOSTILE}\nName a large river.\nWhy is the sky blue?\n")
    with serve(run, prompts, str(root / "feedback.sqlite"), "--max-new-tokens", "10") as server:
        server.db, server.run = root / "feedback.sqlite", run
        yield server


@pytest.fixture(scope="module")
def browser():
    pytest.importorskip("selenium", reason="selenium is not installed (pip install -e '.[test]')")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1200,1600"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path=DRIVER), options=options)
    driver.implicitly_wait(0)
    yield driver
    driver.quit()


def wait(driver, condition, timeout: float = 60):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout).until(lambda d: condition(d))


def order(driver, list_id: str) -> list[str]:
    return [li.get_attribute("data-id") for li in driver.find_elements("css selector", f"#{list_id} li.answer")]


def drag(driver, item, target) -> None:
    """Press on `item`, move over the upper part of `target`, release: what a labeler's mouse does."""
    from selenium.webdriver.common.action_chains import ActionChains

    (ActionChains(driver).click_and_hold(item).move_by_offset(0, 5)
     .move_to_element_with_offset(target, 0, -target.size["height"] // 4).release().perform())


def test_rank_by_drag_and_keyboard_with_a_tie_and_a_flag_then_the_next_prompt(app, browser):
    from selenium.webdriver.common.keys import Keys

    browser.get(f"{app.url}/rank?labeler=alice")
    wait(browser, lambda d: len(order(d, "answers")) == 4)
    offer_id = browser.find_element("tag name", "body").get_attribute("data-offer")
    shown = order(browser, "answers")
    # the prompt is shown as text: its markup is neither run nor rendered
    context = browser.find_element("id", "context")
    assert HOSTILE in context.text and not context.find_elements("tag name", "b")
    assert browser.execute_script("return window.pwned === undefined")

    items = browser.find_elements("css selector", "#answers li.answer")
    drag(browser, items[3], items[0])  # the last answer to the top
    wait(browser, lambda d: order(d, "answers")[0] == shown[3])
    items = browser.find_elements("css selector", "#answers li.answer")
    items[1].send_keys(Keys.ARROW_DOWN)  # and the (now) second one down a place with the keyboard
    final = order(browser, "answers")
    assert final == [shown[3], shown[1], shown[0], shown[2]]
    items = browser.find_elements("css selector", "#answers li.answer")
    items[3].find_element("css selector", "input.tie").click()  # the last two are equally good
    items[1].find_element("css selector", "input.unsafe").click()
    browser.find_element("id", "submit").click()
    wait(browser, lambda d: d.find_element("tag name", "body").get_attribute("data-offer") != offer_id
         and len(order(d, "answers")) == 4)
    assert "Name a large river." in browser.find_element("id", "context").text  # the next prompt

    (row,) = [r for r in Store(app.db).rows("comparison") if r["labeler"] == "alice"]
    rank_of = dict(zip(final, [0, 1, 2, 2]))
    assert row["ranking"] == [rank_of[i] for i in shown]
    assert row["unsafe"] == [i == final[1] for i in shown] and not any(row["unusable"])
    assert row["prompt"] == HOSTILE and row["kind"] == "rank" and len(row["answers"]) == 4


def test_chat_stream_thumbs_down_then_k_replies_ranked_in_context_and_continue(app, browser):
    browser.get(f"{app.url}/chat?labeler=bob")
    browser.find_element("id", "message").send_keys("Tell me about rivers.")
    browser.find_element("id", "send").click()
    wait(browser, lambda d: d.find_elements("css selector", ".turn.assistant .thumbs"))
    shown_reply = browser.find_element("css selector", ".turn.assistant .text").get_attribute("textContent")
    browser.find_element("css selector", ".thumb.down").click()
    wait(browser, lambda d: "Thumbs down stored" in d.find_element("id", "status").text)

    browser.find_element("id", "ask-k").click()
    wait(browser, lambda d: len(order(d, "candidate-list")) == 4)
    shown = order(browser, "candidate-list")
    items = browser.find_elements("css selector", "#candidate-list li.answer")
    drag(browser, items[2], items[0])
    wait(browser, lambda d: order(d, "candidate-list")[0] == shown[2])
    final = order(browser, "candidate-list")
    best_text = browser.find_element("css selector", "#candidate-list li.answer .text").get_attribute("textContent")
    browser.find_element("id", "rank-continue").click()
    wait(browser, lambda d: not d.find_element("id", "candidates").is_displayed())
    turns = browser.find_elements("css selector", "#conversation .turn .text")
    assert [t.get_attribute("textContent") for t in turns] == ["Tell me about rivers.", best_text]

    (rating,) = [r for r in Store(app.db).rows("rating") if r["labeler"] == "bob"]
    assert rating["rating"] == -1 and rating["answer"] == shown_reply
    assert rating["context"] == [{"role": "user", "content": "Tell me about rivers."}]
    assert json.loads(rating["sampling"])["temperature"] == 1.0
    (row,) = [r for r in Store(app.db).rows("comparison") if r["labeler"] == "bob"]
    assert row["kind"] == "chat" and row["context"] == rating["context"]
    assert row["ranking"] == [final.index(i) for i in shown]
    assert row["answers"][shown.index(final[0])] == best_text


def test_written_demonstrations_are_stored_as_conversations_and_train_with_sft(app, browser, tmp_path):
    browser.get(f"{app.url}/write?labeler=carol")
    replies = ["A cat is a small, furry animal.", "The Nile is a large river."]
    for reply in replies:
        wait(browser, lambda d: d.find_element("tag name", "body").get_attribute("data-offer")
             and not d.find_element("id", "submit").get_attribute("disabled"))
        offer_id = browser.find_element("tag name", "body").get_attribute("data-offer")
        browser.find_element("id", "reply").send_keys(reply)
        browser.find_element("id", "submit").click()
        wait(browser, lambda d: d.find_element("tag name", "body").get_attribute("data-offer") != offer_id)
    demos = [r for r in Store(app.db).rows("demonstration") if r["labeler"] == "carol"]
    assert [d["messages"] for d in demos] == [
        [{"role": "user", "content": HOSTILE}, {"role": "assistant", "content": replies[0]}],
        [{"role": "user", "content": "Name a large river."}, {"role": "assistant", "content": replies[1]}]]
    # the loop from people to the model closes: `train sft --data feedback.sqlite` trains on them
    sft = pytest.importorskip("corpusforge.trainer.sft", reason="`train sft` (issue 11) is not on this branch yet")
    config = sft.make_config(tmp_path / "sft", {"base": str(app.run), "data": [str(app.db)], "max_steps": 2,
                                               "warmup_steps": 1, "device": "cpu", "peak_tflops": 1.0})
    summary = sft.train(config, tmp_path / "sft")
    assert summary["step"] == 2 and summary["data"]["conversations"] == 2
