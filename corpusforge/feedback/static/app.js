// corpusforge feedback pages: Rank, Chat, Write. Model output is only ever put in the page as text (textContent).
"use strict";
(() => {
  const $ = (selector) => document.querySelector(selector);

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  // A fresh idempotency key per submission; a retry of the same submission reuses it, so it is stored once.
  function newKey() {
    const bytes = new Uint8Array(16);
    crypto.getRandomValues(bytes);
    return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  function setStatus(message, bad) {
    const node = $("#status");
    node.textContent = message;
    node.className = bad ? "bad" : "ok";
  }

  function labeler() {
    const name = $("#labeler").value.trim();
    if (!name) throw new Error("enter your name as labeler first");
    localStorage.setItem("labeler", name);
    return name;
  }

  async function api(path, data) {
    const response = await fetch(path, {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json" }, body: JSON.stringify(data),
    });
    const out = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error(out.error || `HTTP ${response.status}`);
    return out;
  }

  function showConversation(target, messages) {
    target.replaceChildren(...messages.map((m) => turn(m.role, m.content)));
  }

  function turn(role, content) {
    const node = el("div", `turn ${role}`);
    node.append(el("span", "role", role), el("div", "text", content));
    return node;
  }

  // ------------------------------------------------------------------ the ranking list (Rank page and Chat)
  function checkbox(className, label) {
    const wrap = el("label", `flag ${className}-label`);
    const box = el("input", className);
    box.type = "checkbox";
    wrap.append(box, document.createTextNode(` ${label}`));
    return wrap;
  }

  function fillRanking(list, offer) {
    list.replaceChildren(...offer.answers.map((answer) => {
      const item = el("li", "answer");
      item.tabIndex = 0;
      item.dataset.id = answer.id;
      const up = el("button", "up", "\u2191");
      const down = el("button", "down", "\u2193");
      up.type = down.type = "button";
      up.title = "move up";
      down.title = "move down";
      up.addEventListener("click", () => move(item, -1));
      down.addEventListener("click", () => move(item, 1));
      const controls = el("div", "controls");
      controls.append(up, down, checkbox("tie", "Tie with above"), checkbox("unusable", "Unusable"),
        checkbox("unsafe", "Unsafe"));
      item.append(el("span", "handle", "\u2817"), el("div", "text", answer.text), controls);
      item.addEventListener("keydown", (event) => {
        if (event.target !== item) return;
        if (event.key === "ArrowUp") { move(item, -1); event.preventDefault(); }
        if (event.key === "ArrowDown") { move(item, 1); event.preventDefault(); }
      });
      return item;
    }));
    enableDrag(list);
  }

  function move(item, step) {
    const other = step < 0 ? item.previousElementSibling : item.nextElementSibling;
    if (!other) return;
    if (step < 0) other.before(item); else other.after(item);
    item.focus();
  }

  // Drag with pointer events (mouse, pen and touch alike): the dragged answer goes before the first answer whose
  // middle is below the pointer.
  function enableDrag(list) {
    if (list.dataset.drag) return;
    list.dataset.drag = "1";
    let dragged = null;
    list.addEventListener("pointerdown", (event) => {
      const item = event.target.closest("li.answer");
      if (!item || event.target.closest("button, input, label")) return;  // the controls keep their clicks
      dragged = item;
      item.classList.add("dragging");
      item.setPointerCapture(event.pointerId);
      event.preventDefault();
    });
    list.addEventListener("pointermove", (event) => {
      if (!dragged) return;
      const below = [...list.children].find((item) => {
        if (item === dragged) return false;
        const box = item.getBoundingClientRect();
        return event.clientY < box.top + box.height / 2;
      });
      if (below) { if (below !== dragged.nextElementSibling) below.before(dragged); } else list.append(dragged);
    });
    const drop = () => {
      if (!dragged) return;
      dragged.classList.remove("dragging");
      dragged.focus();
      dragged = null;
    };
    list.addEventListener("pointerup", drop);
    list.addEventListener("pointercancel", drop);
  }

  function rankingOf(list) {
    const groups = [];
    const flags = {};
    for (const item of list.children) {
      const tie = item.querySelector("input.tie").checked;
      if (tie && groups.length) groups[groups.length - 1].push(item.dataset.id); else groups.push([item.dataset.id]);
      const set = ["unusable", "unsafe"].filter((f) => item.querySelector(`input.${f}`).checked);
      if (set.length) flags[item.dataset.id] = set;
    }
    return { ranking: groups, flags };
  }

  // A submission: one key for all its tries; the button is off while it is in flight.
  async function submitOnce(button, path, data) {
    button.disabled = true;
    try {
      return await api(path, { ...data, idempotency_key: data.idempotency_key || newKey() });
    } finally {
      button.disabled = false;
    }
  }

  // ------------------------------------------------------------------------------------------------ pages
  async function rankPage() {
    let offer = null;
    let key = null;
    const load = async () => {
      $("#submit").disabled = true;
      setStatus("Sampling answers\u2026");
      offer = await api("/api/rank/next", { labeler: labeler() });
      key = newKey();
      document.body.dataset.offer = offer.offer_id;
      showConversation($("#context"), offer.context);
      fillRanking($("#answers"), offer);
      $("#submit").disabled = false;
      setStatus(`${offer.answers.length} answers: put them in order, best first.`);
    };
    $("#submit").addEventListener("click", () => guard(async () => {
      await submitOnce($("#submit"), "/api/rank/submit",
        { offer_id: offer.offer_id, labeler: labeler(), idempotency_key: key, ...rankingOf($("#answers")) });
      setStatus("Stored. Next prompt\u2026");
      await load();
    }));
    await load();
  }

  async function chatPage() {
    const messages = [];
    const view = $("#conversation");
    let candidates = null;

    function thumbs(offer) {
      const bar = el("div", "thumbs");
      const key = newKey();
      for (const [label, value, name] of [["\ud83d\udc4d", 1, "up"], ["\ud83d\udc4e", -1, "down"]]) {
        const button = el("button", `thumb ${name}`, label);
        button.type = "button";
        button.title = `thumbs ${name}`;
        button.addEventListener("click", () => guard(async () => {
          await api("/api/chat/rate", { offer_id: offer.offer_id, rating: value, labeler: labeler(), idempotency_key: key });
          bar.querySelectorAll("button").forEach((b) => { b.disabled = true; });
          button.classList.add("chosen");
          setStatus(`Thumbs ${name} stored.`);
        }));
        bar.append(button);
      }
      return bar;
    }

    function context() {  // the conversation up to and with the last user turn
      const last = messages.map((m) => m.role).lastIndexOf("user");
      return messages.slice(0, last + 1);
    }

    async function reply() {
      const node = turn("assistant", "");
      node.classList.add("streaming");
      view.append(node);
      const text = node.querySelector(".text");
      const response = await fetch("/api/chat/reply", {
        method: "POST", credentials: "same-origin", headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ labeler: labeler(), messages }),
      });
      if (!response.ok) {
        node.remove();
        const out = await response.json().catch(() => ({}));
        throw new Error(out.error || `HTTP ${response.status}`);
      }
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      let buffer = "";
      let offer = null;
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += decoder.decode(value, { stream: true });
        let end;
        while ((end = buffer.indexOf("\n")) >= 0) {
          const line = JSON.parse(buffer.slice(0, end));
          buffer = buffer.slice(end + 1);
          if (line.text !== undefined) text.textContent += line.text;
          if (line.offer) offer = line.offer;
        }
      }
      node.classList.remove("streaming");
      if (!offer) throw new Error("the reply stopped before it was complete");
      text.textContent = offer.answers[0].text;
      node.append(thumbs(offer));
      messages.push({ role: "assistant", content: offer.answers[0].text });
    }

    $("#composer").addEventListener("submit", (event) => {
      event.preventDefault();
      guard(async () => {
        const content = $("#message").value.trim();
        if (!content) return;
        labeler();
        $("#send").disabled = true;
        try {
          messages.push({ role: "user", content });
          view.append(turn("user", content));
          $("#message").value = "";
          setStatus("The model is replying\u2026");
          await reply();
          setStatus("Rate the reply, write on, or ask for several replies to rank.");
          $("#ask-k").disabled = false;
        } finally {
          $("#send").disabled = false;
        }
      });
    });

    $("#ask-k").addEventListener("click", () => guard(async () => {
      setStatus("Sampling replies\u2026");
      candidates = await api("/api/chat/candidates", { labeler: labeler(), messages: context() });
      candidates.key = newKey();
      document.body.dataset.offer = candidates.offer_id;
      fillRanking($("#candidate-list"), candidates);
      $("#candidates").hidden = false;
      setStatus(`${candidates.answers.length} replies: rank them, best first.`);
    }));

    $("#rank-continue").addEventListener("click", () => guard(async () => {
      const ranked = rankingOf($("#candidate-list"));
      await submitOnce($("#rank-continue"), "/api/rank/submit",
        { offer_id: candidates.offer_id, labeler: labeler(), idempotency_key: candidates.key, ...ranked });
      const best = candidates.answers.find((a) => a.id === ranked.ranking[0][0]);
      messages.splice(context().length);  // the best candidate replaces the reply that was there
      messages.push({ role: "assistant", content: best.text });
      showConversation(view, messages);
      $("#candidates").hidden = true;
      candidates = null;
      setStatus("Ranking stored; the conversation goes on with the best reply.");
    }));
  }

  async function writePage() {
    let offer = null;
    let key = null;
    const load = async () => {
      $("#submit").disabled = true;
      offer = await api("/api/write/next", { labeler: labeler() });
      key = newKey();
      document.body.dataset.offer = offer.offer_id;
      showConversation($("#context"), offer.context);
      $("#reply").value = "";
      $("#submit").disabled = false;
      setStatus("Write the reply the model should give.");
    };
    $("#submit").addEventListener("click", () => guard(async () => {
      await submitOnce($("#submit"), "/api/write/submit",
        { offer_id: offer.offer_id, reply: $("#reply").value, labeler: labeler(), idempotency_key: key });
      setStatus("Stored. Next prompt\u2026");
      await load();
    }));
    await load();
  }

  async function guard(action) {
    try {
      await action();
    } catch (err) {
      setStatus(err.message, true);
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    const input = $("#labeler");
    input.value = new URLSearchParams(location.search).get("labeler") || localStorage.getItem("labeler") || "";
    const start = { rank: rankPage, chat: chatPage, write: writePage }[document.body.dataset.page];
    const go = () => guard(start);
    if (input.value.trim() || document.body.dataset.page === "chat") go();
    else {
      setStatus("Enter your name as labeler to start.");
      input.addEventListener("change", go, { once: true });
    }
  });
})();
