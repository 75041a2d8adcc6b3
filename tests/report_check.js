// Loads a qkscope report page in headless Chromium and checks it: no console
// errors, exceptions or failed loads; every SVG chart has the series and
// points the run's CSVs call for; the attention viewer's slider, layer and
// head pickers change the picture; the compare command follows its selects;
// a screenshot is not blank.
//
// Chromium is driven over the DevTools protocol on pipes
// (--remote-debugging-pipe: the browser reads fd 3 and writes fd 4, messages
// are JSON separated by NUL bytes), so Node's built-in modules suffice.
//
// usage: node report_check.js --chromium BIN --shot OUT.png [--probe R=TEXT]...
//                              PAGE RUN_DIR [RUN_DIR_B]
// --probe: the probe text that run R (0 or 1) shows; without it, the run's
// attn/probe.txt when there is one (else the probe is not checked).
// Prints a JSON summary on success; exits 1 with the problems otherwise.
'use strict';
const { spawn } = require('child_process');
const fs = require('fs');
const os = require('os');
const path = require('path');
const zlib = require('zlib');

const MAX_POINTS = 500; // REPORT_MAX_POINTS in src/report.h
const WIDTH = 1400;

function parseArgs(argv) {
  const a = { probes: {}, runs: [] };
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--chromium') a.chromium = argv[++i];
    else if (argv[i] === '--shot') a.shot = argv[++i];
    else if (argv[i] === '--probe') {
      const [r, ...text] = argv[++i].split('=');
      a.probes[r] = text.join('=');
    } else if (!a.page) a.page = argv[i];
    else a.runs.push(argv[i]);
  }
  if (!a.chromium || !a.shot || !a.page || a.runs.length < 1) {
    throw new Error('usage: report_check.js --chromium BIN --shot OUT.png PAGE RUN_DIR [RUN_DIR_B]');
  }
  return a;
}

// ---- what the page should show, from the run folder itself ----

// Complete rows of a CSV log (a last line without its newline is left out),
// split on commas: the logs hold bare numbers after a quoted header.
function csvRows(file) {
  if (!fs.existsSync(file)) return [];
  const lines = fs.readFileSync(file, 'utf8').split('\n');
  lines.pop();
  return lines.slice(1).map((l) => l.split(','));
}

function iniInt(text, key) {
  const m = text.match(new RegExp('^' + key + ' = (\\d+)$', 'm'));
  if (!m) throw new Error('config.ini lacks ' + key);
  return Number(m[1]);
}

function runExpectations(dir, r, pair) {
  const ini = fs.readFileSync(path.join(dir, 'config.ini'), 'utf8');
  const L = iniInt(ini, 'n_layer'), NH = iniInt(ini, 'n_head');
  const metrics = csvRows(path.join(dir, 'metrics.csv')).length;
  const evals = csvRows(path.join(dir, 'eval.csv')).length;
  const perHead = (file) => {
    const count = {};
    for (const f of csvRows(path.join(dir, file))) {
      const key = f[1] + ',' + f[2];
      count[key] = (count[key] || 0) + 1;
    }
    return (l, h) => count[l + ',' + h] || 0;
  };
  const norms = perHead('qk.csv'), heval = perHead('qk_eval.csv');
  const charts = {};
  for (let l = 0; l < L; l++) {
    for (let h = 0; h < NH; h++) {
      charts[`r${r}-norms-L${l}-H${h}`] = [norms(l, h), norms(l, h)];
      charts[`r${r}-ratio-L${l}-H${h}`] = [norms(l, h)];
    }
    for (const key of ['symmetry', 'directionality', 'swap_delta', 'entropy']) {
      charts[`r${r}-${key}-L${l}`] = Array.from({ length: NH }, (_, h) => heval(l, h));
    }
  }
  if (fs.existsSync(path.join(dir, 'roles_eval.csv'))) {
    const roles = perHead('roles_eval.csv');
    if (csvRows(path.join(dir, 'roles_eval.csv')).length) {
      for (let l = 0; l < L; l++) {
        for (const key of ['target_attn', 'cf_q_cur', 'cf_k_prev', 'k_prev']) {
          charts[`r${r}-roles-${key}-L${l}`] = Array.from({ length: NH }, (_, h) => roles(l, h));
        }
      }
    }
  }
  const attn = path.join(dir, 'attn');
  const steps = (fs.existsSync(attn) ? fs.readdirSync(attn) : [])
    .filter((d) => /^step_\d+$/.test(d)).map((d) => Number(d.slice(5))).sort((x, y) => x - y);
  return {
    L, NH, charts, steps,
    loss: pair ? [evals, evals] : [metrics, evals, evals],
    lr: [metrics],
    accuracy: [evals, evals],
  };
}

