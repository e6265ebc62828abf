// Live updates for a kiosk page: the server sends events, the page re-fetches
// the server-rendered fragment that changed. No data is rendered in the browser.
(function () {
  "use strict";
  var root = document.getElementById("kiosk");
  if (!root) { return; }
  var town = root.dataset.town;
  var status = document.getElementById("status");
  var pending = {};
  var lastUpdate = new Date();

  function pad(n) { return (n < 10 ? "0" : "") + n; }

  function refresh(part) {
    if (pending[part]) { return; }
    pending[part] = setTimeout(function () {
      pending[part] = null;
      fetch("/kiosk/" + town + "/_" + part, { cache: "no-store" })
        .then(function (r) { if (!r.ok) { throw new Error(r.status); } return r.text(); })
        .then(function (html) {
          var el = document.getElementById(part);
          if (el) { el.innerHTML = html; }
          lastUpdate = new Date();
        })
        .catch(function () { /* keep the last good content */ });
    }, 150);
  }

  var source = new EventSource(root.dataset.events);
  source.addEventListener("open", function () {
    status.textContent = "实时更新";
    status.classList.remove("stale");
  });
  source.addEventListener("error", function () {
    status.textContent = "数据更新于 " + pad(lastUpdate.getHours()) + ":" + pad(lastUpdate.getMinutes());
    status.classList.add("stale");
  });
  source.addEventListener("case", function () { refresh("cases"); refresh("figures"); });
  source.addEventListener("stats", function () { refresh("figures"); });
  source.addEventListener("notice", function () { refresh("notices"); });
  source.addEventListener("reset", function () { window.location.reload(); });
})();
