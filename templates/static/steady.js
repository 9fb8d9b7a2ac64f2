// Live updates for Steady's pages. Small on purpose: the pages work without it; with it, a
// run page follows its run's events and "my work" refreshes itself.
(function () {
  "use strict";

  // Replaces the page's main content with a fresh copy of the same page. A form someone is
  // typing in (one with an id) is carried over as it is; the rest of the page updates.
  function refresh() {
    if (dialogOpen()) { setTimeout(refresh, 2000); return; }
    fetch(window.location.href, { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (response) {
        if (signedOutBy(response)) { signedOut(); return null; }
        return response.ok ? response.text() : null;
      })
      .then(function (html) {
        if (!html) { return; }
        var parsed = new DOMParser().parseFromString(html, "text/html");
        var fresh = parsed.getElementById("main");
        var main = document.getElementById("main");
        if (!fresh || !main) { return; }
        var kept = typedForms(main);
        // Never throw away what someone is typing: a form without an id cannot be carried
        // over, so try again once they are done.
        if (kept === null) { setTimeout(refresh, 2000); return; }
        // A fan-out's item someone opened stays open when the page updates.
        var opened = [];
        main.querySelectorAll("details[id]").forEach(function (details) { if (details.open) { opened.push(details.id); } });
        var active = document.activeElement;
        var selection = active && "selectionStart" in active ? [active.selectionStart, active.selectionEnd] : null;
        main.replaceWith(fresh);
        opened.forEach(function (id) {
          var details = document.getElementById(id);
          if (details) { details.open = true; }
        });
        kept.forEach(function (form) {
          var replaced = document.getElementById(form.id);
          if (replaced) { replaced.replaceWith(form); }
        });
        if (active && document.contains(active) && active !== document.body) {
          active.focus();
          if (selection) { try { active.setSelectionRange(selection[0], selection[1]); } catch (e) {} }
        }
        if (parsed.title) { document.title = parsed.title; }
        watch();
        runPage();
      })
      .catch(function () { connection("disconnected"); });
  }

  // The forms of `main` someone is typing in; null when one of them has no id to find it by.
  function typedForms(main) {
    var forms = main.querySelectorAll("form");
    var kept = [];
    for (var i = 0; i < forms.length; i++) {
      if (!busy(forms[i])) { continue; }
      if (!forms[i].id) { return null; }
      kept.push(forms[i]);
    }
    return kept;
  }

  // Whether someone is in the middle of filling this form.
  function busy(form) {
    var active = document.activeElement;
    if (form.contains(active) && /^(INPUT|TEXTAREA|SELECT)$/.test(active.tagName) &&
        active.type !== "hidden" && active.type !== "submit") { return true; }
    var fields = form.querySelectorAll("input[type=text], input:not([type]), textarea");
    // A field counts once changed: a filter the page came with (the runs list's) is no typing.
    for (var i = 0; i < fields.length; i++) { if (fields[i].value !== fields[i].defaultValue) { return true; } }
    return false;
  }

  var source = null;
  var lastSeq = null;
  // A proposal's page also follows the dry run gathering its facts, while it runs.
  var factsSource = null;
  var workSource = null;
  var pending = null;

  function watch() {
    watchFacts();
    var banner = document.querySelector("[data-live-run]");
    if (!banner) { if (source) { source.close(); source = null; } connection("ended"); return; }
    if (source || !window.EventSource) { return; }
    if (document.visibilityState === "hidden") { connection("paused"); return; }
    var run = banner.getAttribute("data-live-run");
    var after = lastSeq || banner.getAttribute("data-last-seq") || "0";
    source = new EventSource("/api/v1/runs/" + run + "/events?after=" + after);
    source.addEventListener("open", function () { connection("live"); });
    source.addEventListener("error", function () {
      // EventSource reconnects by itself unless the server refused it (a lost session).
      if (source && source.readyState === EventSource.CLOSED) { source = null; ping(); }
      connection("disconnected");
    });
    var seen = function (event) {
      if (event.lastEventId) { lastSeq = event.lastEventId; }
      schedule();
    };
    source.addEventListener("message", seen);
    ["step.started", "step.finished", "step.waiting", "step.skipped", "step.would_run", "step.interrupted",
     "approval.granted", "approval.rejected", "approval.voided", "manual.completed", "manual.failed",
     "run.finished", "run.needs_attention", "run.cancelled", "run.waiting", "decision.taken", "note.added",
     "role.assigned", "role.unassigned", "gate.timed_out", "gate.escalated", "run.rollback_started",
     "run.commander_transferred", "run.taken_over", "run.alert_added", "run.taken", "run.dismissed",
     "run.expired"]
      .forEach(function (name) { source.addEventListener(name, seen); });
    // A finished run sends nothing more: stop listening.
    ["run.finished", "run.cancelled", "run.dismissed", "run.expired"].forEach(function (name) {
      source.addEventListener(name, function () { if (source) { source.close(); source = null; } });
    });
  }

  // The dry run named by `data-facts-run` (present while it gathers): each of its events
  // refreshes the proposal's page, which drops the attribute once the facts are in. Its events
  // leave `lastSeq` alone: that is where the proposal's own stream resumes.
  function watchFacts() {
    var banner = document.querySelector("[data-facts-run]");
    var run = banner && banner.getAttribute("data-facts-run");
    if (factsSource && factsSource.run !== run) { factsSource.close(); factsSource = null; }
    if (!run || factsSource || !window.EventSource || document.visibilityState === "hidden") { return; }
    var after = banner.getAttribute("data-last-seq") || "0";
    factsSource = new EventSource("/api/v1/runs/" + run + "/events?after=" + after);
    factsSource.run = run;
    ["step.started", "step.finished", "step.waiting", "step.skipped", "step.would_run", "step.interrupted",
     "run.finished", "run.needs_attention", "run.cancelled"]
      .forEach(function (name) { factsSource.addEventListener(name, schedule); });
  }

  function schedule() {
    if (pending) { clearTimeout(pending); }
    pending = setTimeout(function () { pending = null; refresh(); }, 300);
  }

  // "My work" follows every run's events: a gate or manual step may start waiting anywhere.
  // Like the run page, it says so when the session ended instead of going stale.
  function watchWork() {
    var work = document.querySelector("[data-live=work]");
    if (!work || !window.EventSource || workSource || signedOutNow) { return; }
    var all = new EventSource("/api/v1/events?after=" + (work.getAttribute("data-last-seq") || "0"));
    workSource = all;
    all.addEventListener("error", function () {
      // EventSource reconnects by itself unless the server refused it (a lost session).
      if (all.readyState === EventSource.CLOSED) { workSource = null; ping(); }
    });
    ["step.waiting", "approval.granted", "approval.rejected", "approval.voided", "manual.completed",
     "manual.failed", "gate.timed_out", "gate.escalated", "run.finished", "run.cancelled",
     "role.assigned", "role.unassigned", "run.started", "run.needs_attention", "decision.taken",
     "run.commander_transferred", "run.proposed", "run.alert_added", "run.taken", "run.dismissed",
     "run.expired"]
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
  // Like my work, it says so when the session ended instead of silently stopping.
  var runsSource = null;
  function watchRuns() {
    var runs = document.querySelector("[data-live=runs]");
    if (!runs || !window.EventSource || runsSource || signedOutNow) { return; }
    var all = new EventSource("/api/v1/events?after=" + (runs.getAttribute("data-last-seq") || "0"));
    runsSource = all;
    all.addEventListener("error", function () {
      // EventSource reconnects by itself unless the server refused it (a lost session).
      if (all.readyState === EventSource.CLOSED) { runsSource = null; ping(); }
    });
    ["run.started", "step.started", "step.finished", "step.waiting", "step.skipped", "step.would_run",
     "step.interrupted", "approval.granted", "approval.rejected", "manual.completed", "manual.failed",
     "run.finished", "run.cancelled", "run.needs_attention", "decision.taken", "run.commander_transferred",
     "run.proposed", "run.taken", "run.dismissed", "run.expired"]
      .forEach(function (name) { all.addEventListener(name, schedule); });
  }

  document.addEventListener("DOMContentLoaded", function () {
    watch();
    watchWork();
    runPage();
    setInterval(tick, 1000);
    setInterval(keepAlive, KEEP_ALIVE);
    document.addEventListener("visibilitychange", visibility);
    watchRuns();
    setInterval(refreshTimes, 15000);
    keepFragment();
    document.addEventListener("focusin", suggestSeveral);
    document.addEventListener("input", suggestSeveral);
  });

  // A role field takes several names, comma-separated, but a datalist suggests whole values:
  // the suggestions become "what is typed up to the last comma, then each name not yet in it",
  // so the name being typed after a comma is suggested too. Without JavaScript the list
  // suggests the first name only, as before.
  var names = {};
  function suggestSeveral(event) {
    var field = event.target;
    if (!field || !field.matches || !field.matches("input[data-several][list]")) { return; }
    var list = document.getElementById(field.getAttribute("list"));
    if (!list) { return; }
    if (!names[list.id]) {
      names[list.id] = Array.prototype.map.call(list.options, function (option) { return option.value; });
    }
    var comma = field.value.lastIndexOf(",");
    var typed = comma === -1 ? "" : field.value.slice(0, comma + 1).replace(/\s*$/, " ");
    var given = typed.split(",").map(function (name) { return name.trim(); });
    var options = document.createDocumentFragment();
    names[list.id].forEach(function (name) {
      if (given.indexOf(name) !== -1) { return; }
      var option = document.createElement("option");
      option.value = typed + name;
      options.appendChild(option);
    });
    list.replaceChildren(options);
  }

  // A link to a step (`/runs/ID#step-go`, from a notification) opened signed out lands on the
  // login page with the fragment still in the address bar, but browsers never send it to the
  // server: carry it into `next`, which the server checks as ever, so sign-in returns to it.
  function keepFragment() {
    var next = document.querySelector("form[action='/login'] input[name=next]");
    var hash = window.location.hash;
    if (!next || !/^#[A-Za-z0-9_.:\-\[\]]{1,200}$/.test(hash)) { return; }
    if (!/^\/(?![\/\\])/.test(next.value) || next.value.indexOf("#") !== -1) { return; }
    next.value += hash;
  }

  // ------------------------------------------------------------------ run page and my work

  // The pages that follow live and say when they are signed out: a run page, my work and
  // the runs list.
  function followsSession() {
    return !!document.querySelector("[data-signed-out]");
  }

  // How often an open, visible run page or my work tells the server someone is still
  // watching: well inside the session's idle limit. The session's absolute lifetime still
  // ends it.
  var KEEP_ALIVE = 4 * 60 * 1000;
  var CONNECTION = {
    live: "● live: updates as the run moves",
    paused: "‖ paused while this tab is in the background",
    disconnected: "⚠ disconnected: trying again…",
    ended: "ended: this is the final state"
  };

  // Says in the header whether the page follows the run.
  function connection(state) {
    var label = document.querySelector("[data-conn]");
    if (!label || !document.querySelector("[data-run]")) { return; }
    if (state === "live" || state === "paused" || state === "disconnected") {
      if (!document.querySelector("[data-live-run]")) { state = "ended"; }
    }
    label.textContent = CONNECTION[state];
    label.setAttribute("data-conn", state);
  }

  // A page fetched without a session comes back as the login page (or a 401).
  function signedOutBy(response) {
    if (response.status === 401) { return true; }
    return response.redirected && new URL(response.url).pathname === "/login";
  }

  // Shows "signed out — sign in to continue" in place, and stops following the run or the
  // work.
  function signedOut() {
    if (source) { source.close(); source = null; }
    if (factsSource) { factsSource.close(); factsSource = null; }
    if (workSource) { workSource.close(); workSource = null; }
    if (runsSource) { runsSource.close(); runsSource = null; }
    var banner = document.querySelector("[data-signed-out]");
    if (banner) { banner.hidden = false; }
    var label = document.querySelector("[data-conn]");
    if (label) { label.textContent = "signed out: not updating"; label.setAttribute("data-conn", "signed-out"); }
    signedOutNow = true;
  }
  var signedOutNow = false;

  // Asks the server who we are: a cheap authenticated call that also counts as activity.
  function ping() {
    if (!followsSession()) { return; }
    fetch("/api/v1/session", { credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then(function (response) { if (signedOutBy(response)) { signedOut(); } })
      .catch(function () { connection("disconnected"); });
  }

  function keepAlive() {
    if (document.visibilityState === "visible" && !signedOutNow) { ping(); }
  }

  // A hidden tab stops following the run; coming back catches up at once (my work keeps
  // following, and catches up too).
  function visibility() {
    if (!followsSession() || signedOutNow) { return; }
    if (document.visibilityState === "hidden") {
      if (source) { source.close(); source = null; }
      if (factsSource) { factsSource.close(); factsSource = null; }
      connection("paused");
    } else {
      ping();
      refresh();
    }
  }

  // Keeps the elapsed time and the gate's countdown moving between updates.
  function tick() {
    var now = Date.now();
    var since = document.querySelector("[data-since]");
    if (since) { since.textContent = span((now - Date.parse(since.getAttribute("data-since"))) / 1000); }
    var deadline = document.querySelector("[data-deadline]");
    if (deadline) {
      var left = (Date.parse(deadline.getAttribute("data-deadline")) - now) / 1000;
      deadline.textContent = left > 0 ? "times out in " + span(left) : "timed out";
    }
  }

  // "2 h 05 min", "3 min 12 s", "12 s", as the server writes them.
  function span(seconds) {
    seconds = Math.max(0, Math.floor(seconds));
    var h = Math.floor(seconds / 3600), m = Math.floor(seconds % 3600 / 60), s = seconds % 60;
    var two = function (n) { return n < 10 ? "0" + n : "" + n; };
    if (h > 0) { return h + " h " + two(m) + " min"; }
    if (m > 0) { return m + " min " + two(s) + " s"; }
    return s + " s";
  }

  function dialogOpen() {
    var dialog = document.getElementById("reason-dialog");
    return !!(dialog && dialog.open);
  }

  // Forms that end or reverse work ask for a reason in a dialog, then post it with
  // `confirm=yes`; without JavaScript the server asks on a confirmation page instead.
  function runPage() {
    var dialog = document.getElementById("reason-dialog");
    if (!dialog || !dialog.showModal) { return; }
    var forms = document.querySelectorAll("form[data-confirm-reason]");
    for (var i = 0; i < forms.length; i++) {
      // A form carried over from before a refresh already asks.
      if (forms[i].hasAttribute("data-asks")) { continue; }
      forms[i].setAttribute("data-asks", "");
      forms[i].addEventListener("submit", askReason);
    }
    connection(document.querySelector("[data-live-run]") ? (source ? "live" : "disconnected") : "ended");
    tick();
    lookAgain();
  }

  // A step that outlasts its longest rehearsal writes nothing to the log: the page says when
  // that moment comes (`data-look-again`), and refreshes itself then to mark it.
  var lookAgainTimer = null;
  function lookAgain() {
    if (lookAgainTimer) { clearTimeout(lookAgainTimer); lookAgainTimer = null; }
    var banner = document.querySelector("[data-live-run][data-look-again]");
    if (!banner) { return; }
    var at = Date.parse(banner.getAttribute("data-look-again"));
    if (isNaN(at)) { return; }
    // At least a second apart, whatever this computer's clock says.
    lookAgainTimer = setTimeout(function () { lookAgainTimer = null; refresh(); }, Math.max(1000, at - Date.now() + 250));
  }

  function askReason(event) {
    var form = event.currentTarget;
    if (form.querySelector("input[name=confirm]")) { return; }
    event.preventDefault();
    var dialog = document.getElementById("reason-dialog");
    var text = dialog.querySelector("textarea[name=reason]");
    var missing = dialog.querySelector("[data-reason-missing]");
    dialog.querySelector("[data-reason-does]").textContent = form.getAttribute("data-confirm-reason");
    text.value = "";
    missing.hidden = true;
    dialog.onclose = function () {
      // Left empty, so that the refresh does not wait for a reason nobody is typing.
      if (dialog.returnValue !== "confirm") { text.value = ""; return; }
      if (!text.value.trim()) { missing.hidden = false; dialog.showModal(); return; }
      [["reason", text.value], ["confirm", "yes"]].forEach(function (pair) {
        var field = document.createElement("input");
        field.type = "hidden";
        field.name = pair[0];
        field.value = pair[1];
        form.appendChild(field);
      });
      form.submit();
    };
    dialog.showModal();
    text.focus();
  }
})();