// ---- checks that run inside the page ----

// Serialised into the page with Runtime.evaluate: it must not refer to
// anything outside itself.
async function pageChecks(expect) {
  const problems = [];
  const check = (ok, what) => { if (!ok) problems.push(what); };
  const loaded = (img) => new Promise((resolve) => {
    if (img.complete && img.naturalWidth > 0) return resolve(true);
    const done = (ok) => () => resolve(ok);
    img.addEventListener('load', done(true), { once: true });
    img.addEventListener('error', done(false), { once: true });
    setTimeout(done(false), 5000);
  });
  const set = async (el, value) => {
    el.value = value;
    el.dispatchEvent(new Event('input'));
    await Promise.all([...document.querySelectorAll('figure.att img')].filter((i) => !i.hidden)
      .map(loaded));
  };

  // charts: series and points against the CSVs
  const svgs = document.querySelectorAll('svg.chart');
  check(svgs.length === Object.keys(expect.charts).length,
    `${svgs.length} charts, expected ${Object.keys(expect.charts).length}`);
  let points = 0;
  for (const [id, want] of Object.entries(expect.charts)) {
    const svg = document.getElementById(id);
    if (!svg) { problems.push(`no chart #${id}`); continue; }
    const lines = [...svg.querySelectorAll('polyline.s')];
    check(lines.length === want.filter((n) => n > 0).length,
      `#${id}: ${lines.length} series, expected ${want.filter((n) => n > 0).length}`);
    want.filter((n) => n > 0).forEach((n, i) => {
      if (!lines[i]) return;
      const got = lines[i].getAttribute('points').trim().split(/\s+/).length;
      points += got;
      check(Number(lines[i].dataset.n) === n, `#${id} series ${i}: data-n ${lines[i].dataset.n}, expected ${n}`);
      if (n <= expect.maxPoints) check(got === n, `#${id} series ${i}: ${got} points, expected ${n}`);
      else check(got <= expect.maxPoints && got >= expect.maxPoints / 2,
        `#${id} series ${i}: ${got} points from ${n}, expected ${expect.maxPoints / 2}..${expect.maxPoints}`);
    });
  }

  // attention viewer
  const figs = [...document.querySelectorAll('figure.att')];
  const slider = document.getElementById('att-step');
  const layerSel = document.getElementById('att-layer'), headSel = document.getElementById('att-head');
  check(figs.length === expect.runs.length && slider, 'attention viewer missing');
  const srcs = () => figs.map((f) => f.querySelector('img').getAttribute('src'));
  const info = {};
  if (slider) {
    for (const f of figs) check(await loaded(f.querySelector('img')), 'a heatmap did not load: ' + f.querySelector('img').src);
    await set(headSel, '1');
    figs.forEach((f, r) => {
      const box = f.querySelector('.crop'), img = f.querySelector('img');
      check(box.dataset.head === '1' && box.classList.contains('cropped'),
        `run ${r}: head 1 not cut out (picture ${img.naturalWidth}x${img.naturalHeight}, ` +
        `layout predicts ${expect.runs[r].size})`);
      check(box.getBoundingClientRect().width > 0 && box.getBoundingClientRect().height > 0, `run ${r}: empty crop`);
    });
    await set(headSel, '-1');
    figs.forEach((f, r) => check(f.querySelector('.crop').dataset.head === '-1', `run ${r}: all heads not shown`));
    await set(headSel, '0');
    await set(slider, '0');
    const first = srcs();
    await set(slider, slider.max);
    const last = srcs();
    await set(layerSel, '1');
    const layer1 = srcs();
    info.srcs = { first, last, layer1 };
    figs.forEach((f, r) => {
      const run = expect.runs[r];
      const steps = run.steps;
      const pad = (s) => String(s).padStart(6, '0');
      check(first[r] === `${run.href}attn/step_${pad(steps[0])}/layer_0.png`, `run ${r}: slider at 0 shows ${first[r]}`);
      check(last[r] === `${run.href}attn/step_${pad(steps[steps.length - 1])}/layer_0.png`, `run ${r}: slider at the end shows ${last[r]}`);
      check(layer1[r] === `${run.href}attn/step_${pad(steps[steps.length - 1])}/layer_1.png`, `run ${r}: layer 1 shows ${layer1[r]}`);
      check(first[r] !== last[r], `run ${r}: the slider does not change the picture`);
      check(f.querySelector('figcaption').textContent.includes('layer 1'), `run ${r}: caption not updated`);
    });
    check(Number(slider.max) + 1 === new Set(expect.runs.flatMap((x) => x.steps)).size, `slider has ${Number(slider.max) + 1} steps`);
  }

  // probe text
  for (const [r, text] of Object.entries(expect.probes)) {
    const el = document.getElementById('probe-r' + r);
    const shown = el ? el.textContent.replace(/\u21b5/g, '\n').replace(/\u2192/g, '\t') : null;
    check(shown === text, `run ${r}: probe shows ${JSON.stringify(shown)}, expected ${JSON.stringify(text)}`);
  }

  // compare command
  const ckA = document.getElementById('ckpt-a'), ckB = document.getElementById('ckpt-b');
  const cmd = document.getElementById('ckpt-cmd');
  check(ckA && ckB && cmd, 'checkpoint selects missing');
  if (ckA && ckB && cmd) {
    const before = cmd.textContent;
    check(before === `./qkscope compare ${ckA.value} ${ckB.value}`, 'command: ' + before);
    await set(ckB, ckB.options[0].value);
    await set(ckA, ckA.options[ckA.options.length - 1].value);
    check(cmd.textContent === `./qkscope compare ${ckA.options[ckA.options.length - 1].value} ${ckB.options[0].value}`,
      'command after the selects changed: ' + cmd.textContent);
    check(cmd.textContent !== before, 'the command did not change');
    info.command = cmd.textContent;
    check([...document.querySelectorAll('a[href*="ckpt/step_"]')].length >= expect.ckptLinks,
      'checkpoint links missing');
  }
  await set(layerSel, '0');
  await set(slider, slider ? slider.max : 0);
  const nav = performance.getEntriesByType('navigation')[0];
  info.loadMs = Math.round(nav.loadEventEnd - nav.startTime);
  info.points = points;
  info.height = document.documentElement.scrollHeight;
  return { problems, info };
}

