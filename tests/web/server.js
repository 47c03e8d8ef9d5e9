#!/usr/bin/env node
// Widget test site for the native proof-of-work solvers (shared/pow).
//
//   node server.js --port N      (0 picks a free port; prints "LISTENING <port>")
//
// Listens on 127.0.0.1 only. Everything a page needs is served from
// node_modules at local paths: no CDN URL appears in any page.
//
// Pages:      /altcha (altcha-lib default = v2, PBKDF2/SHA-256), /altcha-v2
//             (v2, SHA-256), /altcha-v1 (v1, SHA-256 + maxnumber), /cap, /plain
// ALTCHA:     GET /altcha/challenge[-v1|-v2], POST /altcha/verify {payload}
//             (or form altcha=...) -> {ok, reason}; a payload is accepted once.
// Cap:        POST /cap/challenge, POST /cap/redeem (from @cap.js/server),
//             POST /cap/verify {token} -> {ok, reason}; validateToken consumes it.
'use strict';

const http = require('node:http');
const fs = require('node:fs');
const path = require('node:path');
const crypto = require('node:crypto');

const altchaV2 = require('altcha-lib');
const altchaV1 = require('altcha-lib/v1');
const { deriveKey: deriveSha } = require('altcha-lib/algorithms/sha');
const { deriveKey: derivePbkdf2 } = require('altcha-lib/algorithms/pbkdf2');
const Cap = require('@cap.js/server');

// A fresh key per process: payloads from another run never verify.
const HMAC_KEY = crypto.randomBytes(24).toString('hex');
const HMAC_KEY_SIG = crypto.randomBytes(24).toString('hex');
const MAX_BODY = 64 * 1024;

// Work sizes: realistic but bounded (a few hundred ms natively, a few seconds in a browser).
const V1_MAXNUMBER = 200_000; // SHA-256(salt + n), n uniform in [1, maxnumber]
const V2_SHA_COUNTER = [50_000, 300_000]; // v2 SHA-256 cost 1: counter drawn from this range
const V2_PBKDF2_COST = 1_000; // PBKDF2 iterations per attempt
const V2_PBKDF2_COUNTER = [500, 3_000];

const CAP_CONF = { challengeCount: 50, challengeSize: 32, challengeDifficulty: 4, expiresMs: 600_000 };

function arg(name, dflt) {
  const i = process.argv.indexOf(name);
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1] : dflt;
}

const NM = path.join(__dirname, 'node_modules');
const STATIC = {
  '/static/altcha/altcha.js': [path.join(NM, 'altcha/dist/main/altcha.js'), 'text/javascript'],
  '/static/cap/cap.min.js': [path.join(NM, '@cap.js/widget/cap.min.js'), 'text/javascript'],
  '/static/cap/cap_wasm_bg.wasm': [path.join(NM, '@cap.js/wasm/browser/cap_wasm_bg.wasm'), 'application/wasm'],
};

function page(title, body, head = '') {
  return `<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>${title}</title>${head}</head>
<body>
<h1>${title}</h1>
${body}
</body></html>
`;
}

function altchaPage(title, challengePath) {
  // altcha 3.x reads the challenge URL from the `challenge` attribute (2.x
  // called it `challengeurl`; both are given, the newer one wins).
  return page(
    title,
    `<form id="f" method="post" action="/altcha/verify">
  <input name="comment" value="hello">
  <altcha-widget challenge="${challengePath}" challengeurl="${challengePath}" name="altcha"></altcha-widget>
  <button type="submit">Send</button>
</form>`,
    '<script type="module" src="/static/altcha/altcha.js"></script>',
  );
}

const PAGES = {
  '/altcha': () => altchaPage('ALTCHA (altcha-lib default: v2 PBKDF2/SHA-256)', '/altcha/challenge'),
  '/altcha-v2': () => altchaPage('ALTCHA v2 (SHA-256)', '/altcha/challenge-v2'),
  '/altcha-v1': () => altchaPage('ALTCHA v1 (SHA-256, maxnumber)', '/altcha/challenge-v1'),
  '/cap': () =>
    page(
      'Cap',
      `<form id="f" method="post" action="/cap/verify">
  <input name="comment" value="hello">
  <cap-widget id="cap" data-cap-api-endpoint="/cap/"></cap-widget>
  <button type="submit">Send</button>
</form>`,
      '<script>window.CAP_CUSTOM_WASM_URL = "/static/cap/cap_wasm_bg.wasm";</script>' +
        '<script src="/static/cap/cap.min.js"></script>',
    ),
  '/plain': () => page('Plain', '<form method="post" action="/plain"><input name="q"><button>Go</button></form>'),
};

function randomBetween([lo, hi]) {
  return altchaV2.randomInt(hi, lo);
}

async function challengeV1() {
  return altchaV1.createChallenge({
    algorithm: 'SHA-256',
    hmacKey: HMAC_KEY,
    maxnumber: V1_MAXNUMBER,
    expires: new Date(Date.now() + 10 * 60_000),
  });
}

async function challengeV2Sha() {
  return altchaV2.createChallenge({
    algorithm: 'SHA-256',
    cost: 1,
    counter: randomBetween(V2_SHA_COUNTER),
    deriveKey: deriveSha,
    expiresAt: new Date(Date.now() + 10 * 60_000),
    hmacSignatureSecret: HMAC_KEY,
    hmacKeySignatureSecret: HMAC_KEY_SIG,
  });
}

