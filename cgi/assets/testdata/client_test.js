// Unit tests of client.js under node: the reconnect backoff, the resume
// bookkeeping and command promises, driven by a fake clock, a fake fetch and
// a fake WebSocket. Run by TestClientLogic in assets_test.go, or by hand:
//   node cgi/assets/testdata/client_test.js
"use strict";
const test = require("node:test");
const assert = require("node:assert/strict");
const path = require("node:path");
const LiveCGI = require(path.join(__dirname, "..", "client.js"));

// Clock is a fake of setTimeout/clearTimeout/Date.now/Math.random: time
// moves only with advance().
class Clock {
  constructor() { this.t = 1000000; this.timers = new Map(); this.n = 0; this.rnd = 0.5; }
  now() { return this.t; }
  random() { return this.rnd; }
  setTimeout(f, ms) { const id = ++this.n; this.timers.set(id, { at: this.t + ms, f }); return id; }
  clearTimeout(id) { this.timers.delete(id); }
  // advance runs every timer due within ms, in time order.
  async advance(ms) {
    const end = this.t + ms;
    for (;;) {
      await settle();
      let next = null;
      for (const [id, tm] of this.timers) if (tm.at <= end && (!next || tm.at < next[1].at)) next = [id, tm];
      if (!next) break;
      this.timers.delete(next[0]);
      this.t = next[1].at;
      next[1].f();
    }
    this.t = end;
    await settle();
  }
}

// settle lets pending promise callbacks run.
function settle() { return new Promise((r) => setImmediate(r)); }

// Harness wires a Live to a fake stub and fake sockets.
function harness(opts, stub) {
  const h = { clock: new Clock(), sockets: [], fetches: [], stub: Object.assign({ status: 200, fail: null }, stub), events: [] };
  if (stub && stub.rnd !== undefined) h.clock.rnd = stub.rnd;
  class FakeWS {
    constructor(url, protocol) {
      this.url = url; this.protocol = protocol; this.readyState = 0; this.sent = [];
      h.sockets.push(this);
    }
    send(s) { assert.equal(this.readyState, 1, "send on a socket that is not open"); this.sent.push(JSON.parse(s)); }
    close(code, reason) { if (this.readyState === 3) return; this.readyState = 3; this.closedWith = code; queueMicrotask(() => this.onclose({ code: code || 1006, reason: reason || "" })); }
    // server side
    open() { this.readyState = 1; this.onopen({}); }
    recv(m) { this.onmessage({ data: typeof m === "string" ? m : JSON.stringify(m) }); }
    drop(code, reason) { this.readyState = 3; this.onclose({ code, reason: reason || "" }); }
  }
  const fetch = async (url, init) => {
    h.fetches.push({ url, init });
    if (h.stub.fail) throw new Error(h.stub.fail);
    const n = h.fetches.length;
    const body = h.stub.status === 200
      ? { url: `ws://127.0.0.1:8081/live?token=t${n}`, token: `t${n}`, expires: 0, protocol: "livecgi.v1" }
      : h.stub.body || { error: "supervisor_unavailable", reason: "start /usr/sbin/livecgid: permission denied" };
    return { ok: h.stub.status === 200, status: h.stub.status, text: async () => JSON.stringify(body) };
  };
  h.live = LiveCGI.connect(Object.assign({ stub: "/cgi-bin/live.cgi", fetch, WebSocket: FakeWS, timers: h.clock }, opts));
  for (const type of ["state", "open", "hello", "snapshot", "reading", "status", "result", "error", "close", "unknown", "alarm"]) {
    h.live.on(type, (d) => h.events.push([type, d]));
  }
  h.ws = () => h.sockets[h.sockets.length - 1];
  h.of = (type) => h.events.filter((e) => e[0] === type).map((e) => e[1]);
  return h;
}

const hello = (epoch, seq, extra) => Object.assign({
  type: "hello", version: 1, server: "test", epoch, seq,
  sensors: [
    { id: "system.load1", plugin: "system", title: "Load", value_type: "number", interval_ms: 1000 },
    { id: "system.uptime_seconds", plugin: "system", title: "Uptime", unit: "s", value_type: "number", interval_ms: 1000 },
  ],
  commands: [{ id: "leds.set", plugin: "leds", title: "Set LED", args: [{ name: "on", type: "bool" }] }],
  plugins: [{ id: "leds", state: "online" }, { id: "system", state: "online" }],
}, extra);
const reading = (sensor, value, seq) => ({ type: "reading", sensor, value, seq, t: seq });