// ---- the DevTools protocol over pipes ----

class Browser {
  constructor(bin) {
    this.profile = fs.mkdtempSync(path.join(os.tmpdir(), 'qkscope-chromium-'));
    this.proc = spawn(bin, ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic',
      '--no-first-run', '--disable-background-networking', '--disable-component-update',
      '--disable-sync', '--disable-dev-shm-usage', '--hide-scrollbars', '--mute-audio',
      `--user-data-dir=${this.profile}`, '--remote-debugging-pipe', 'about:blank'],
    { stdio: ['ignore', 'ignore', 'pipe', 'pipe', 'pipe'] });
    this.stderr = '';
    this.proc.stderr.on('data', (d) => { this.stderr += d; });
    this.nextId = 1;
    this.pending = new Map();
    this.listeners = new Set();
    let held = Buffer.alloc(0);
    this.proc.stdio[4].on('data', (chunk) => {
      held = Buffer.concat([held, chunk]);
      for (let end; (end = held.indexOf(0)) >= 0; held = held.subarray(end + 1)) {
        this.receive(JSON.parse(held.subarray(0, end).toString('utf8')));
      }
    });
    this.exited = new Promise((resolve) => this.proc.on('exit', resolve));
  }

  receive(msg) {
    if (msg.id !== undefined) {
      const p = this.pending.get(msg.id);
      this.pending.delete(msg.id);
      if (msg.error) p.reject(new Error(`${p.method}: ${msg.error.message}`));
      else p.resolve(msg.result);
    } else {
      for (const l of this.listeners) l(msg);
    }
  }

  send(method, params = {}, sessionId = undefined) {
    const id = this.nextId++;
    const msg = { id, method, params };
    if (sessionId) msg.sessionId = sessionId;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { method, resolve, reject });
      this.proc.stdio[3].write(JSON.stringify(msg) + '\0');
    });
  }

  event(method, sessionId) {
    return new Promise((resolve) => {
      const l = (msg) => {
        if (msg.method === method && msg.sessionId === sessionId) {
          this.listeners.delete(l);
          resolve(msg.params);
        }
      };
      this.listeners.add(l);
    });
  }

  async close() {
    await this.send('Browser.close').catch(() => {});
    await this.exited;
    fs.rmSync(this.profile, { recursive: true, force: true });
  }
}

