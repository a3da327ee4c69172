// The instance page, live: one EventSource on the instance's subscribe stream (its URL on
// #live, an element outside every swapped region). Each event re-fetches the page's live region
// with htmx, at most once per DEBOUNCE_MS. The same response brings the forms up to date (the
// steps to restart from, the event a wait expects), each form only while nobody uses it: what
// the user types is never replaced. The stream ends once the instance is final, and is closed
// then; on an error the browser reconnects by itself, resuming after the last event it had.
(function () {
  "use strict";
  var DEBOUNCE_MS = 150;
  var LIVE = "#instance-live";
  var FORMS = "[data-live-form]";
  var DETAILS = LIVE + " details[id]";

  function inUse(form) {
    return form.dataset.touched === "true" || form.contains(document.activeElement);
  }

  function start() {
    var live = document.getElementById("live");
    var url = live && live.dataset.subscribe;
    if (!url || !window.EventSource || !window.htmx) return;
    var status = live.dataset.status;
    var timer = null;
    var source = new EventSource(url);

    // One refresh at a time, and one more after it for what came meanwhile: htmx would queue
    // it on the element the first one replaces, and then drop it (its source is gone).
    var busy = false;
    var again = false;
    function refreshed() {
      busy = false;
      if (again) {
        again = false;
        soon();
      }
    }
    function refresh() {
      timer = null;
      if (busy) {
        again = true;
        return;
      }
      if (!document.querySelector(LIVE)) return;
      busy = true;
      window.htmx
        .ajax("GET", window.location.href, {
          source: LIVE,
          target: LIVE,
          select: LIVE,
          swap: "outerHTML",
        })
        .then(refreshed, refreshed);
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

  // A form the user typed in, or is in, keeps its state until the page is loaded again.
  document.addEventListener("input", function (event) {
    var form = event.target.closest && event.target.closest(FORMS);
    if (form) form.dataset.touched = "true";
  });
  // What the user opened or closed (a step's output, its attempts) stays so after a refresh.
  var opened = {};
  document.addEventListener("htmx:afterSwap", function (event) {
    if (!event.detail.target || !event.detail.target.matches(LIVE)) return;
    document.querySelectorAll(DETAILS).forEach(function (details) {
      if (Object.prototype.hasOwnProperty.call(opened, details.id)) {
        details.open = opened[details.id];
      }
    });
  });
  document.addEventListener("htmx:beforeSwap", function (event) {
    var detail = event.detail;
    if (!detail.target || !detail.target.matches(LIVE) || !detail.shouldSwap) return;
    opened = {};
    document.querySelectorAll(DETAILS).forEach(function (details) {
      opened[details.id] = details.open;
    });
    document.querySelectorAll(FORMS).forEach(function (form) {
      if (form.id && !inUse(form)) {
        window.htmx.swap(form, detail.serverResponse, { swapStyle: "outerHTML" }, {
          select: "#" + form.id,
        });
      }
    });
  });

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
