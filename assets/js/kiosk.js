// Kiosk behaviour that htmx does not cover: panel rotation, touch to stay, the
// on-screen keypad, the connection status, resuming the event stream where it
// left off, and reloading after a deployment. Data is never rendered here: the
// server renders every fragment and htmx swaps it in.
(function () {
  "use strict";

  var root = document.querySelector("[data-kiosk]");
  if (!root) { return; }
  document.documentElement.classList.add("js");

  var meta = document.querySelector('meta[name="yizheng-version"]');
  var version = meta ? meta.getAttribute("content") : null;
  var idleMs = (Number(root.dataset.idleSeconds) || 120) * 1000;

  function pad(n) { return (n < 10 ? "0" : "") + n; }
  function hhmm(d) { return pad(d.getHours()) + ":" + pad(d.getMinutes()); }

  // --- connection status: "数据更新于 HH:MM" is the last moment we know the data was current.
  var lastGood = new Date();
  var lost = false;
  var stamps = document.querySelectorAll(".updated-at");

  function showStamp() {
    for (var i = 0; i < stamps.length; i++) {
      stamps[i].textContent = hhmm(lastGood);
      stamps[i].setAttribute("datetime", lastGood.toISOString());
    }
  }
  function setConn(state) {
    root.dataset.conn = state;
    document.body.classList.toggle("is-stale", state === "lost");
  }

  // --- deployment: fragments carry the version; a different one means reload, but only
  // once the new page is actually there (a kiosk must never end up on an error page).
  var reloading = false;
  function checkVersion(v) {
    if (!v || !version || v === version || reloading) { return; }
    reloading = true;
    fetch(window.location.href, { cache: "no-store" }).then(function (r) {
      if (r.ok) { window.location.reload(); } else { reloading = false; }
    }, function () { reloading = false; });
  }

  function refreshAll() {
    var parts = root.querySelectorAll("[data-part]");
    for (var i = 0; i < parts.length; i++) { htmx.trigger(parts[i], "kiosk:refresh"); }
  }

  // --- the event stream. The browser's own EventSource retries send Last-Event-ID; when
  // htmx-ext-sse gives up on a closed source it builds a new one from the sse-connect
  // URL, so the URL always carries the last id seen.
  var streamEl = root.hasAttribute("sse-connect") ? root : null;
  var lastId = root.dataset.lastEventId || "";

  function rememberId(id) {
    if (!id || !streamEl) { return; }
    lastId = id;
    root.dataset.lastEventId = id;
    var url = streamEl.getAttribute("sse-connect").replace(/([?&]last_event_id=)[^&]*/, "$1" + id);
    streamEl.setAttribute("sse-connect", url);
  }

  function watch(source) {
    if (source.yizhengWatched) { return; }
    source.yizhengWatched = true;
    ["case", "stats", "notice", "reset"].forEach(function (kind) {
      source.addEventListener(kind, function (ev) {
        rememberId(ev.lastEventId);
        lastGood = new Date();
        showStamp();
        if (kind === "reset") { refreshAll(); }
      });
    });
  }

  if (streamEl && window.htmx) {
    document.body.addEventListener("htmx:sseOpen", function (ev) {
      watch(ev.detail.source);
      var wasLost = lost;
      lost = false;
      lastGood = new Date();
      showStamp();
      setConn("live");
      // The replay brings what was missed; a refresh also covers a reset or a new database.
      if (wasLost) { refreshAll(); }
    });
    document.body.addEventListener("htmx:sseError", function () {
      if (!lost) {
        lost = true;
        showStamp();
      }
      setConn("lost");
    });
    document.body.addEventListener("htmx:afterRequest", function (ev) {
      var xhr = ev.detail.xhr;
      if (!xhr || !ev.detail.successful) { return; }
      checkVersion(xhr.getResponseHeader("X-Yizheng-Version"));
      if (!lost) { lastGood = new Date(); showStamp(); }
    });
    // While the stream is open the data is current: keep the time moving.
    setInterval(function () {
      if (!lost && root.dataset.conn === "live") { lastGood = new Date(); showStamp(); }
    }, 10000);
  }

  // --- panels: rotate on a steady beat; a touch keeps the chosen panel.
  var panels = Array.prototype.slice.call(root.querySelectorAll("[data-panel]"));
  var tabs = Array.prototype.slice.call(root.querySelectorAll("[data-show]"));
  var rotating = panels.filter(function (p) { return p.dataset.rotate !== "no"; });
  var rotateMs = (Number(root.dataset.rotateSeconds) || 15) * 1000;
  var current = rotating.length ? rotating[0].dataset.panel : null;
  var pinned = false;
  var rotateTimer = null;
  var idleTimer = null;

  function show(name) {
    current = name;
    panels.forEach(function (p) { p.classList.toggle("is-active", p.dataset.panel === name); });
    tabs.forEach(function (t) {
      var on = t.dataset.show === name;
      t.classList.toggle("is-active", on);
      t.setAttribute("aria-selected", on ? "true" : "false");
    });
    root.dataset.panel = name;
    schedule();
  }
  function schedule() {
    if (rotateTimer) { clearTimeout(rotateTimer); }
    rotateTimer = null;
    if (pinned || rotating.length < 2) { return; }
    // Restart the progress bar on the active tab.
    root.classList.remove("is-rotating");
    void root.offsetWidth;
    root.classList.add("is-rotating");
    rotateTimer = setTimeout(function () {
      var i = rotating.findIndex(function (p) { return p.dataset.panel === current; });
      show(rotating[(i + 1) % rotating.length].dataset.panel);
    }, rotateMs);
  }
  function pin() {
    pinned = true;
    root.classList.add("is-pinned");
    root.classList.remove("is-rotating");
    schedule();
    resetIdle();
  }
  function resetIdle() {
    if (idleTimer) { clearTimeout(idleTimer); }
    idleTimer = setTimeout(idle, idleMs);
  }
  function idle() {
    // The next person should not find the previous person's lookup on screen.
    var home = root.dataset.home;
    if (home) { window.location.assign(home); return; }
    clearLookup();
    pinned = false;
    root.classList.remove("is-pinned");
    if (rotating.length) { show(rotating[0].dataset.panel); }
  }

  if (panels.length > 1) {
    root.classList.add("rotates");
    tabs.forEach(function (t) {
      t.addEventListener("click", function () { show(t.dataset.show); pin(); });
    });
    panels.forEach(function (p) {
      p.addEventListener("pointerdown", function () { if (current === p.dataset.panel) { pin(); } });
    });
    show(current);
  } else if (root.dataset.home) {
    resetIdle();
  }
  document.addEventListener("pointerdown", function () { if (pinned || root.dataset.home) { resetIdle(); } });
  document.addEventListener("keydown", function () { if (pinned || root.dataset.home) { resetIdle(); } });

  // --- the keypad types into the lookup box.
  var input = document.getElementById("lookup-no");
  var result = document.getElementById("lookup-result");
  var idleResult = result ? result.innerHTML : "";

  function clearLookup() {
    if (input) { input.value = ""; }
    if (result && root.dataset.panel !== undefined) { result.innerHTML = idleResult; }
  }

  if (input) {
    input.setAttribute("inputmode", "none");
    var max = Number(input.getAttribute("maxlength")) || 40;
    root.addEventListener("click", function (ev) {
      var key = ev.target.closest ? ev.target.closest("button") : null;
      if (!key || !root.contains(key)) { return; }
      if (key.hasAttribute("data-key")) {
        input.value = (input.value + key.dataset.key).slice(0, max);
      } else if (key.hasAttribute("data-prefix")) {
        input.value = key.dataset.prefix;
      } else if (key.hasAttribute("data-back")) {
        input.value = input.value.slice(0, -1);
      } else if (key.hasAttribute("data-clear")) {
        input.value = "";
      } else if (key.hasAttribute("data-letters-toggle")) {
        var row = root.querySelector("[data-letters]");
        if (row) {
          row.hidden = !row.hidden;
          key.setAttribute("aria-expanded", row.hidden ? "false" : "true");
        }
        return;
      } else {
        return;
      }
      if (panels.length > 1) { pin(); }
    });
  }
})();