// connected returns a harness whose client got hello and a full snapshot.
async function connected(opts) {
  const h = harness(opts);
  await settle();
  h.ws().open();
  h.ws().recv(hello("e1", 10));
  h.ws().recv({ type: "snapshot", mode: "full", seq: 10, readings: [{ sensor: "system.load1", value: 0.5, seq: 9, t: 9 }] });
  return h;
}

test("backoff doubles from min to max with equal jitter", () => {
  const d = (n, r) => LiveCGI.backoff(n, 500, 30000, () => r);
  assert.deepEqual([0, 1, 2, 3, 6, 7, 100].map((n) => d(n, 1)), [500, 1000, 2000, 4000, 30000, 30000, 30000]);
  assert.deepEqual([0, 1, 6].map((n) => d(n, 0)), [250, 500, 15000]);
});

test("connect fetches a fresh connect document and dials its url with the subprotocol", async () => {
  const h = harness();
  await settle();
  assert.equal(h.fetches.length, 1);
  assert.equal(h.fetches[0].url, "/cgi-bin/live.cgi?connect");
  assert.equal(h.fetches[0].init.cache, "no-store");
  assert.equal(h.ws().url, "ws://127.0.0.1:8081/live?token=t1");
  assert.equal(h.ws().protocol, "livecgi.v1");
  assert.equal(h.live.state, "connecting");
  h.ws().open();
  assert.deepEqual(h.ws().sent, [], "a first connection sends no resume");
  h.ws().recv(hello("e1", 3));
  assert.equal(h.live.state, "live");
  assert.deepEqual([...h.live.sensors.keys()], ["system.load1", "system.uptime_seconds"]);
  assert.equal(h.live.plugins.get("leds").state, "online");
});

test("a stub URL with a query gets &connect", async () => {
  const h = harness({ stub: "/cgi-bin/live.cgi?x=1" });
  await settle();
  assert.equal(h.fetches[0].url, "/cgi-bin/live.cgi?x=1&connect");
});

test("snapshot and readings fill values; stale readings are ignored", async () => {
  const h = await connected();
  assert.equal(h.live.values.get("system.load1").value, 0.5);
  h.ws().recv(reading("system.load1", 0.7, 11));
  h.ws().recv(reading("system.load1", 0.6, 11)); // duplicate sequence
  assert.equal(h.live.values.get("system.load1").value, 0.7);
  assert.equal(h.live.seq, 11);
  assert.deepEqual(h.of("reading").map((r) => r.value), [0.5, 0.7]);
  assert.equal(h.of("snapshot").length, 1);
});

test("reconnect sends resume with the epoch and last sequence, then merges the replay", async () => {
  const h = await connected();
  h.ws().recv(reading("system.load1", 0.7, 11));
  h.ws().recv(reading("system.uptime_seconds", 100, 12));
  h.ws().drop(1001, "going away");
  assert.equal(h.live.state, "reconnecting");
  const close = h.of("close")[0];
  assert.equal(close.code, 1001);
  assert.equal(close.retryIn, 375); // 500 ms, jitter 0.5
  await h.clock.advance(374);
  assert.equal(h.fetches.length, 1, "no attempt before the backoff delay");
  await h.clock.advance(1);
  assert.equal(h.fetches.length, 2, "each attempt fetches a fresh token");
  assert.equal(h.ws().url, "ws://127.0.0.1:8081/live?token=t2");
  h.ws().open();
  assert.deepEqual(h.ws().sent, [{ type: "resume", epoch: "e1", seq: 12 }]);
  h.ws().recv(hello("e1", 14));
  h.ws().recv({ type: "snapshot", mode: "full", seq: 14, readings: [
    { sensor: "system.load1", value: 0.9, seq: 14, t: 14 }, { sensor: "system.uptime_seconds", value: 101, seq: 13, t: 13 }] });
  h.ws().recv({ type: "snapshot", mode: "replay", seq: 14, readings: [
    { sensor: "system.uptime_seconds", value: 101, seq: 13, t: 13 }, { sensor: "system.load1", value: 0.9, seq: 14, t: 14 }] });
  assert.equal(h.live.values.get("system.load1").value, 0.9);
  assert.equal(h.live.values.get("system.uptime_seconds").value, 101);
  assert.equal(h.live.seq, 14);
  assert.deepEqual(h.of("snapshot").map((s) => s.mode), ["full", "full", "replay"]);
  h.ws().recv(reading("system.load1", 1.1, 15));
  assert.equal(h.live.seq, 15);
  assert.equal(h.live.values.get("system.load1").value, 1.1);
});

