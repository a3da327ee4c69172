// The instance page, live: one EventSource on the instance's subscribe stream (its URL on
// #live, an element outside every swapped region). Each event re-fetches the page's live region
// with htmx, at most once per DEBOUNCE_MS; the forms are re-fetched too, but swapped only while
// nobody is typing in them. The stream ends once the instance is final: then it is closed (on an
// error the browser reconnects by itself, resuming after the last event it had).
(function () {
  "use strict";
  var DEBOUNCE_MS = 150;
  var LIVE = "#instance-live";
  var FORMS = "#instance-forms";

  function refetch(selector) {
    if (!document.querySelector(selector)) return;
    window.htmx.ajax("GET", window.location.href, {
      source: selector,
      target: selector,
      select: selector,
      swap: "outerHTML",
    });
  }

  function inUse(forms) {
    return forms.dataset.touched === "true" || forms.contains(document.activeElement);
  }

  function start() {
    var live = document.getElementById("live");
    var url = live && live.dataset.subscribe;
    if (!url || !window.EventSource || !window.htmx) return;
    var status = live.dataset.status;
    var timer = null;
    var source = new EventSource(url);

    function refresh() {
      timer = null;
      refetch(LIVE);
      var forms = document.querySelector(FORMS);
      if (forms && !inUse(forms)) refetch(FORMS);
    }
    function soon() {
      if (timer === null) timer = window.setTimeout(refresh, DEBOUNCE_MS);
    }

    source.addEventListener("step", soon);
    source.addEventListener("attempt", soon);
    source.addEventListener("status", function (event) {
      var now = JSON.parse(event.data).status;
      if (now !== status) {
        status = now;
        soon();
      }
    });
    source.addEventListener("end", function () {
      source.close();
      live.dataset.ended = "true";
      soon();
    });
    window.addEventListener("pagehide", function () {
      source.close();
    });
  }

  // What the user types is never replaced: a form they touched stays as it is, and a swap
  // that arrives while they use it is dropped.
  document.addEventListener("input", function (event) {
    var forms = event.target.closest && event.target.closest(FORMS);
    if (forms) forms.dataset.touched = "true";
  });
  document.addEventListener("htmx:beforeSwap", function (event) {
    var target = event.detail.target;
    if (target && target.matches(FORMS) && inUse(target)) event.detail.shouldSwap = false;
  });

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