// ---- the screenshot: decoded with zlib, so blankness is measured ----

function pngPixels(buf) {
  let pos = 8, width = 0, height = 0, type = 0, depth = 0;
  const idat = [];
  while (pos < buf.length) {
    const len = buf.readUInt32BE(pos), kind = buf.toString('ascii', pos + 4, pos + 8);
    const body = buf.subarray(pos + 8, pos + 8 + len);
    if (kind === 'IHDR') {
      width = body.readUInt32BE(0);
      height = body.readUInt32BE(4);
      depth = body[8];
      type = body[9];
    } else if (kind === 'IDAT') idat.push(body);
    pos += 12 + len;
  }
  if (depth !== 8 || (type !== 2 && type !== 6)) throw new Error(`screenshot PNG: depth ${depth}, colour type ${type}`);
  const bpp = type === 6 ? 4 : 3, stride = width * bpp;
  const raw = zlib.inflateSync(Buffer.concat(idat));
  const out = Buffer.alloc(height * stride);
  for (let y = 0; y < height; y++) {
    const filter = raw[y * (stride + 1)];
    for (let x = 0; x < stride; x++) {
      const v = raw[y * (stride + 1) + 1 + x];
      const a = x >= bpp ? out[y * stride + x - bpp] : 0;
      const b = y > 0 ? out[(y - 1) * stride + x] : 0;
      const c = x >= bpp && y > 0 ? out[(y - 1) * stride + x - bpp] : 0;
      let p = 0;
      if (filter === 1) p = a;
      else if (filter === 2) p = b;
      else if (filter === 3) p = (a + b) >> 1;
      else if (filter === 4) {
        const e = a + b - c, pa = Math.abs(e - a), pb = Math.abs(e - b), pc = Math.abs(e - c);
        p = pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
      }
      out[y * stride + x] = (v + p) & 255;
    }
  }
  return { width, height, bpp, data: out };
}