test("a new epoch resets the sequence and the values", async () => {
  const h = await connected();
  h.ws().recv(reading("system.uptime_seconds", 100, 50));
  h.ws().drop(1006);
  await h.clock.advance(500);
  h.ws().open();
  assert.deepEqual(h.ws().sent, [{ type: "resume", epoch: "e1", seq: 50 }]);
  h.ws().recv(hello("e2", 2));
  assert.equal(h.live.epoch, "e2");
  assert.equal(h.live.seq, 0);
  assert.equal(h.live.values.size, 0);
  h.ws().recv({ type: "snapshot", mode: "full", reason: "unknown epoch", seq: 2, readings: [{ sensor: "system.load1", value: 0.1, seq: 2, t: 2 }] });
  h.ws().recv(reading("system.uptime_seconds", 1, 3)); // lower than 50 of the old epoch: applied
  assert.equal(h.live.values.get("system.uptime_seconds").value, 1);
  assert.equal(h.live.seq, 3);
});

test("reconnect delays double with every failure and cap at maxDelay", async () => {
  const h = harness({ maxDelay: 4000 }, { status: 503, rnd: 1 });
  await settle();
  const delays = () => h.of("state").filter((s) => s.retryIn).map((s) => s.retryIn);
  for (let i = 0; i < 5; i++) await h.clock.advance(delays().pop());
  assert.deepEqual(delays(), [500, 1000, 2000, 4000, 4000, 4000]);
  assert.equal(h.fetches.length, 6);
  const errs = h.of("error");
  assert.equal(errs[0].code, "connect");
  assert.equal(errs[0].message, "connect: supervisor_unavailable: start /usr/sbin/livecgid: permission denied");
  assert.equal(h.live.state, "connecting", "never connected yet");
});

test("a fetch that throws is retried too", async () => {
  const h = harness({}, { fail: "NetworkError" });
  await settle();
  assert.match(h.of("error")[0].message, /connect: NetworkError/);
  h.stub.fail = null;
  await h.clock.advance(h.of("state").pop().retryIn);
  assert.equal(h.sockets.length, 1);
});

test("the backoff resets after a stable connection only", async () => {
  const h = harness({ stableAfter: 10000 }, { status: 503, rnd: 1 });
  await settle();
  await h.clock.advance(500);
  await h.clock.advance(1000); // three failures: 500, 1000, 2000
  h.stub.status = 200;
  await h.clock.advance(2000);
  h.ws().open();
  await h.clock.advance(9999);
  h.ws().drop(1006); // short-lived: backoff goes on
  assert.equal(h.of("close").pop().retryIn, 4000);
  await h.clock.advance(4000);
  h.ws().open();
  await h.clock.advance(10000);
  h.ws().drop(1006); // stable: backoff starts over
  assert.equal(h.of("close").pop().retryIn, 500);
});

test("a socket that never opens is closed and retried", async () => {
  const h = harness({ timeout: 3000 });
  await settle();
  const ws = h.ws();
  await h.clock.advance(3000);
  assert.equal(ws.readyState, 3);
  assert.equal(h.of("close").length, 1);
});

test("command resolves with the result value", async () => {
  const h = await connected();
  const p = h.live.command("leds.set", { on: true });
  const sent = h.ws().sent.pop();
  assert.deepEqual(sent, { type: "command", id: sent.id, name: "leds.set", args: { on: true } });
  h.ws().recv({ type: "result", id: sent.id, ok: true, value: { on: true } });
  assert.deepEqual(await p, { on: true });
});

test("command rejects with the command's error or the server's error code", async () => {
  const h = await connected();
  const p1 = h.live.command("leds.set", { on: true });
  const p2 = h.live.command("leds.set", { on: 3 });
  const [c1, c2] = h.ws().sent.slice(-2);
  assert.notEqual(c1.id, c2.id);
  h.ws().recv({ type: "result", id: c1.id, ok: false, error: "led is busy" });
  h.ws().recv({ type: "error", id: c2.id, code: "bad_args", message: "on: want bool" });
  await assert.rejects(p1, { code: "failed", message: "led is busy" });
  await assert.rejects(p2, { code: "bad_args", message: "on: want bool" });
  assert.equal(h.of("error").length, 0, "errors of commands go to their promise");
  h.ws().recv({ type: "error", code: "rate_limited", message: "slow down" });
  assert.deepEqual(h.of("error")[0], { code: "rate_limited", message: "slow down", id: undefined });
});

