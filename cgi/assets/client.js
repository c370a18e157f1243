/* livecgi browser client, wire protocol livecgi.v1 (see proto/README.md).
 * Plain ES2017, no dependencies, no build step.
 *
 *   const live = LiveCGI.connect({stub: "/cgi-bin/live.cgi"});
 *   live.watch("system.load1", r => console.log(r.value));
 *   live.command("leds.set_brightness", {led: "led0", value: 255}).then(v => ..., err => ...);
 *   live.history("system.load1", {from: live.now() - 3600000}).then(h => h.points);
 *
 * Events (detail in ev.detail, or the first argument of an on() handler):
 * "state" {state, retryIn}, "open", "hello", "snapshot", "reading", "status",
 * "result", "error" {code, message}, "close" {code, reason, retryIn},
 * "unknown" {sensor, message}, "transport" {transport}, "alarm" (a
 * transition; live.alarms holds every alarm's state).
 *
 * Transports: the connect document lists the ways to the supervisor in
 * the order to try them (same-port WebSocket, the supervisor's own
 * WebSocket port, long polling through the stub); each gets 3 s to bring
 * a hello before the next is tried. live.transport says which one is
 * live. The one that worked is remembered for the tab (sessionStorage)
 * for 5 minutes, after which the faster ones are tried again, in the
 * background while live on a slower one.
 */