async function challengeV2Pbkdf2() {
  return altchaV2.createChallenge({
    algorithm: 'PBKDF2/SHA-256',
    cost: V2_PBKDF2_COST,
    counter: randomBetween(V2_PBKDF2_COUNTER),
    deriveKey: derivePbkdf2,
    expiresAt: new Date(Date.now() + 10 * 60_000),
    hmacSignatureSecret: HMAC_KEY,
    hmacKeySignatureSecret: HMAC_KEY_SIG,
  });
}

function deriveFor(algorithm) {
  if (/^SHA-(256|384|512)$/.test(algorithm)) return deriveSha;
  if (/^PBKDF2\/SHA-(256|384|512)$/.test(algorithm)) return derivePbkdf2;
  return null;
}

const usedAltcha = new Set();

async function verifyAltcha(payload) {
  if (typeof payload !== 'string' || payload.length === 0 || payload.length > MAX_BODY) {
    return { ok: false, reason: 'missing payload' };
  }
  if (usedAltcha.has(payload)) return { ok: false, reason: 'replayed payload' };
  let decoded;
  try {
    decoded = JSON.parse(Buffer.from(payload, 'base64').toString('utf8'));
  } catch {
    return { ok: false, reason: 'payload is not base64 JSON' };
  }
  let ok;
  if (decoded && typeof decoded === 'object' && decoded.challenge && typeof decoded.challenge === 'object') {
    const derive = deriveFor(decoded.challenge?.parameters?.algorithm);
    if (!derive) return { ok: false, reason: 'unsupported algorithm' };
    try {
      const r = await altchaV2.verifySolution({
        challenge: decoded.challenge,
        solution: decoded.solution,
        deriveKey: derive,
        hmacSignatureSecret: HMAC_KEY,
        hmacKeySignatureSecret: HMAC_KEY_SIG,
      });
      ok = r.verified;
      if (!ok) {
        return { ok: false, reason: r.expired ? 'expired' : r.invalidSignature ? 'invalid signature' : 'invalid solution' };
      }
    } catch (e) {
      return { ok: false, reason: `verify error: ${e.message}` };
    }
  } else {
    ok = await altchaV1.verifySolution(payload, HMAC_KEY, true);
    if (!ok) return { ok: false, reason: 'invalid v1 solution' };
  }
  usedAltcha.add(payload);
  return { ok: true, reason: 'verified' };
}

const cap = new Cap({ noFSState: true, disableAutoCleanup: true });

function send(res, status, type, body) {
  res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store' });
  res.end(body);
}
function json(res, status, obj) {
  send(res, status, 'application/json', JSON.stringify(obj));
}

function readBody(req) {
  return new Promise((resolve, reject) => {
    let size = 0;
    const chunks = [];
    req.on('data', (c) => {
      size += c.length;
      if (size > MAX_BODY) {
        reject(new Error('body too large'));
        req.destroy();
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

// JSON or urlencoded form; returns a plain object (empty on garbage).
function parseBody(req, text) {
  const type = (req.headers['content-type'] || '').toLowerCase();
  if (type.includes('application/x-www-form-urlencoded')) {
    return Object.fromEntries(new URLSearchParams(text));
  }
  try {
    const v = JSON.parse(text);
    return v && typeof v === 'object' ? v : {};
  } catch {
    return {};
  }
}

async function handle(req, res) {
  const url = new URL(req.url, 'http://127.0.0.1');
  const p = url.pathname;
  if (req.method === 'GET' && PAGES[p]) return send(res, 200, 'text/html; charset=utf-8', PAGES[p]());
  if (req.method === 'GET' && STATIC[p]) {
    const [file, type] = STATIC[p];
    return send(res, 200, type, fs.readFileSync(file));
  }
  if (req.method === 'GET' && p === '/altcha/challenge') return json(res, 200, await challengeV2Pbkdf2());
  if (req.method === 'GET' && p === '/altcha/challenge-v2') return json(res, 200, await challengeV2Sha());
  if (req.method === 'GET' && p === '/altcha/challenge-v1') return json(res, 200, await challengeV1());
  if (req.method === 'POST' && p === '/altcha/verify') {
    const body = parseBody(req, await readBody(req));
    return json(res, 200, await verifyAltcha(body.payload ?? body.altcha));
  }
  if (req.method === 'POST' && p === '/cap/challenge') {
    await readBody(req);
    return json(res, 200, await cap.createChallenge(CAP_CONF));
  }
  if (req.method === 'POST' && p === '/cap/redeem') {
    const body = parseBody(req, await readBody(req));
    const r = await cap.redeemChallenge({ token: body.token, solutions: body.solutions });
    return json(res, r.success ? 200 : 403, r);
  }
  if (req.method === 'POST' && p === '/cap/verify') {
    const body = parseBody(req, await readBody(req));
    const token = body.token ?? body['cap-token'];
    if (typeof token !== 'string' || !token) return json(res, 200, { ok: false, reason: 'missing token' });
    const r = await cap.validateToken(token);
    return json(res, 200, r.success ? { ok: true, reason: 'verified' } : { ok: false, reason: 'invalid or used token' });
  }
  if (p === '/healthz') return send(res, 200, 'text/plain', 'ok\n');
  return send(res, 404, 'text/plain', 'not found\n');
}

const server = http.createServer((req, res) => {
  handle(req, res).catch((e) => {
    if (!res.headersSent) json(res, 400, { ok: false, reason: String(e && e.message) });
    else res.destroy();
  });
});

const port = Number(arg('--port', '0'));
server.listen(Number.isInteger(port) && port >= 0 ? port : 0, '127.0.0.1', () => {
  process.stdout.write(`LISTENING ${server.address().port}\n`);
});

for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => {
    server.close();
    process.exit(0);
  });
}