test("command times out after 10 s by default, and a late result is ignored", async () => {
  const h = await connected();
  let err = null;
  const p = h.live.command("leds.set", {}).catch((e) => { err = e; });
  const id = h.ws().sent.pop().id;
  await h.clock.advance(9999);
  assert.equal(err, null);
  await h.clock.advance(1);
  await p;
  assert.equal(err.code, "timeout");
  h.ws().recv({ type: "result", id, ok: true, value: 1 });
  assert.equal(h.of("result").length, 1);
  let err2 = null;
  h.live.command("leds.set", {}, { timeout: 50 }).catch((e) => { err2 = e; });
  await h.clock.advance(50);
  assert.equal(err2.code, "timeout");
});

test("a command made while disconnected is sent once connected; one in flight fails on close", async () => {
  const h = harness();
  const early = h.live.command("leds.set", { on: false });
  await settle();
  h.ws().open();
  const sent = h.ws().sent[0];
  assert.equal(sent.type, "command");
  const inflight = h.live.command("leds.set", { on: true });
  h.ws().recv({ type: "result", id: sent.id, ok: true, value: "ok" });
  assert.equal(await early, "ok");
  h.ws().drop(1006);
  await assert.rejects(inflight, { code: "closed" });
});

test("subscribe is kept across reconnects", async () => {
  const h = await connected({ sensors: ["system.load1"] });
  assert.deepEqual(h.ws().sent, [{ type: "subscribe", sensors: ["system.load1"] }]);
  h.live.subscribe(["system.uptime_seconds"]);
  h.ws().drop(1006);
  await h.clock.advance(500);
  h.ws().open();
  assert.deepEqual(h.ws().sent, [
    { type: "subscribe", sensors: ["system.uptime_seconds"] },
    { type: "resume", epoch: "e1", seq: 10 },
  ]);
});

test("a second hello updates descriptors and drops values of removed sensors", async () => {
  const h = await connected();
  h.ws().recv(reading("system.uptime_seconds", 5, 11));
  const next = hello("e1", 11, { sensors: [{ id: "system.load1", plugin: "system", title: "Load", value_type: "number", interval_ms: 1000 }] });
  h.ws().recv(next);
  assert.equal(h.of("hello").length, 2);
  assert.deepEqual([...h.live.values.keys()], ["system.load1"]);
  assert.equal(h.live.seq, 11, "same epoch keeps the sequence");
});

test("status updates the plugin table", async () => {
  const h = await connected();
  h.ws().recv({ type: "status", plugin: "system", state: "swapped", version: "2", previous_version: "1", t: 1 });
  assert.deepEqual(h.live.plugins.get("system"), { id: "system", state: "swapped", reason: "", version: "2" });
  assert.equal(h.of("status")[0].previous_version, "1");
});

test("an invalid frame is reported and the connection goes on", async () => {
  const h = await connected();
  h.ws().recv("{nope");
  assert.equal(h.of("error")[0].code, "bad_frame");
  h.ws().recv({ type: "future_thing" });
  h.ws().recv(reading("system.load1", 2, 20));
  assert.equal(h.live.values.get("system.load1").value, 2);
});

test("close stops reconnecting and rejects pending commands", async () => {
  const h = await connected();
  const p = h.live.command("leds.set", {});
  h.live.close();
  await assert.rejects(p, { code: "closed" });
  await assert.rejects(h.live.command("leds.set", {}), { code: "closed" });
  assert.equal(h.sockets[0].closedWith, 1000);
  await h.clock.advance(120000);
  assert.equal(h.fetches.length, 1);
  assert.equal(h.live.state, "closed");
});

test("the stub defaults to the URL client.js was loaded from, else the page's path", async () => {
  const fs = require("node:fs");
  const vm = require("node:vm");
  const src = fs.readFileSync(path.join(__dirname, "..", "client.js"), "utf8");
  const load = (document) => {
    const ctx = { document, location: { pathname: "/cgi-bin/live.cgi" }, EventTarget, CustomEvent };
    vm.runInNewContext(src, ctx);
    const h = { clock: new Clock() };
    const never = () => new Promise(() => {});
    return ctx.LiveCGI.connect({ fetch: never, WebSocket: class {}, timers: h.clock }).stub;
  };
  assert.equal(load({ currentScript: { src: "http://dev.local/cgi-bin/x.cgi?client.js&v=3" } }), "http://dev.local/cgi-bin/x.cgi");
  assert.equal(load({ currentScript: { src: "" } }), "/cgi-bin/live.cgi"); // inlined in the dashboard
  assert.equal(load({ currentScript: { src: "http://dev.local/js/app.js" } }), "/cgi-bin/live.cgi");
});