(function (root) {
  "use strict";
  const PROTOCOL = "livecgi.v1";
  const script = typeof document !== "undefined" && document.currentScript ? document.currentScript.src : "";

  // backoff returns the delay in ms before reconnect attempt n (0-based):
  // min doubled n times, capped at max, with equal jitter (half fixed, half
  // random) so that many clients of one device do not reconnect in step.
  function backoff(n, min, max, rnd) {
    const d = Math.min(max, min * Math.pow(2, Math.min(n, 30)));
    return Math.round(d / 2 + rnd() * d / 2);
  }

  // absolute resolves url against base (the page's location when none) and
  // leaves out the "user:password@" of a page opened with one in its
  // address: fetch refuses a URL with credentials, and a relative one
  // resolved against such a page has them. The browser keeps sending a
  // signed-in user's Authorization by itself.
  function absolute(url, base) {
    const loc = root.location, Address = root.URL;
    if (typeof Address !== "function" || !(base || (loc && loc.origin && loc.origin !== "null"))) return url;
    try {
      const u = new Address(url, base || loc.origin + loc.pathname + loc.search);
      u.username = u.password = "";
      return u.href;
    } catch (e) { return url; }
  }

  // defaultStub is the stub this script was loaded from (…/live.cgi?client.js),
  // else the page's own path (the dashboard is served by the stub itself).
  function defaultStub() {
    if (/\?client\.js(&|$)/.test(script)) return script.replace(/\?.*$/, "");
    return root.location ? root.location.pathname : "";
  }

  function fail(code, message) {
    const err = new Error(message);
    err.code = code;
    return err;
  }

  // KINDS are the transports this client speaks; FASTER is how long a
  // fallback is kept before the faster ones are tried again.
  const KINDS = ["same-port", "ws", "poll"];
  const FASTER = 5 * 60 * 1000;

  // PollConn is long polling through the stub behind a WebSocket's face
  // (readyState, send, close, onopen/onmessage/onclose), so that Live
  // treats both alike. Its first poll presents the URL's token and opens a
  // session; later polls carry the session and the last sequence number
  // (proto/README.md, "Transports"). Commands and history requests are
  // POSTs answered with their result, history or error frame; other
  // frames are not needed: a poll gets every sensor and resumes by itself.
  class PollConn {
    constructor(url, live) {
      this.readyState = 0;
      this._live = live;
      this._session = "";
      this._seq = 0;
      this._ac = null;
      this.onopen = this.onmessage = this.onclose = null;
      this._loop(url);
    }

    async _loop(url) {
      const live = this._live;
      while (this.readyState < 2) {
        let res, doc;
        try {
          this._ac = typeof AbortController === "function" ? new AbortController() : null;
          res = await live._fetch(url, { cache: "no-store", credentials: "same-origin", signal: this._ac && this._ac.signal });
          doc = JSON.parse(await res.text());
        } catch (err) {
          return this._end(1006, `poll: ${err && err.message || err}`);
        }
        if (this.readyState >= 2) return;
        if (!res.ok || doc.error || !Array.isArray(doc.frames)) {
          return this._end(res.status === 410 ? 1001 : 1011, `poll: ${[doc.error || `HTTP ${res.status}`, doc.reason].filter(Boolean).join(": ")}`);
        }
        this._session = doc.session;
        this._seq = doc.seq;
        if (this.readyState === 0) {
          this.readyState = 1;
          if (this.onopen) this.onopen({});
        }
        for (const f of doc.frames) {
          if (this.readyState !== 1) return;
          if (this.onmessage) this.onmessage({ data: f });
        }
        url = `${live._query("poll")}&session=${encodeURIComponent(this._session)}&since=${this._seq}`;
      }
    }

    send(text) {
      const f = JSON.parse(text);
      if (f.type !== "command" && f.type !== "history") return; // subscribe and resume: see above
      const live = this._live;
      const answer = (m) => { if (this.readyState === 1 && this.onmessage) this.onmessage({ data: m }); };
      live._fetch(`${live._query("command")}&session=${encodeURIComponent(this._session)}`, {
        method: "POST", cache: "no-store", credentials: "same-origin",
        headers: { "Content-Type": "application/json" }, body: text,
      }).then((res) => res.text().then((t) => {
        const m = JSON.parse(t);
        answer(m.type ? m : { type: "error", id: f.id, code: m.error || "failed", message: m.reason || `HTTP ${res.status}` });
      })).catch((err) => answer({ type: "error", id: f.id, code: "failed", message: `${f.type}: ${err && err.message || err}` }));
    }

    close(code, reason) {
      if (this.readyState >= 2) return;
      if (this._ac) this._ac.abort();
      this._end(code || 1000, reason || "");
    }

    _end(code, reason) {
      if (this.readyState === 3) return;
      this.readyState = 3;
      Promise.resolve().then(() => { if (this.onclose) this.onclose({ code, reason }); });
    }
  }

  const realTimers = {
    setTimeout: (f, ms) => setTimeout(f, ms),
    clearTimeout: (id) => clearTimeout(id),
    now: () => Date.now(),
    random: () => Math.random(),
  };

  // Live is one connection to a livecgi supervisor that reconnects by itself
  // until close() or a refusal by the stub. Options: stub (URL of live.cgi),
  // sensors (ids to subscribe to; all when empty), timeout (command
  // timeout, ms, 10000), minDelay/maxDelay (reconnect backoff, ms,
  // 500/30000), stableAfter (ms a connection must last to reset the
  // backoff, 10000), history (readings to ask the server to replay on
  // meeting a supervisor run, for charts; 0). fetch, WebSocket and timers
  // replace the browser's, for tests.
  class Live extends EventTarget {
    constructor(opts) {
      super();
      opts = opts || {};
      this.stub = absolute(opts.stub || defaultStub());
      this.state = "connecting";
      this.epoch = "";   // supervisor run of the last hello
      this.seq = 0;      // highest sequence number seen in this epoch
      this.server = "";
      this.values = new Map();   // sensor id → last reading
      this.sensors = new Map();  // sensor id → descriptor
      this.commands = new Map(); // command id → descriptor
      this.plugins = new Map();  // plugin id → {id, state, version, reason}
      this.alarms = new Map();   // alarm name → {name, sensor, state, severity, value, since, message}
      this._skew = null;   // device clock − this clock, ms, from live readings
      this._skewAt = 0;
      this._o = {
        timeout: opts.timeout || 10000, min: opts.minDelay || 500, budget: opts.budget || 3000,
        max: opts.maxDelay || 30000, stable: opts.stableAfter || 10000, history: opts.history || 0,
      };
      this._fetch = opts.fetch || ((u, o) => root.fetch(u, o));
      this._WS = opts.WebSocket || root.WebSocket;
      this._t = opts.timers || realTimers;
      this._sub = opts.sensors || [];
      this._pending = new Map(); // command or history id → {resolve, reject, timer, frame, what, sent}
      this._n = 0;
      this._watched = new Set(); // sensor ids of watch()
      this._warned = new Set();  // ids reported unknown since they were last listed
      this._attempt = 0;
      this._live = false;  // a connection was ever open: later attempts are "reconnecting"
      this._ws = null;
      this._probe = null;      // a faster transport being tried while live on a slower one
      this._faster = null;     // timer of the next such try
      this.transport = "";     // kind of the live transport
      this._timer = null;
      this._opened = 0;
      this._closed = false;
      this._online = () => { if (this._timer !== null) { this._t.clearTimeout(this._timer); this._run(); } };
      if (root.addEventListener) root.addEventListener("online", this._online);
      this._run();
    }

    // on calls fn(detail, event) for every event of type and returns a
    // function that removes the handler.
    on(type, fn) {
      const h = (ev) => fn(ev.detail, ev);
      this.addEventListener(type, h);
      return () => this.removeEventListener(type, h);
    }

    // watch calls fn(reading, event) for every reading of sensor id and
    // returns a function that removes the handler. An id the server does
    // not list gets an "unknown" event.
    watch(id, fn) {
      this._watched.add(id);
      if (this.epoch) Promise.resolve().then(() => this._check());
      return this.on("reading", (r, ev) => { if (r.sensor === id) fn(r, ev); });
    }

    // command sends a command (name is its id from hello, args an object)
    // and resolves with the result's value, or rejects with an Error whose
    // code is the wire error code, "failed" (the command itself failed),
    // "timeout", "closed" or "not_connected". A command made while a
    // connection attempt is under way is sent once connected, within the
    // same timeout; one made while waiting to reconnect fails at once.
    command(name, args, opts) {
      const frame = { type: "command", id: "c" + (++this._n), name, args: args || {} };
      return this._ask(frame, `command ${name}`, opts);
    }

    // history asks for the history livecgid records of sensor (record.<id>)
    // over [from, to] (Unix ms by the device's clock; to 0: now; from 0: an
    // hour before to) as at most points [t, min, avg, max] points (0: the
    // server's default, 300). It resolves with the history frame ({sensor,
    // from, to, points}) and rejects as command does, with code
    // "not_recorded" for a sensor livecgid does not record.
    history(sensor, opts) {
      const o = opts || {};
      const frame = { type: "history", id: "h" + (++this._n), sensor, from: o.from || 0, to: o.to || 0, points: o.points || 0 };
      return this._ask(frame, `history ${sensor}`, o);
    }

    // historyCSV is the stub's address of the CSV of sensor's history over
    // [from, to] (Unix ms, device clock), for a download link.
    historyCSV(sensor, from, to) {
      return `${this._query("history=" + encodeURIComponent(sensor))}&from=${Math.round(from || 0)}&to=${Math.round(to || 0)}`;
    }

    // now estimates the device's clock (Unix ms), which stamps readings,
    // alarms and history, from the readings received: pages compare
    // those times with it, not with the browser's clock.
    now() { return this._t.now() + (this._skew || 0); }

    // _ask sends frame, which carries an id, and settles with its answer:
    // see command.
    _ask(frame, what, opts) {
      const timeout = (opts && opts.timeout) || this._o.timeout;
      return new Promise((resolve, reject) => {
        if (this._closed) return reject(fail("closed", "connection closed"));
        if (this._timer !== null) return reject(this._notConnected(what));
        const p = { resolve, reject, frame, what };
        p.timer = this._t.setTimeout(() => {
          this._pending.delete(frame.id);
          reject(fail("timeout", `${what}: no answer in ${timeout} ms`));
        }, timeout);
        this._pending.set(frame.id, p);
        p.sent = this._send(frame);
      });
    }

    // subscribe limits readings to the given sensor ids (all when empty);
    // the choice is kept across reconnects.
    subscribe(sensors) {
      this._sub = sensors || [];
      this._send({ type: "subscribe", sensors: this._sub });
      if (this.epoch) this._check();
    }

    // close ends the connection for good and rejects pending commands.
    close() {
      this._closed = true;
      if (root.removeEventListener) root.removeEventListener("online", this._online);
      if (this._timer !== null) this._t.clearTimeout(this._timer);
      this._timer = null;
      if (this._faster !== null) this._t.clearTimeout(this._faster);
      const probe = this._probe;
      this._probe = null;
      if (probe) probe.close(1000, "client closed");
      const ws = this._ws;
      this._ws = null;
      if (ws) ws.close(1000, "client closed");
      this._rejectAll(false);
      this._setState("closed");
    }

    _emit(type, detail) { this.dispatchEvent(new CustomEvent(type, { detail })); }

    _setState(state, retryIn) {
      this.state = state;
      this._emit("state", { state, retryIn });
    }

    _send(frame) {
      if (!this._ws || this._ws.readyState !== 1) return false;
      this._ws.send(JSON.stringify(frame));
      return true;
    }

    _notConnected(what) {
      return fail("not_connected", `${what}: not connected (${this.state})`);
    }

    _rejectAll(sentOnly) {
      for (const [id, p] of this._pending) {
        if (sentOnly && !p.sent) continue;
        this._t.clearTimeout(p.timer);
        this._pending.delete(id);
        p.reject(fail("closed", "connection closed before the result"));
      }
    }

    // _query is the stub's URL asking for act.
    _query(act) { return this.stub + (this.stub.indexOf("?") < 0 ? "?" : "&") + act; }

    // _connect fetches a fresh connect document (new tokens each time).
    async _connect() {
      const ac = typeof AbortController === "function" ? new AbortController() : null;
      const abort = this._t.setTimeout(() => ac && ac.abort(), this._o.timeout);
      let res, text, doc;
      try {
        res = await this._fetch(this._query("connect"), { cache: "no-store", credentials: "same-origin", signal: ac && ac.signal });
        text = await res.text();
      } finally { this._t.clearTimeout(abort); }
      try { doc = JSON.parse(text); } catch (e) { throw new Error(`HTTP ${res.status}, not a connect document`); }
      if (!res.ok || doc.error) { // the stub answers {"error": code, "reason": text}
        const err = new Error([doc.error || `HTTP ${res.status}`, doc.reason].filter(Boolean).join(": "));
        // A 4xx from the stub is final for this page (another origin,
        // a bad request): retrying cannot change it.
        err.final = !!doc.error && res.status >= 400 && res.status < 500;
        throw err;
      }
      if (doc.protocol !== PROTOCOL || typeof doc.url !== "string") throw new Error(`unsupported protocol ${doc.protocol}`);
      return doc;
    }

    // _transports lists the connect document's transports this client
    // speaks (the plain url when it lists none), relative URLs resolved
    // against the stub's; unless all, starting at the one remembered if
    // the faster ones failed less than FASTER ago.
    _transports(doc, all) {
      let list = (Array.isArray(doc.transports) ? doc.transports : [])
        .filter((t) => t && KINDS.indexOf(t.kind) >= 0 && typeof t.url === "string")
        .map((t) => ({ kind: t.kind, url: this._absolute(t.kind, t.url) }));
      if (!list.length) list = [{ kind: "ws", url: doc.url }];
      this._fastest = list[0].kind;
      const m = all ? null : this._memory();
      const i = m ? list.findIndex((t) => t.kind === m.kind) : -1;
      if (i > 0 && this._t.now() - m.t < FASTER) list = list.slice(i);
      return list;
    }

    // _absolute resolves a transport's URL: "?…" against the stub's, a
    // poll's path against the stub's origin; a WebSocket's path against the
    // page's host, with the page's scheme made a WebSocket one.
    _absolute(kind, url) {
      if (url.charAt(0) === "?") url = this.stub + url;
      const loc = root.location;
      if (kind === "poll") return absolute(url, /^[a-z]+:/i.test(this.stub) ? this.stub : undefined);
      if (/^[a-z]+:/i.test(url) || !loc || !loc.host) return url;
      if (url.charAt(0) !== "/") url = loc.pathname.replace(/[^/]*$/, "") + url;
      return loc.protocol.replace("http", "ws") + "//" + loc.host + url;
    }

    _memory(kind, fastest) {
      const key = "livecgi.transport " + this.stub;
      try {
        const st = root.sessionStorage;
        if (!st) return null;
        if (kind === undefined) return JSON.parse(st.getItem(key) || "null");
        if (fastest) st.removeItem(key);
        else st.setItem(key, JSON.stringify({ kind, t: this._t.now() }));
      } catch (e) { /* storage disabled: nothing remembered */ }
      return null;
    }

    async _run() {
      this._timer = null;
      if (this._closed) return;
      this._setState(this._live ? "reconnecting" : "connecting");
      let doc;
      try {
        doc = await this._connect();
      } catch (err) {
        if (err && err.final) return this._refused(`connect: ${err.message}`);
        return this._failed(`connect: ${err && err.message || err}`);
      }
      if (this._closed) return;
      this._dial(this._transports(doc), 0, false);
    }

    // _dial tries list[i] and, if it brings no hello within 3 s (the
    // last one: the command timeout, to open), the next. A probe (a faster
    // transport tried while live) takes over only once it has its hello,
    // and fails quietly.
    _dial(list, i, probe) {
      const t = list[i], last = i === list.length - 1;
      let conn;
      try {
        conn = t.kind === "poll" ? new PollConn(t.url, this) : new this._WS(t.url, PROTOCOL);
      } catch (err) {
        if (!last) return this._dial(list, i + 1, probe);
        return probe ? this._fasterLater() : this._failed(`${t.kind}: ${err && err.message || err}`);
      }
      let hello = false;
      const mine = () => conn === (probe ? this._probe : this._ws);
      const next = () => { // give up on conn for the next transport
        conn.onclose = () => {};
        conn.close(1000, "trying another transport");
        if (probe) this._probe = null; else this._ws = null;
        if (!last) return this._dial(list, i + 1, probe);
        this._fasterLater(); // a probe: the slower transport stays
      };
      if (probe) this._probe = conn; else this._ws = conn;
      const guard = this._t.setTimeout(() => {
        if (!mine() || hello) return;
        if (!last || probe) return next();
        if (conn.readyState === 0) conn.close();
      }, last && !probe ? this._o.timeout : this._o.budget);
      conn.onopen = () => { if (!probe && conn === this._ws) this._onopen(); };
      conn.onmessage = (ev) => {
        if (!mine()) return;
        if (!hello) {
          hello = true;
          this._t.clearTimeout(guard);
          this._memory(t.kind, t.kind === this._fastest);
          if (probe) { // take over from the slower transport
            const old = this._ws;
            this._probe = null;
            this._ws = conn;
            if (old) { old.onclose = () => {}; old.close(1000, "a faster transport took over"); }
            this._onopen();
          }
          this.transport = t.kind;
          this._emit("transport", { transport: t.kind });
          if (t.kind !== this._fastest) this._fasterLater();
        }
        this._onmessage(ev.data);
      };
      conn.onclose = (ev) => {
        this._t.clearTimeout(guard);
        if (!mine()) return;
        if (!hello && (probe || !last)) return next();
        this._onclose(ev);
      };
    }

    // _fasterLater tries the transports faster than the live one again in
    // FASTER, in the background; the live one stays until one has its
    // hello.
    _fasterLater() {
      if (this._faster !== null) this._t.clearTimeout(this._faster);
      this._faster = this._t.setTimeout(async () => {
        this._faster = null;
        if (this._closed || this.state !== "live" || this._probe) return;
        let doc;
        try { doc = await this._connect(); } catch (e) { return this._fasterLater(); }
        if (this._closed || this.state !== "live" || this._probe) return;
        const list = this._transports(doc, true);
        const upto = list.findIndex((x) => x.kind === this.transport);
        if (upto > 0) this._dial(list.slice(0, upto), 0, true);
      }, FASTER);
    }

    _failed(message) {
      if (this._closed) return;
      this._emit("error", { code: "connect", message });
      this._retry();
    }

    _refused(message) {
      if (this._closed) return;
      this._emit("error", { code: "refused", message });
      this.close();
    }

    _retry() {
      const delay = backoff(this._attempt++, this._o.min, this._o.max, () => this._t.random());
      this._timer = this._t.setTimeout(() => this._run(), delay);
      this._setState(this._live ? "reconnecting" : "connecting", delay);
      for (const [id, p] of this._pending) { // not sent: no attempt under way until the timer
        this._t.clearTimeout(p.timer);
        this._pending.delete(id);
        p.reject(this._notConnected(p.what));
      }
      return delay;
    }

    _onopen() {
      this._opened = this._t.now();
      this._live = true;
      // subscribe first: the server filters the replay by the subscription.
      if (this._sub.length) this._send({ type: "subscribe", sensors: this._sub });
      if (this.epoch) this._send({ type: "resume", epoch: this.epoch, seq: this.seq });
      for (const p of this._pending.values()) if (!p.sent) p.sent = this._send(p.frame);
      this._emit("open", {});
    }

    _onclose(ev) {
      this._ws = null;
      if (this._opened && this._t.now() - this._opened >= this._o.stable) this._attempt = 0;
      this._opened = 0;
      this._rejectAll(true);
      if (this._closed) return;
      const retryIn = this._retry();
      this._emit("close", { code: ev.code, reason: ev.reason || "", retryIn });
    }

    _onmessage(data) {
      let m = data; // a poll's frames come decoded
      if (typeof data === "string") try { m = JSON.parse(data); } catch (e) { return this._emit("error", { code: "bad_frame", message: "server sent invalid JSON" }); }
      switch (m.type) {
        case "hello": return this._hello(m);
        case "snapshot": return this._snapshot(m);
        case "reading":
          if (m.seq > this.seq) this.seq = m.seq;
          this._clock(m.t, false);
          return this._apply(m, false);
        case "alarm": return this._alarm(m);
        case "history": {
          const p = this._settle(m.id);
          return p && p.resolve(m);
        }
        case "status": {
          const p = Object.assign(this.plugins.get(m.plugin) || { id: m.plugin }, { state: m.state, reason: m.reason || "" });
          if (m.version) p.version = m.version;
          this.plugins.set(m.plugin, p);
          return this._emit("status", m);
        }
        case "result": {
          const p = this._settle(m.id);
          if (p) m.ok ? p.resolve(m.value) : p.reject(fail("failed", m.error || "command failed"));
          return this._emit("result", m);
        }
        case "error": {
          const p = m.id && this._settle(m.id);
          if (p) return p.reject(fail(m.code, m.message));
          return this._emit("error", { code: m.code, message: m.message, id: m.id });
        }
      } // unknown types are ignored: newer servers may add some
    }

    _settle(id) {
      const p = this._pending.get(id);
      if (!p) return null; // timed out already
      this._pending.delete(id);
      this._t.clearTimeout(p.timer);
      return p;
    }

    _hello(m) {
      if (m.epoch !== this.epoch) { // a new supervisor run: its sequence numbers start over
        this.epoch = m.epoch;
        this.seq = 0;
        this.values.clear();
        // Ask for the history the server keeps: a replay, or a full
        // snapshot when it does not reach back that far.
        if (this._o.history && m.seq > 0) this._send({ type: "resume", epoch: m.epoch, seq: Math.max(0, m.seq - this._o.history) });
      }
      this.server = m.server || "";
      this.user = m.user || null; // {name, role}: who the token was minted for
      this.sensors = new Map((m.sensors || []).map((s) => [s.id, s]));
      this.commands = new Map((m.commands || []).map((c) => [c.id, c]));
      this.plugins = new Map((m.plugins || []).map((p) => [p.id, Object.assign({}, p)]));
      for (const id of this.values.keys()) if (!this.sensors.has(id)) this.values.delete(id);
      if (this.state !== "live") this._setState("live");
      this._emit("hello", m);
      this._check();
    }

    // _check reports, once until they are listed, the watched and
    // subscribed sensors that hello does not list, unless their plugin is
    // still starting (a later hello lists its sensors).
    _check() {
      for (const id of new Set([...this._watched, ...this._sub])) {
        if (this.sensors.has(id)) { this._warned.delete(id); continue; }
        const p = this.plugins.get(id.split(".")[0]);
        if (this._warned.has(id) || (p && p.state === "starting")) continue;
        this._warned.add(id);
        const message = `livecgi: sensor "${id}" is not on this device (${this.sensors.size} sensors listed)`;
        if (root.console) root.console.warn(message);
        this._emit("unknown", { sensor: id, message });
      }
    }

    // _snapshot applies a full snapshot as the new truth, and the readings
    // of a replay only where they are newer than what the client holds.
    _snapshot(m) {
      const full = m.mode !== "replay";
      if (full) this.values.clear();
      if (m.seq > this.seq) this.seq = m.seq;
      const rs = m.readings || [];
      if (rs.length) this._clock(Math.max(...rs.map((r) => r.t)), true);
      for (const r of rs) this._apply(Object.assign({ type: "reading" }, r), full);
      // Every snapshot lists every alarm: the new truth. An alarm that
      // moved while the page was away shows as a transition.
      const old = this.alarms;
      this.alarms = new Map();
      for (const a of m.alarms || []) {
        this.alarms.set(a.name, a);
        const o = old.get(a.name);
        if (o && (o.state !== a.state || o.since !== a.since)) this._emit("alarm", Object.assign({ type: "alarm" }, a));
      }
      this._emit("snapshot", m);
    }

    // _alarm applies an alarm frame: a transition, unless it repeats the
    // state held (a snapshot told it first).
    _alarm(a) {
      const o = this.alarms.get(a.name);
      if (o && o.state === a.state && o.since === a.since) return;
      this.alarms.set(a.name, a);
      this._emit("alarm", a);
    }

    // _clock learns the device's clock from a reading's time t: the
    // device read it before this client got it, so the largest difference
    // seen is the closest (kept for a minute, to follow a clock that is
    // set). A snapshot's newest reading may be old: it only serves until
    // a live one comes.
    _clock(t, weak) {
      if (typeof t !== "number" || (weak && this._skew !== null)) return;
      const now = this._t.now(), skew = t - now;
      if (this._skew === null || skew > this._skew || now - this._skewAt > 60000) {
        this._skew = skew;
        this._skewAt = weak ? 0 : now;
      }
    }

    _apply(r, force) {
      const cur = this.values.get(r.sensor);
      if (!force && cur && cur.seq >= r.seq) return;
      this.values.set(r.sensor, r);
      this._emit("reading", r);
    }
  }

  const LiveCGI = { PROTOCOL, Live, backoff, connect: (opts) => new Live(opts) };
  root.LiveCGI = LiveCGI;
  if (typeof module === "object" && module.exports) module.exports = LiveCGI;
})(typeof globalThis !== "undefined" ? globalThis : this);
