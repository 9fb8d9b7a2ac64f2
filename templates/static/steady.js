// Live updates for Steady's pages. Small on purpose: the pages work without it; with it, a
// run page follows its run's events and "my work" refreshes itself.
(function () {
  "use strict";

  // Replaces the page's main content with a fresh copy of the same page.
  function refresh() {
    fetch(window.location.href, { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (response) { return response.ok ? response.text() : null; })
      .then(function (html) {
        if (!html) { return; }
        var fresh = new DOMParser().parseFromString(html, "text/html").getElementById("main");
        var main = document.getElementById("main");
        if (!fresh || !main) { return; }
        // Never throw away what someone is typing: try again once they are done.
        if (busy(main)) { setTimeout(refresh, 2000); return; }
        main.replaceWith(fresh);
        watch();
      })
      .catch(function () {});
  }

  // Whether someone is in the middle of filling a form on the page.
  function busy(main) {
    if (main.contains(document.activeElement) && document.activeElement.form) { return true; }
    // A field counts once changed: a filter the page came with (the runs list's) is no typing.
    var fields = main.querySelectorAll("input[type=text], input:not([type]), textarea");
    for (var i = 0; i < fields.length; i++) {
      if (fields[i].value !== fields[i].defaultValue) { return true; }
    }
    return false;
  }

  var source = null;
  var watchingWork = false;
  var pending = null;

  function watch() {
    var banner = document.querySelector("[data-live-run]");
    if (banner && !source && window.EventSource) {
      var run = banner.getAttribute("data-live-run");
      var after = banner.getAttribute("data-last-seq") || "0";
      source = new EventSource("/api/v1/runs/" + run + "/events?after=" + after);
      source.onmessage = source.onerror = null;
      source.addEventListener("message", schedule);
      ["step.started", "step.finished", "step.waiting", "step.skipped", "step.would_run", "step.interrupted",
       "approval.granted", "approval.rejected", "approval.voided", "manual.completed", "manual.failed",
       "run.finished", "run.needs_attention", "run.cancelled", "run.waiting", "decision.taken", "note.added",
       "role.assigned", "role.unassigned", "gate.timed_out", "gate.escalated", "run.rollback_started"]
        .forEach(function (name) { source.addEventListener(name, schedule); });
      // A finished run sends nothing more: stop listening.
      ["run.finished", "run.cancelled"].forEach(function (name) {
        source.addEventListener(name, function () { source.close(); });
      });
    }
  }

  function schedule() {
    if (pending) { clearTimeout(pending); }
    pending = setTimeout(function () { pending = null; refresh(); }, 300);
  }

  // "My work" follows every run's events: a gate or manual step may start waiting anywhere.
  function watchWork() {
    var work = document.querySelector("[data-live=work]");
    if (!work || !window.EventSource || watchingWork) { return; }
    watchingWork = true;
    var all = new EventSource("/api/v1/events?after=" + (work.getAttribute("data-last-seq") || "0"));
    ["step.waiting", "approval.granted", "approval.rejected", "approval.voided", "manual.completed",
     "manual.failed", "gate.timed_out", "gate.escalated", "run.finished", "run.cancelled",
     "role.assigned", "role.unassigned"]
      .forEach(function (name) { all.addEventListener(name, schedule); });
  }

  // Relative times ("4 min ago") next to absolute ones, as the server renders them in
  // page.rs (`relative`, `coarse`): the same rules, so a refresh changes only the number.
  function relative(seconds) {
    if (Math.abs(seconds) < 5) { return "just now"; }
    var s = Math.floor(Math.abs(seconds));
    var words = s < 60 ? s + " s"
      : s < 3600 ? Math.floor(s / 60) + " min"
      : s < 86400 ? Math.floor(s / 3600) + " h"
      : s < 172800 ? "1 day"
      : Math.floor(s / 86400) + " days";
    return seconds < 0 ? words + " ago" : "in " + words;
  }

  function refreshTimes() {
    var times = document.querySelectorAll("time[data-relative]");
    for (var i = 0; i < times.length; i++) {
      var at = Date.parse(times[i].getAttribute("datetime"));
      var ago = times[i].querySelector(".ago");
      if (!isNaN(at) && ago) { ago.textContent = "(" + relative((at - Date.now()) / 1000) + ")"; }
    }
  }

  // The runs list follows every run's events: runs start, move from step to step and end.
  var watchingRuns = false;
  function watchRuns() {
    var runs = document.querySelector("[data-live=runs]");
    if (!runs || !window.EventSource || watchingRuns) { return; }
    watchingRuns = true;
    var all = new EventSource("/api/v1/events?after=" + (runs.getAttribute("data-last-seq") || "0"));
    ["run.started", "step.started", "step.finished", "step.waiting", "step.skipped", "step.would_run",
     "step.interrupted", "approval.granted", "approval.rejected", "manual.completed", "manual.failed",
     "run.finished", "run.cancelled", "run.needs_attention", "decision.taken", "run.commander_transferred"]
      .forEach(function (name) { all.addEventListener(name, schedule); });
  }

  document.addEventListener("DOMContentLoaded", function () {
    watch();
    watchWork();
    watchRuns();
    setInterval(refreshTimes, 15000);
  });
})();