// warnings collects what fn writes with console.warn.
async function warnings(fn) {
  const got = [], warn = console.warn;
  console.warn = (m) => got.push(m);
  try { await fn(); } finally { console.warn = warn; }
  return got;
}

test("watch calls its handler for its sensor only", async () => {
  const h = await connected();
  const got = [];
  h.live.watch("system.uptime_seconds", (r) => got.push(r.value));
  h.ws().recv(reading("system.load1", 0.7, 11));
  h.ws().recv(reading("system.uptime_seconds", 100, 12));
  assert.deepEqual(got, [100]);
});

test("a watched or subscribed sensor the hello does not list is reported once, with a console warning", async () => {
  let h;
  const warned = await warnings(async () => {
    h = harness({ sensors: ["system.load1", "system.nope"] });
    h.live.watch("system.thermal_zone0_celsius", () => {});
    await settle();
    h.ws().open();
    h.ws().recv(hello("e1", 10));
    h.ws().recv(hello("e1", 11)); // again: no new report
    h.live.watch("system.load1", () => {}); // listed: nothing
    h.live.watch("other.x", () => {}); // after hello: reported too
    await settle();
  });
  assert.deepEqual(h.of("unknown").map((u) => u.sensor), ["system.thermal_zone0_celsius", "system.nope", "other.x"]);
  assert.match(h.of("unknown")[0].message, /sensor "system.thermal_zone0_celsius" is not on this device \(2 sensors listed\)/);
  assert.deepEqual(warned, h.of("unknown").map((u) => u.message));
});

test("a sensor of a plugin still starting is reported only if its plugin's hello lacks it", async () => {
  const h = harness();
  h.live.watch("gpio.pin1", () => {});
  h.live.watch("gpio.pin2", () => {});
  await settle();
  h.ws().open();
  await warnings(async () => {
    h.ws().recv(hello("e1", 10, { plugins: [{ id: "gpio", state: "starting" }] }));
    assert.equal(h.of("unknown").length, 0);
    const pin1 = { id: "gpio.pin1", plugin: "gpio", title: "Pin 1", value_type: "bool", interval_ms: 1000 };
    h.ws().recv(hello("e1", 11, { plugins: [{ id: "gpio", state: "online" }], sensors: [pin1] }));
  });
  assert.deepEqual(h.of("unknown").map((u) => u.sensor), ["gpio.pin2"]);
});

test("a command while waiting to reconnect fails at once; one waiting for a failed attempt fails with it", async () => {
  const h = await connected();
  h.ws().drop(1006);
  assert.equal(h.live.state, "reconnecting");
  await assert.rejects(h.live.command("leds.set", {}), { code: "not_connected", message: "command leds.set: not connected (reconnecting)" });
  assert.equal(h.fetches.length, 1, "rejected before any new attempt");

  const h2 = harness({}, { status: 503 });
  // The first attempt is under way: the command waits for it, and fails with it.
  const rejected = assert.rejects(h2.live.command("leds.set", {}), { code: "not_connected" });
  await settle();
  await rejected;
  assert.equal(h2.fetches.length, 1);
});

test("a refusal by the stub (4xx) is reported and ends the connection; a 503 is retried", async () => {
  const h = harness({}, { status: 403, body: { error: "cross_site", reason: "cross-site request: page origin \"http://a\" is not on host b" } });
  await settle();
  await h.clock.advance(600000);
  assert.equal(h.fetches.length, 1, "no retry after a refusal");
  assert.equal(h.live.state, "closed");
  assert.deepEqual(h.of("error"), [{ code: "refused", message: 'connect: cross_site: cross-site request: page origin "http://a" is not on host b' }]);
  await assert.rejects(h.live.command("leds.set", {}), { code: "closed" });

  const h2 = harness({}, { status: 503 });
  await settle();
  await h2.clock.advance(600000);
  assert.ok(h2.fetches.length > 1, `503: ${h2.fetches.length} attempts`);
  assert.equal(h2.live.state, "connecting");
});

