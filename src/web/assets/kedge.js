// Kedge dashboard: follows the event stream (the session cookie goes along:
// same origin) and keeps the page current without a reload. Each event is
// shown at once in the row it concerns, then the page's live sections are
// re-read from the server. Event data is only ever set as text.
(function () {
  "use strict";
  var url = document.body.getAttribute("data-stream");
  var line = document.getElementById("live");
  if (!url || !window.EventSource || !window.fetch || !window.DOMParser) return;
  var KINDS = ["repo_added", "repo_removed", "repo_renamed", "commit_detected", "deploy_started",
    "deploy_succeeded", "deploy_failed", "rolled_back", "pin_released", "drift_detected",
    "drift_healed", "heal_failed", "crash_loop", "unhealthy"];
  var DRIFT = { drift_detected: 1, heal_failed: 1, crash_loop: 1, unhealthy: 1 };
  var soon = null, later = null, wait = 1000, signedOut = false;

  function say(text, on) {
    if (!line) return;
    line.textContent = text;
    line.className = "live " + (on ? "on" : "off");
  }

  function sel(value) {
    return window.CSS && CSS.escape ? CSS.escape(value) : value.replace(/["\\]/g, "\\$&");
  }

  function setState(el, word, cls) {
    if (!el) return;
    el.textContent = word;
    el.className = "state " + cls;
  }

  // The event, at once, where it belongs.
  function mark(ev) {
    var drift = DRIFT[ev.kind] === 1;
    // A stack's own row ("repo/stack", on its repository's page), else the
    // line of its repository (the overview sums several stacks up in one).
    var name = ev.stack ? ev.repo + "/" + ev.stack : ev.repo;
    var row = document.querySelector('tr[data-repo="' + sel(name) + '"]') ||
      document.querySelector('tr[data-repo="' + sel(ev.repo) + '"]');
    if (row) {
      var st = row.querySelector('td[data-label="State"] .state');
      if (drift) setState(st, "drifted", "s-drifted");
      if (ev.kind === "deploy_started") setState(st, "deploying", "d-in_progress");
    }
    if (ev.service && drift) {
      var svc = document.querySelector('tr[data-service="' + sel(ev.service) + '"] .state');
      setState(svc, "drifted", "s-drifted");
      setState(document.querySelector("dd.repo-state .state"), "drifted", "s-drifted");
    }
    var events = document.querySelector("#events tbody");
    if (events) {
      var tr = document.createElement("tr");
      tr.className = "sev-" + ev.severity;
      var labels = ["Time", "Kind", "Service", "Message"];
      [ev.time, ev.kind, ev.service || "–", ev.message].forEach(function (text, i) {
        var td = document.createElement("td");
        td.setAttribute("data-label", labels[i]);
        td.textContent = text;
        tr.appendChild(td);
      });
      events.insertBefore(tr, events.firstChild);
    }
  }

  // The live sections, as the server renders them now.
  function refresh() {
    if (signedOut) return;
    fetch(location.href, { credentials: "same-origin", cache: "no-store" })
      .then(function (r) {
        if (r.redirected) {
          signedOut = true;
          say("Signed out: reload the page to sign in again.", false);
          return null;
        }
        return r.ok ? r.text() : null;
      })
      .then(function (html) {
        if (!html) return;
        var doc = new DOMParser().parseFromString(html, "text/html");
        document.querySelectorAll("[data-live][id]").forEach(function (el) {
          var fresh = doc.getElementById(el.id);
          if (fresh && fresh.outerHTML !== el.outerHTML) {
            el.replaceWith(document.importNode(fresh, true));
          }
        });
      })
      .catch(function () { /* the next event or reconnect tries again */ });
  }

  function schedule() {
    clearTimeout(soon);
    clearTimeout(later);
    soon = setTimeout(refresh, 200);
    // What a pass publishes after its events (containers, drift) comes a moment later.
    later = setTimeout(refresh, 1500);
  }

  function onEvent(message) {
    var ev;
    try { ev = JSON.parse(message.data); } catch (e) { return; }
    mark(ev);
    schedule();
  }

  function connect() {
    var source = new EventSource(url);
    source.onopen = function () {
      wait = 1000;
      say("Live: this page follows Kedge's events.", true);
    };
    source.onerror = function () {
      if (source.readyState === EventSource.CLOSED) {
        // Refused or gone for good: start over, and re-read the page.
        say("Disconnected: retrying…", false);
        setTimeout(function () { connect(); schedule(); }, wait);
        wait = Math.min(wait * 2, 30000);
      } else {
        // The browser reconnects by itself and resumes after the last event id.
        say("Reconnecting…", false);
      }
    };
    KINDS.forEach(function (kind) { source.addEventListener(kind, onEvent); });
  }

  say("Connecting…", false);
  connect();
})();
