// Vigil console: progressive enhancement only. Every page works without this script.
// - [data-live="URL"]: replaces the element's content with each `update` server-sent event
//   (not while keyboard focus is inside it: the next update after focus leaves applies).
// - [data-refresh="MS"]: reloads the page after MS milliseconds (a run in progress).
"use strict";

document.addEventListener("DOMContentLoaded", function () {
  var status = document.getElementById("live-status");
  var say = function (text) {
    if (status && status.textContent !== text) {
      status.textContent = text;
    }
  };
  document.querySelectorAll("[data-live]").forEach(function (el) {
    if (!window.EventSource) {
      return;
    }
    var pending = null;
    var apply = function (html) {
      el.innerHTML = html;
      el.setAttribute("data-updated", String(Date.now()));
      say("Live: updates as the pipeline commits.");
    };
    var source = new EventSource(el.getAttribute("data-live"));
    source.addEventListener("update", function (e) {
      if (el.contains(document.activeElement)) {
        pending = e.data;
      } else {
        apply(e.data);
      }
    });
    el.addEventListener("focusout", function () {
      window.setTimeout(function () {
        if (pending !== null && !el.contains(document.activeElement)) {
          apply(pending);
          pending = null;
        }
      }, 0);
    });
    source.addEventListener("problem", function (e) {
      say(e.data);
    });
    source.addEventListener("error", function () {
      if (source.readyState === EventSource.CLOSED) {
        say("Live updates stopped: reload the page (you may need to sign in again).");
      } else {
        say("Live updates interrupted: reconnecting…");
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