test("history asks for a replay of the last readings on meeting a supervisor run", async () => {
  const h = harness({ history: 100 });
  await settle();
  h.ws().open();
  h.ws().recv(hello("e1", 500));
  assert.deepEqual(h.ws().sent, [{ type: "resume", epoch: "e1", seq: 400 }]);
  h.ws().recv({ type: "snapshot", mode: "full", seq: 500, readings: [] });
  h.ws().recv(hello("e1", 501)); // same run: nothing more to ask
  assert.equal(h.ws().sent.length, 1);
  h.ws().drop(1006);
  await h.clock.advance(500);
  h.ws().open();
  h.ws().recv(hello("e2", 30)); // a new run: ask again, from its start
  assert.deepEqual(h.ws().sent, [{ type: "resume", epoch: "e1", seq: 500 }, { type: "resume", epoch: "e2", seq: 0 }]);
});

// transports is a harness whose stub lists ws and poll: the WebSocket
// never opens unless the test opens it; polls are answered by the test
// (h.polls: {url, init, resolve(status, body)}).
function transports(opts) {
  const store = new Map();
  globalThis.sessionStorage = { getItem: (k) => store.has(k) ? store.get(k) : null, setItem: (k, v) => store.set(k, String(v)), removeItem: (k) => store.delete(k) };
  const polls = [];
  let n = 0;
  const fetch = async (url, init) => {
    if (url.endsWith("?connect")) {
      n++;
      const body = { url: `ws://dev:8081/live?token=w${n}`, token: `w${n}`, expires: 0, protocol: "livecgi.v1",
        transports: [{ kind: "ws", url: `ws://dev:8081/live?token=w${n}` }, { kind: "poll", url: `/cgi-bin/live.cgi?poll&token=p${n}` }] };
      return { ok: true, status: 200, text: async () => JSON.stringify(body) };
    }
    return new Promise((resolve) => polls.push({ url, init, resolve: (status, body) => resolve({ ok: status === 200, status, text: async () => JSON.stringify(body) }) }));
  };
  const h = harness(Object.assign({ fetch }, opts));
  h.polls = polls;
  h.store = store;
  return h;
}

test("a WebSocket with no hello in 3 s gives way to long polling, which is remembered", async () => {
  const h = transports();
  await settle();
  assert.equal(h.sockets.length, 1);
  assert.equal(h.polls.length, 0);
  await h.clock.advance(2999);
  assert.equal(h.polls.length, 0, "poll tried before the WebSocket's 3 s");
  await h.clock.advance(1);
  assert.equal(h.ws().readyState, 3, "the WebSocket was not closed");
  assert.equal(h.polls.length, 1);
  assert.equal(h.polls[0].url, "/cgi-bin/live.cgi?poll&token=p1");
  h.polls[0].resolve(200, { session: "S", seq: 10, frames: [hello("e1", 10), { type: "snapshot", mode: "full", seq: 10, readings: [] }] });
  await settle();
  assert.equal(h.live.state, "live");
  assert.equal(h.live.transport, "poll");
  assert.equal(JSON.parse(h.store.get("livecgi.transport /cgi-bin/live.cgi")).kind, "poll");
  // The next poll carries the session and the sequence number.
  assert.equal(h.polls[1].url, "/cgi-bin/live.cgi?poll&session=S&since=10");
  h.polls[1].resolve(200, { session: "S", seq: 12, frames: [reading("system.load1", 0.7, 12)] });
  await settle();
  assert.equal(h.live.values.get("system.load1").value, 0.7);
  assert.equal(h.polls[2].url, "/cgi-bin/live.cgi?poll&session=S&since=12");

  // A command is a POST answered with its result.
  const done = h.live.command("leds.set", { on: true });
  await settle();
  const post = h.polls[3];
  assert.equal(post.url, "/cgi-bin/live.cgi?command&session=S");
  assert.equal(post.init.method, "POST");
  assert.deepEqual(JSON.parse(post.init.body), { type: "command", id: "c1", name: "leds.set", args: { on: true } });
  post.resolve(200, { type: "result", id: "c1", ok: true, value: 1 });
  assert.equal(await done, 1);

  // The session gone (a restarted supervisor): reconnect, straight to
  // polling since it was remembered.
  h.polls[2].resolve(410, { error: "session_expired", reason: "gone" });
  await settle();
  assert.equal(h.live.state, "reconnecting");
  const sockets = h.sockets.length;
  await h.clock.advance(500);
  assert.equal(h.sockets.length, sockets, "a remembered fallback tried the WebSocket again");
  assert.equal(h.polls[4].url, "/cgi-bin/live.cgi?poll&token=p2");
});

