// dispatchd console: a little progressive enhancement; every page works without it.
(function () {
  "use strict";
  // Any element with data-refresh="URL" (and data-every="seconds") is replaced by the HTML
  // fragment at URL every few seconds, without reloading the page. Paused while the tab is
  // hidden or while a control inside it has focus (so typing is never interrupted).
  function refresher(el) {
    var every = Math.max(5, parseInt(el.getAttribute("data-every") || "15", 10)) * 1000;
    var busy = false;
    function tick() {
      if (busy || document.hidden || el.contains(document.activeElement) && document.activeElement !== el) return;
      busy = true;
      fetch(el.getAttribute("data-refresh"), { credentials: "same-origin", headers: { "x-console-fragment": "1" } })
        .then(function (r) {
          if (r.redirected || r.status === 303) { window.location = "/console/login"; return null; }
          return r.ok ? r.text() : null;
        })
        .then(function (html) {
          if (html !== null && html !== undefined) {
            el.innerHTML = html;
            el.setAttribute("data-refreshed", new Date().toISOString());
            var s = document.getElementById("refreshed");
            if (s) s.textContent = "updated " + new Date().toLocaleTimeString();
          }
        })
        .catch(function () {})
        .then(function () { busy = false; });
    }
    setInterval(tick, every);
  }
  function confirmForms() {
    document.querySelectorAll("form[data-confirm]").forEach(function (f) {
      f.addEventListener("submit", function (e) {
        if (!window.confirm(f.getAttribute("data-confirm"))) e.preventDefault();
      });
    });
  }
  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-refresh]").forEach(refresher);
    confirmForms();
  });
})();
