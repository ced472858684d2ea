// dealport dashboard: refreshes the live values of the open page (states, bytes
// received, the download bar, counts) from /ui/live without reloading it. Values are
// set with textContent only, never as HTML.
"use strict";
(function () {
  const every = Number(document.body.dataset.refreshMs || 2000);
  const rows = () => Array.from(document.querySelectorAll("[data-uuid]"));
  function set(el, text) {
    if (el && el.textContent !== text) el.textContent = text;
  }
  async function poll() {
    const uuids = rows().map((r) => r.dataset.uuid);
    const url = "/ui/live?u=" + encodeURIComponent(uuids.join(","));
    let answer;
    try {
      const r = await fetch(url, { credentials: "same-origin", cache: "no-store" });
      if (r.status === 401) { window.location.assign("/ui/login"); return; }
      if (!r.ok) return;
      answer = await r.json();
    } catch (e) {
      return;
    }
    for (const d of answer.deals || []) {
      for (const row of rows().filter((r) => r.dataset.uuid === d.uuid)) {
        const state = row.querySelector(".live-state");
        set(state, d.state);
        if (state) state.classList.toggle("failed", !!d.failed);
        set(row.querySelector(".live-bytes"), d.bytes_text);
      }
      if (document.getElementById("deal")) {
        set(document.getElementById("bytes"), d.bytes_text);
        set(document.getElementById("sealing"), d.sealing_status || "");
        const bar = document.getElementById("progress-bar");
        const box = document.getElementById("progress");
        if (bar && d.per_mille !== null) bar.value = d.per_mille;
        if (box) box.hidden = d.per_mille === null;
      }
    }
    for (const el of document.querySelectorAll("[data-count]")) {
      const n = (answer.counts || {})[el.dataset.count] || 0;
      set(el, String(n));
    }
    document.body.dataset.lastRefresh = String(Date.now());
  }
  setInterval(poll, every);
  poll();
})();
