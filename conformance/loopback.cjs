'use strict';
// Preloaded into the conformance suite (node -r ./loopback.cjs): keeps it on this machine.
//
// 1. Every TCP listen() binds 127.0.0.1. The suite calls app.listen(0) with no host, which would
//    bind every interface, and reads address() right after, so the bind must stay synchronous:
//    Node binds synchronously without a host, and goes through dns.lookup with one, so during
//    our listen() a lookup of 127.0.0.1 answers synchronously.
// 2. Name lookups other than loopback fail at once (ENOTFOUND) instead of asking a resolver, so
//    no query leaves the machine (the suite fetches a client metadata document on a .local name).
const net = require('node:net');
const dns = require('node:dns');

const HOST = '127.0.0.1';
const LOCAL_NAMES = new Set(['localhost', '127.0.0.1', '::1', '[::1]']);
const realListen = net.Server.prototype.listen;
const realLookup = dns.lookup;
let listening = 0;

function answer(callback, options, address, family) {
  const cb = typeof options === 'function' ? options : callback;
  if (options && typeof options === 'object' && options.all) cb(null, [{ address, family }]);
  else cb(null, address, family);
}

dns.lookup = function loopbackOnlyLookup(hostname, options, callback) {
  if (listening > 0 && hostname === HOST) {
    answer(callback, options, HOST, 4);
    return {};
  }
  if (!LOCAL_NAMES.has(String(hostname).toLowerCase())) {
    const cb = typeof options === 'function' ? options : callback;
    const error = Object.assign(new Error(`getaddrinfo ENOTFOUND ${hostname} (blocked: loopback only)`), {
      code: 'ENOTFOUND', errno: -3008, syscall: 'getaddrinfo', hostname,
    });
    process.nextTick(() => cb(error));
    return {};
  }
  return realLookup.apply(this, arguments);
};

const isPort = (v) => typeof v === 'number' || (typeof v === 'string' && /^\d+$/.test(v));

net.Server.prototype.listen = function loopbackListen(...args) {
  const callback = typeof args[args.length - 1] === 'function' ? args.pop() : undefined;
  const first = args[0];
  let options = null;
  if (first == null || isPort(first)) {
    // listen([port[, host[, backlog]]]) or listen(port, backlog)
    options = { port: first == null ? 0 : Number(first) };
    const rest = args.slice(1);
    const backlogAt = typeof rest[0] === 'string' || (rest[0] == null && rest.length > 1) ? 1 : 0;
    if (typeof rest[backlogAt] === 'number') options.backlog = rest[backlogAt];
  } else if (typeof first === 'object' && first.path === undefined && first.handle === undefined
    && first._handle === undefined && first.fd === undefined) {
    options = { ...first };
  }
  if (!options) {
    // Unix sockets and inherited handles stay as they are.
    if (callback) args.push(callback);
    return realListen.apply(this, args);
  }
  options.host = HOST;
  delete options.ipv6Only;
  listening++;
  try {
    return realListen.apply(this, callback ? [options, callback] : [options]);
  } finally {
    listening--;
  }
};