function pixelStats(img) {
  let inked = 0;
  const colours = new Set();
  for (let i = 0; i < img.width * img.height; i++) {
    const o = i * img.bpp, r = img.data[o], g = img.data[o + 1], b = img.data[o + 2];
    if (r < 240 || g < 240 || b < 240) inked++;
    if (colours.size < 5000) colours.add((r << 16) | (g << 8) | b);
  }
  return { inked: inked / (img.width * img.height), colours: colours.size };
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const pair = args.runs.length > 1;
  const pageDir = path.dirname(path.resolve(args.page));
  const expect = { charts: {}, runs: [], probes: args.probes, maxPoints: MAX_POINTS, ckptLinks: 0 };
  const loss = [], lr = [], accuracy = [];
  args.runs.forEach((dir, r) => {
    const e = runExpectations(dir, r, pair);
    const recorded = path.join(dir, 'attn', 'probe.txt');
    if (!(r in expect.probes) && fs.existsSync(recorded)) {
      expect.probes[r] = fs.readFileSync(recorded, 'utf8');
    }
    Object.assign(expect.charts, e.charts);
    loss.push(...e.loss);
    lr.push(...e.lr);
    accuracy.push(...e.accuracy);
    let href = path.relative(pageDir, path.resolve(dir));
    href = href ? href.split(path.sep).map(encodeURIComponent).join('/') + '/' : '';
    expect.runs.push({ href, steps: e.steps });
    expect.ckptLinks += fs.readdirSync(path.join(dir, 'ckpt'))
      .filter((f) => /^step_\d+\.safetensors$/.test(f)).length;
  });
  expect.charts.loss = loss;
  expect.charts.lr = lr;
  expect.charts.accuracy = accuracy;

  const browser = new Browser(args.chromium);
  const timer = setTimeout(() => {
    console.error('timed out; chromium said:\n' + browser.stderr.slice(-2000));
    browser.proc.kill('SIGKILL');
    process.exit(1);
  }, 50000);
  const problems = [];
  let result;
  try {
    const { targetId } = await browser.send('Target.createTarget', { url: 'about:blank' });
    const { sessionId } = await browser.send('Target.attachToTarget', { targetId, flatten: true });
    browser.listeners.add((msg) => {
      if (msg.sessionId !== sessionId) return;
      const p = msg.params;
      if (msg.method === 'Runtime.exceptionThrown') {
        const d = p.exceptionDetails;
        problems.push('exception: ' + ((d.exception && d.exception.description) || d.text));
      } else if (msg.method === 'Runtime.consoleAPICalled' && (p.type === 'error' || p.type === 'assert')) {
        problems.push('console.' + p.type + ': ' + p.args.map((x) => x.value ?? x.description).join(' '));
      } else if (msg.method === 'Log.entryAdded' && p.entry.level === 'error') {
        problems.push(`log (${p.entry.source}): ${p.entry.text} ${p.entry.url || ''}`);
      }
    });
    for (const domain of ['Runtime', 'Log', 'Page']) await browser.send(domain + '.enable', {}, sessionId);
    await browser.send('Emulation.setDeviceMetricsOverride',
      { width: WIDTH, height: 1200, deviceScaleFactor: 1, mobile: false }, sessionId);
    const load = browser.event('Page.loadEventFired', sessionId);
    await browser.send('Page.navigate', { url: 'file://' + path.resolve(args.page) }, sessionId);
    await load;
    // the picture sizes the page predicts, for the message when a head
    // cannot be cut out (the PNG differs from the documented layout)
    const data = await browser.send('Runtime.evaluate', {
      expression: "JSON.parse(document.getElementById('report-data').textContent)",
      returnByValue: true,
    }, sessionId);
    data.result.value.runs.forEach((run, r) => { expect.runs[r].size = run.size; });
    const r = await browser.send('Runtime.evaluate', {
      expression: `(${pageChecks.toString()})(${JSON.stringify(expect)})`,
      awaitPromise: true, returnByValue: true,
    }, sessionId);
    if (r.exceptionDetails) throw new Error('page checks threw: ' + JSON.stringify(r.exceptionDetails));
    result = r.result.value;
    problems.push(...result.problems);
    const height = Math.min(result.info.height, 9000);
    const shot = await browser.send('Page.captureScreenshot', {
      format: 'png', captureBeyondViewport: true,
      clip: { x: 0, y: 0, width: WIDTH, height, scale: 1 },
    }, sessionId);
    const png = Buffer.from(shot.data, 'base64');
    fs.writeFileSync(args.shot, png);
    const stats = pixelStats(pngPixels(png));
    result.info.screenshot = { height, ...stats };
    if (stats.inked < 0.01 || stats.colours < 50) {
      problems.push(`screenshot looks blank: ${(stats.inked * 100).toFixed(2)}% inked, ${stats.colours} colours`);
    }
  } catch (e) {
    problems.push(e.message);
  }
  clearTimeout(timer);
  await browser.close();
  if (problems.length) {
    console.error(args.page + ':\n  ' + problems.join('\n  '));
    process.exit(1);
  }
  console.log(JSON.stringify(result.info));
}

main().catch((e) => {
  console.error(e.stack || String(e));
  process.exit(1);
});
