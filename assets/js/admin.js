// Staff admin: small progressive enhancements; every page also works without this file.
"use strict";

(function () {
  // Ask before destructive actions (withdraw, disable, new token).
  document.addEventListener("submit", function (ev) {
    var form = ev.target;
    var question = form.getAttribute && form.getAttribute("data-confirm");
    if (question && !window.confirm(question)) {
      ev.preventDefault();
    }
  });

  // The notice editor: refresh the redaction and screen previews while staff type.
  var form = document.getElementById("notice-form");
  var preview = document.getElementById("preview");
  if (!form || !preview) {
    return;
  }
  var url = form.getAttribute("data-preview");
  var timer = null;
  var seq = 0;

  function syncSchedule() {
    var at = form.querySelector('input[name="when"][value="at"]');
    var publishAt = form.querySelector('input[name="publish_at"]');
    if (at && publishAt) {
      publishAt.disabled = !at.checked;
    }
  }

  function refresh() {
    var mine = ++seq;
    var data = new FormData(form);
    data.set("action", "preview");
    preview.classList.add("busy");
    fetch(url, {
      method: "POST",
      body: data,
      credentials: "same-origin",
      headers: { "X-Requested-With": "fetch" },
    })
      .then(function (resp) {
        return resp.ok ? resp.text() : Promise.reject(resp.status);
      })
      .then(function (html) {
        if (mine === seq) {
          // The fragment is rendered by the server with autoescaping on.
          preview.innerHTML = html;
          preview.setAttribute("data-updated", String(mine));
        }
      })
      .catch(function () {
        /* keep the last preview; the 预览 button still works */
      })
      .finally(function () {
        if (mine === seq) {
          preview.classList.remove("busy");
        }
      });
  }

  function later() {
    window.clearTimeout(timer);
    timer = window.setTimeout(refresh, 400);
  }

  form.addEventListener("input", later);
  form.addEventListener("change", function () {
    syncSchedule();
    later();
  });
  syncSchedule();
})();
