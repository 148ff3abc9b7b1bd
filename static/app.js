// Progressive enhancement: the connector page's live log and status follow the running job.
(function () {
  'use strict';
  var log = document.getElementById('live-log');
  if (!log) return;
  var url = log.getAttribute('data-log-url');
  var after = log.getAttribute('data-after') || '0';
  var badge = document.getElementById('status-badge');
  var reason = document.getElementById('status-reason');
  var classes = { connected: 'badge-ok', error: 'badge-error', disabled: 'badge-muted' };
  var done = false;
  var sawRunning = log.getAttribute('data-done') !== 'true';

  function poll() {
    fetch(url + '?after=' + encodeURIComponent(after), { credentials: 'same-origin', headers: { Accept: 'application/json' } })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (page) {
        if (!page) return;
        page.items.forEach(function (line) {
          var li = document.createElement('li');
          li.className = 'log-' + line.level;
          var t = document.createElement('time');
          t.textContent = line.at;
          li.appendChild(t);
          li.appendChild(document.createTextNode(' ' + line.message));
          log.appendChild(li);
        });
        if (page.items.length) log.scrollTop = log.scrollHeight;
        after = page.next_cursor;
        if (badge) {
          badge.textContent = page.status_label;
          badge.className = 'badge ' + (classes[page.status] || 'badge-pending');
        }
        if (reason && page.status_reason !== null) {
          reason.textContent = page.status_reason;
          reason.className = page.status === 'error' ? 'alert' : 'muted';
        }
        done = ['succeeded', 'failed', 'cancelled', 'dead'].indexOf(page.job_status) >= 0;
        // The job finished while this page watched it: reload once to show its results
        // (capabilities, syncs) rendered by the server.
        if (done && sawRunning) window.location.replace(window.location.pathname);

      })
      .catch(function () { /* try again on the next tick */ })
      .then(function () { if (!done) setTimeout(poll, 1500); });
  }
  setTimeout(poll, 1000);
})();

// Progressive enhancement: access that ends soon counts down (My access, a request's page).
(function () {
  'use strict';
  var clocks = document.querySelectorAll('time.countdown[datetime]');
  if (!clocks.length) return;
  function left(ms) {
    if (ms <= 0) return 'ending now';
    var s = Math.floor(ms / 1000), d = Math.floor(s / 86400), h = Math.floor(s % 86400 / 3600), m = Math.floor(s % 3600 / 60);
    var parts = [];
    if (d) parts.push(d + ' d');
    if (h) parts.push(h + ' h');
    if (m) parts.push(m + ' min');
    if (!d && !h) parts.push(s % 60 + ' s');
    return parts.join(' ') + ' left';
  }
  function tick() {
    clocks.forEach(function (c) {
      var end = Date.parse(c.getAttribute('datetime'));
      if (!isNaN(end)) c.textContent = left(end - Date.now());
    });
  }
  tick();
  setInterval(tick, 1000);
})();

// Copy buttons for values shown once (hidden without JavaScript: the field can be selected).
(function () {
  'use strict';
  Array.prototype.forEach.call(document.querySelectorAll('[data-copy-target]'), function (b) {
    var field = document.getElementById(b.getAttribute('data-copy-target'));
    if (!field) return;
    b.hidden = false;
    b.addEventListener('click', function () {
      field.select();
      var done = function () { b.textContent = 'Copied'; };
      if (navigator.clipboard) {
        navigator.clipboard.writeText(field.value).then(done, function () { document.execCommand('copy'); done(); });
      } else {
        document.execCommand('copy');
        done();
      }
    });
  });
})();
