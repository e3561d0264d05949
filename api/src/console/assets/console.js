// Vigil console: progressive enhancement only. Every page works without this script.
// - [data-live="URL"]: replaces the element's content with each `update` server-sent event.
// - [data-refresh="MS"]: reloads the page after MS milliseconds (a run in progress).
"use strict";

document.addEventListener("DOMContentLoaded", function () {
  var status = document.getElementById("live-status");
  document.querySelectorAll("[data-live]").forEach(function (el) {
    if (!window.EventSource) {
      return;
    }
    var source = new EventSource(el.getAttribute("data-live"));
    source.addEventListener("update", function (e) {
      el.innerHTML = e.data;
      el.setAttribute("data-updated", String(Date.now()));
      if (status) {
        status.textContent = "Live: updated at " + new Date().toLocaleTimeString() + ".";
      }
    });
    source.addEventListener("problem", function (e) {
      if (status) {
        status.textContent = e.data;
      }
    });
    source.addEventListener("error", function () {
      if (status) {
        status.textContent = "Live updates interrupted: reconnecting…";
      }
    });
    window.addEventListener("pagehide", function () {
      source.close();
    });
  });
  document.querySelectorAll("[data-refresh]").forEach(function (el) {
    var ms = parseInt(el.getAttribute("data-refresh"), 10);
    if (ms > 0) {
      window.setTimeout(function () {
        window.location.reload();
      }, ms);
    }
  });
});
