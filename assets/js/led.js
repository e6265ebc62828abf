// The LED player page (Android players, web-capable controllers).
// The animated GIF holds every page with its duration (marquees included);
// when the board's version changes (SSE `frame` event, or pages.json when the
// stream is down) the new GIF is loaded off-screen and swapped in, so the
// board never shows a blank frame and keeps the last good one on errors.
(function () {
  "use strict";
  var img = document.getElementById("led");
  if (!img) { return; }
  var board = img.dataset.board;
  var version = img.dataset.version;
  var loading = null;

  function show(next) {
    if (!next || next === version || next === loading) { return; }
    loading = next;
    var pre = new Image();
    pre.onload = function () {
      if (loading !== next) { return; }
      img.src = pre.src;
      version = next;
      loading = null;
    };
    pre.onerror = function () { loading = null; };
    pre.src = "/led/" + board + "/frame.gif?v=" + encodeURIComponent(next);
  }

  function poll() {
    fetch(img.dataset.pages, { cache: "no-cache" })
      .then(function (r) { if (!r.ok) { throw new Error(r.status); } return r.json(); })
      .then(function (doc) { show(doc.version); })
      .catch(function () { /* keep showing the last good frames */ });
  }

  if (window.EventSource) {
    var source = new EventSource(img.dataset.events);
    source.addEventListener("frame", function (e) {
      try { show(JSON.parse(e.data).version); } catch (err) { /* ignore a bad event */ }
    });
    source.addEventListener("error", function () { poll(); });
  }
  // A slow safety net: catches a change missed while the stream reconnected.
  setInterval(poll, 60000);
})();