test("after 5 minutes on long polling the WebSocket is tried again in the background and takes over", async () => {
  const h = transports();
  await settle();
  await h.clock.advance(3000);
  h.polls[0].resolve(200, { session: "S", seq: 10, frames: [hello("e1", 10), { type: "snapshot", mode: "full", seq: 10, readings: [] }] });
  await settle();
  assert.equal(h.live.transport, "poll");
  const states = h.of("state").length;
  await h.clock.advance(5 * 60 * 1000);
  assert.equal(h.sockets.length, 2, "no background try of the WebSocket");
  assert.equal(h.ws().url, "ws://dev:8081/live?token=w2");
  assert.equal(h.live.transport, "poll", "the poll gave way before the WebSocket had its hello");
  h.ws().open();
  h.ws().recv(hello("e1", 12));
  assert.equal(h.live.transport, "ws");
  assert.equal(h.live.state, "live");
  assert.equal(h.of("state").length, states, "the switch showed as a reconnect");
  assert.deepEqual(h.ws().sent, [{ type: "resume", epoch: "e1", seq: 10 }]);
  assert.equal(h.store.get("livecgi.transport /cgi-bin/live.cgi"), undefined, "the fallback is still remembered");
  // The poll's answer, if any, is ignored now.
  h.polls[1].resolve(200, { session: "S", seq: 13, frames: [reading("system.load1", 9, 13)] });
  await settle();
  assert.equal(h.live.values.get("system.load1"), undefined);
});

test("a same-port transport's path is dialled on the page's host with the page's scheme", async () => {
  globalThis.location = { protocol: "https:", host: "dev:8443", pathname: "/cgi-bin/live.cgi" };
  try {
    const fetch = async (url) => ({ ok: true, status: 200, text: async () => JSON.stringify({ url: "ws://dev:8081/live?token=w", token: "w", expires: 0, protocol: "livecgi.v1",
      transports: [{ kind: "same-port", url: "/cgi-bin/nph-live.cgi?ws&token=s" }, { kind: "ws", url: "ws://dev:8081/live?token=w" }, { kind: "bogus", url: "x" }] }) });
    const h = harness({ fetch });
    await settle();
    assert.equal(h.ws().url, "wss://dev:8443/cgi-bin/nph-live.cgi?ws&token=s");
    h.ws().open();
    h.ws().recv(hello("e1", 1));
    assert.equal(h.live.transport, "same-port");
    assert.equal(h.sockets.length, 1);
    h.live.close();
  } finally { delete globalThis.location; }
});

const alarm = (name, state, since, extra) => Object.assign({ name, sensor: "system.load1", state, severity: "critical", value: 3, since, message: `load1 ${state}` }, extra);

test("alarms: a snapshot's list is the truth, alarm frames are transitions, repeats are not", async () => {
  const h = harness();
  await settle();
  h.ws().open();
  h.ws().recv(hello("e1", 10));
  h.ws().recv({ type: "snapshot", mode: "full", seq: 10, readings: [], alarms: [alarm("busy", "ok", 5), alarm("hot", "critical", 7)] });
  assert.deepEqual([...h.live.alarms.keys()], ["busy", "hot"]);
  assert.equal(h.live.alarms.get("hot").state, "critical");
  assert.equal(h.of("alarm").length, 0, "the first snapshot's alarms are no transitions");
  h.ws().recv(Object.assign({ type: "alarm" }, alarm("busy", "critical", 20)));
  h.ws().recv(Object.assign({ type: "alarm" }, alarm("busy", "critical", 20))); // a repeat
  assert.deepEqual(h.of("alarm").map((a) => [a.name, a.state]), [["busy", "critical"]]);
  assert.equal(h.live.alarms.get("busy").since, 20);
  // Away and back: what moved meanwhile shows as transitions, once.
  h.ws().drop(1006);
  await h.clock.advance(500);
  h.ws().open();
  h.ws().recv(hello("e1", 12));
  h.ws().recv({ type: "snapshot", mode: "full", seq: 12, readings: [], alarms: [alarm("busy", "critical", 20), alarm("hot", "ok", 30)] });
  h.ws().recv(Object.assign({ type: "alarm" }, alarm("hot", "ok", 30))); // queued before the resume: a repeat
  assert.deepEqual(h.of("alarm").map((a) => [a.name, a.state, a.type]), [["busy", "critical", "alarm"], ["hot", "ok", "alarm"]]);
  // A snapshot without alarms: none configured any more.
  h.ws().recv({ type: "snapshot", mode: "replay", seq: 12, readings: [] });
  assert.equal(h.live.alarms.size, 0);
});

