// Airlock console: the only script. It appends a live session's new events to its
// replay (the server renders and escapes them) and stops once the session ends.
// Everything else works without it.
(function () {
  'use strict';
  var timeline = document.getElementById('timeline');
  if (!timeline || timeline.dataset.live !== '1') return;
  var session = timeline.dataset.session;
  var after = Number(timeline.dataset.after || 0);
  var busy = false;
  function poll() {
    if (busy || document.hidden) return;
    busy = true;
    fetch('/sessions/' + encodeURIComponent(session) + '/events?after=' + after, {
      credentials: 'same-origin', headers: { 'Accept': 'text/html' }
    }).then(function (r) {
      if (!r.ok) throw new Error('HTTP ' + r.status);
      var ended = r.headers.get('X-Airlock-Session-Ended') === '1';
      return r.text().then(function (html) {
        if (html.trim()) {
          timeline.insertAdjacentHTML('beforeend', html);
          var items = timeline.querySelectorAll('li[data-seq]');
          if (items.length) after = Number(items[items.length - 1].dataset.seq);
        }
        if (ended) { clearInterval(timer); var note = document.querySelector('.live-note');
          if (note) note.textContent = 'The session has ended; reload for its summary.'; }
      });
    }).catch(function () { /* the next tick retries */ }).then(function () { busy = false; });
  }
  var timer = setInterval(poll, 2000);
})();