test("history resolves with the history frame, rejects with its error, times out", async () => {
  const h = await connected();
  const p = h.live.history("system.load1", { from: 1000, to: 2000, points: 50 });
  const sent = h.ws().sent.pop();
  assert.deepEqual(sent, { type: "history", id: sent.id, sensor: "system.load1", from: 1000, to: 2000, points: 50 });
  const frame = { type: "history", id: sent.id, sensor: "system.load1", from: 1000, to: 2000, points: [[1000, 1, 2, 3]] };
  h.ws().recv(frame);
  assert.deepEqual(await p, frame);
  const p2 = h.live.history("system.uptime_seconds");
  const s2 = h.ws().sent.pop();
  assert.deepEqual(s2, { type: "history", id: s2.id, sensor: "system.uptime_seconds", from: 0, to: 0, points: 0 });
  assert.notEqual(s2.id, sent.id);
  h.ws().recv({ type: "error", id: s2.id, code: "not_recorded", message: "system.uptime_seconds is not recorded" });
  await assert.rejects(p2, { code: "not_recorded" });
  let err = null;
  h.live.history("system.load1", { timeout: 100 }).catch((e) => { err = e; });
  await h.clock.advance(100);
  assert.equal(err.code, "timeout");
  assert.match(err.message, /^history system\.load1: no answer in 100 ms$/);
  h.ws().drop(1006);
  await assert.rejects(h.live.history("system.load1"), { code: "not_connected", message: "history system.load1: not connected (reconnecting)" });
});

test("historyCSV is the stub's CSV route; now follows the device's clock", async () => {
  const h = await connected();
  assert.equal(h.live.historyCSV("exec.temp", 1000.4, 2000), "/cgi-bin/live.cgi?history=exec.temp&from=1000&to=2000");
  // The snapshot's newest reading (t 9) stands for the device's clock
  // until a live reading comes; the largest difference wins.
  assert.equal(h.live.now(), 9);
  h.clock.t += 100;
  h.ws().recv({ type: "reading", sensor: "system.load1", value: 1, seq: 11, t: 5000 });
  assert.equal(h.live.now(), 5000);
  h.clock.t += 100;
  h.ws().recv({ type: "reading", sensor: "system.load1", value: 1, seq: 12, t: 5050 }); // came late
  assert.equal(h.live.now(), 5100);
  h.clock.t += 60001; // a minute later the latest counts whatever it says
  h.ws().recv({ type: "reading", sensor: "system.load1", value: 1, seq: 13, t: 100 });
  assert.equal(h.live.now(), 100);
});

test("over long polling a history request is a POST answered with its frame", async () => {
  const h = transports();
  await settle();
  await h.clock.advance(3000);
  h.polls[0].resolve(200, { session: "S", seq: 10, frames: [hello("e1", 10), { type: "snapshot", mode: "full", seq: 10, readings: [], alarms: [alarm("hot", "ok", 1)] }] });
  await settle();
  assert.equal(h.live.transport, "poll");
  assert.equal(h.live.alarms.get("hot").state, "ok");
  h.polls[1].resolve(200, { session: "S", seq: 10, frames: [Object.assign({ type: "alarm" }, alarm("hot", "critical", 2))] });
  await settle();
  assert.deepEqual(h.of("alarm").map((a) => a.state), ["critical"]);
  const p = h.live.history("system.load1", { from: 1, to: 2 });
  await settle();
  const post = h.polls.find((x) => x.url === "/cgi-bin/live.cgi?command&session=S");
  assert.equal(post.init.method, "POST");
  const sent = JSON.parse(post.init.body);
  assert.deepEqual(sent, { type: "history", id: sent.id, sensor: "system.load1", from: 1, to: 2, points: 0 });
  post.resolve(200, { type: "history", id: sent.id, sensor: "system.load1", from: 1, to: 2, points: [] });
  assert.deepEqual((await p).points, []);
  // The stub's own refusal (not a frame) rejects with its code.
  const p2 = h.live.history("system.load1");
  await settle();
  h.polls[h.polls.length - 1].resolve(503, { error: "supervisor", reason: "no answer" });
  await assert.rejects(p2, { code: "supervisor", message: "no answer" });
});
