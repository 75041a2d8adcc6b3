// Loads a qkscope report page in headless Chromium and checks what a reader
// sees and does there:
//   - the page: no uncaught exception, console error or assertion, failed
//     load or crash, and no request beyond the local files (the report is
//     self-contained);
//   - charts: every SVG chart the run's CSVs call for, and no other, with
//     their series and points;
//   - the attention viewer: the heatmaps load; the head picker cuts one head
//     out and shows all again; the step slider (set, and moved with the
//     keyboard) and the layer picker change the picture, its caption and the
//     step label; the steps match the run's attn/ folder;
//   - a run's Formation panel: its series (heads picked as the caption
//     says), the jump's (a corpus run: the in-context gain's) line and label
//     and a tick per other event, at the halfway steps computed here from
//     the CSVs, the events table, and the run's formation.csv (when there is
//     one) at the same eval steps; no panel on other runs;
//   - a corpus run's induction charts (roles_eval.csv): each series' halfway
//     tick at the step computed here;
//   - the probe text; the compare command follows its selects; checkpoint
//     links are there and no link leads to a missing file;
//   - a screenshot that is not blank.
//
// The browser is Debian's chromium driven by playwright-core (package.json at
// the project root, installed by `npm ci`); Playwright's own browser builds
// are never downloaded.
//
// usage: node report_check.js [--chromium BIN] --shot OUT.png [--probe R=TEXT]...
//                              PAGE RUN_DIR [RUN_DIR_B]
// --chromium: the browser (default /usr/bin/chromium). --probe: the probe
// text that run R (0 or 1) shows; without it, the run's attn/probe.txt when
// there is one (else the probe is not checked).
// Prints a JSON summary on success; exits 1 naming every failed check
// otherwise (2 on a usage error).
'use strict';
const fs = require('fs');
const path = require('path');
const { fileURLToPath, pathToFileURL } = require('url');

let chromium;
try {
  ({ chromium } = require('playwright-core'));
} catch (e) {
  console.error('report_check: cannot load playwright-core (' + e.message.split('\n')[0] +
    '); run `npm ci` at the project root, as scripts/test does');
  process.exit(1);
}

const MAX_POINTS = 500; // SVGPLOT_MAX_POINTS in src/observe/svgplot.h
const WIDTH = 1400;
const SHOT_MAX_HEIGHT = 9000;
// As root Chromium starts only unsandboxed; the background services would
// otherwise knock on a network that is closed here.
const CHROMIUM_ARGS = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
  '--disable-dev-shm-usage', '--hide-scrollbars', '--mute-audio'];
const SETTLE_MS = 5000; // how long the page may take to follow a control
const TOTAL_MS = 60000; // a hung browser fails the check rather than the test's timeout

function parseArgs(argv) {
  const a = { chromium: '/usr/bin/chromium', probes: {}, runs: [] };
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--chromium') a.chromium = argv[++i];
    else if (argv[i] === '--shot') a.shot = argv[++i];
    else if (argv[i] === '--probe') {
      const [r, ...text] = argv[++i].split('=');
      a.probes[r] = text.join('=');
    } else if (!a.page) a.page = argv[i];
    else a.runs.push(argv[i]);
  }
  if (!a.chromium || !a.shot || !a.page || a.runs.length < 1 || a.runs.length > 2) {
    console.error('usage: report_check.js [--chromium BIN] --shot OUT.png [--probe R=TEXT]... ' +
      'PAGE RUN_DIR [RUN_DIR_B]');
    process.exit(2);
  }
  return a;
}

// ---- what the page should show, from the run folders themselves ----

// Complete rows of a CSV log (a last line without its newline is left out),
// split on commas: the logs hold bare numbers after a quoted header.
function csvRows(file) {
  if (!fs.existsSync(file)) return [];
  const lines = fs.readFileSync(file, 'utf8').split('\n');
  lines.pop();
  return lines.slice(1).map((l) => l.split(','));
}

// A CSV file as objects keyed by its header's names, quotes taken off (an
// empty field is ''); a last line without its newline is left out.
function csvObjects(file) {
  if (!fs.existsSync(file)) return [];
  const lines = fs.readFileSync(file, 'utf8').split('\n');
  lines.pop();
  const unquote = (f) => f.replace(/^"(.*)"$/, '$1').replace(/""/g, '"');
  const names = lines.length ? lines[0].split(',').map(unquote) : [];
  return lines.slice(1).map((l) =>
    Object.fromEntries(l.split(',').map((f, i) => [names[i], unquote(f)])));
}

const num = (s) => (s === '' || s === undefined ? NaN : Number(s));

// The halfway step of a series of [step, value] points, as docs/outputs.md
// defines it: the first point at which it has covered at least half its way
// from its first value to its last (rising or falling); null for a flat
// series or a single point. Points that are not finite are left out.
function halfway(points) {
  const p = points.filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y));
  if (p.length < 2) {
    const only = p.length ? p[0][1] : NaN;
    return { step: null, first: only, last: only };
  }
  const first = p[0][1], last = p[p.length - 1][1];
  if (first === last) return { step: null, first, last };
  const mid = first + (last - first) / 2;
  const hit = p.find(([, y]) => (last > first ? y >= mid : y <= mid));
  return { step: hit ? hit[0] : p[p.length - 1][0], first, last };
}

const FORMATION_MIN_EVALS = 3; // in src/observe/report.c

const rowsOf = (table, l, h) => table.filter((row) => num(row.layer) === l && num(row.head) === h);
const series = (rows, col) => rows.map((row) => [num(row.step), num(row[col])]);
// A corpus run's in-context gain over its evals: loss_first - loss_second of
// head 0's rows (every row of an eval holds the same losses).
const gainSeries = (roles) => rowsOf(roles, 0, 0).map((row) =>
  [num(row.step), num(row.loss_first) - num(row.loss_second)]);
// A corpus run's roles_eval.csv has the roles_lm columns.
const isCorpusRoles = (roles) => roles.length > 0 && 'induction_attn' in roles[0];
// Formation events from [event, head, points] triples: their halfway steps.
const eventsOf = (list) => list.map(([event, head, points]) => ({ event, head, ...halfway(points) }));
// A number as the C side writes it into a CSV ("%.9g").
const csvNum = (x) => (Number.isFinite(x) ? Number(x.toPrecision(9)) : x);

// What a run's Formation panel should show, from its CSVs; null when the run
// has none (no roles_eval.csv, or fewer than FORMATION_MIN_EVALS evals).
function formationExpect(dir, L, NH) {
  const roles = csvObjects(path.join(dir, 'roles_eval.csv'));
  if (!roles.length || rowsOf(roles, 0, 0).length < FORMATION_MIN_EVALS) return null;
  const lastStep = num(roles[roles.length - 1].step);
  // the head of the layers with the largest col at the last eval, the first on a tie
  const best = (layers, col) => {
    let top = -Infinity, pick = [layers[0], 0];
    for (const l of layers) {
      for (let h = 0; h < NH; h++) {
        const rows = rowsOf(roles, l, h), last = rows[rows.length - 1];
        if (last && num(last.step) === lastStep && num(last[col]) > top) {
          top = num(last[col]);
          pick = [l, h];
        }
      }
    }
    return pick;
  };
  const upper = L > 1 ? Array.from({ length: L - 1 }, (_, i) => i + 1) : [0];
  const evals = csvObjects(path.join(dir, 'eval.csv'));
  if (isCorpusRoles(roles)) {
    // the previous-token head of the layers below the last, the induction head above
    const prev = best(L > 1 ? Array.from({ length: L - 1 }, (_, i) => i) : [0], 'prev_attn');
    const ind = best(upper, 'induction_attn');
    const P = `L${prev[0]}H${prev[1]}`, I = `L${ind[0]}H${ind[1]}`;
    const prevRows = rowsOf(roles, ...prev), indRows = rowsOf(roles, ...ind);
    return {
      dir,
      major: 'gain',
      names: ['in-context gain (min..max scaled to 0..1)', `${P} prev_attn`, `${I} induction_attn`,
        'val_loss (min..max scaled to 0..1)'],
      counts: [rowsOf(roles, 0, 0).length, prevRows.length, indRows.length, evals.length],
      events: eventsOf([
        ['gain', '', gainSeries(roles)],
        ['prev_attn', P, series(prevRows, 'prev_attn')],
        ['induction_attn', I, series(indRows, 'induction_attn')],
      ]),
      evalSteps: evals.map((e) => num(e.step)),
    };
  }
  const prev = best([0], 'prev_attn_j');
  const look = best(upper, 'target_attn');
  const P = `L${prev[0]}H${prev[1]}`, K = `L${look[0]}H${look[1]}`;
  const prevRows = rowsOf(roles, ...prev), lookRows = rowsOf(roles, ...look);
  const normRows = rowsOf(csvObjects(path.join(dir, 'qk.csv')), ...look);
  const events = eventsOf([
    ['jump', '', series(evals, 'val_acc')],
    ['prev_attn_j', P, series(prevRows, 'prev_attn_j')],
    ['target_attn', K, series(lookRows, 'target_attn')],
    ['cf_q_cur', K, series(lookRows, 'cf_q_cur')],
    ['cf_k_prev', K, series(lookRows, 'cf_k_prev')],
  ]);
  return {
    dir,
    major: 'jump',
    names: ['val_acc', `${P} prev_attn_j`, `${K} target_attn`, `${K} cf_q_cur`, `${K} cf_k_prev`,
      `${K} gq_norm / its max`, `${K} gk_norm / its max`],
    counts: [evals.length, prevRows.length, lookRows.length, lookRows.length, lookRows.length,
      normRows.length, normRows.length],
    events,
    evalSteps: evals.map((e) => num(e.step)),
  };
}

function iniInt(text, key) {
  const m = text.match(new RegExp('^' + key + ' = (\\d+)$', 'm'));
  if (!m) throw new Error('config.ini lacks ' + key);
  return Number(m[1]);
}

// Chart id -> the number of points of each of its series, in order (a
// series with no points is not drawn).
function runCharts(dir, r) {
  const ini = fs.readFileSync(path.join(dir, 'config.ini'), 'utf8');
  const L = iniInt(ini, 'n_layer'), NH = iniInt(ini, 'n_head');
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
  const rolesTable = csvObjects(path.join(dir, 'roles_eval.csv'));
  const lmMarks = {};
  if (isCorpusRoles(rolesTable)) {
    // val_loss and both copies' losses (a tick for val_loss), the gain (its tick)
    const n0 = rowsOf(rolesTable, 0, 0).length;
    const evals = csvObjects(path.join(dir, 'eval.csv'));
    charts[`r${r}-lm-loss`] = [evals.length, n0, n0];
    charts[`r${r}-lm-gain`] = [n0];
    const tick = (event, points) => {
      const e = halfway(points);
      return e.step === null ? [] : [{ event, step: String(e.step) }];
    };
    lmMarks[`r${r}-lm-loss`] = tick('val_loss (eval)', series(evals, 'val_loss'));
    lmMarks[`r${r}-lm-gain`] = tick('in-context gain', gainSeries(rolesTable));
    for (let l = 0; l < L; l++) {
      for (const key of ['prev_attn', 'induction_attn']) {
        const id = `r${r}-lm-${key}-L${l}`;
        charts[id] = Array.from({ length: NH }, (_, h) => rowsOf(rolesTable, l, h).length);
        lmMarks[id] = Array.from({ length: NH }, (_, h) => tick(`H${h}`,
          series(rowsOf(rolesTable, l, h), key))).flat();
      }
    }
  } else if (rolesTable.length) {
    const roles = perHead('roles_eval.csv');
    for (let l = 0; l < L; l++) {
      for (const key of ['target_attn', 'cf_q_cur', 'cf_k_prev', 'k_prev']) {
        charts[`r${r}-roles-${key}-L${l}`] = Array.from({ length: NH }, (_, h) => roles(l, h));
      }
    }
  }
  const formation = formationExpect(dir, L, NH);
  if (formation) charts[`r${r}-formation`] = formation.counts;
  return { charts, formation, lmMarks };
}

function expectations(args) {
  const pair = args.runs.length > 1;
  const pageDir = path.dirname(path.resolve(args.page));
  const expect = { charts: {}, runs: [], probes: { ...args.probes }, ckptLinks: 0, formation: [],
    lmMarks: {} };
  const loss = [], lr = [], accuracy = [];
  args.runs.forEach((dir, r) => {
    const { charts, formation, lmMarks } = runCharts(dir, r);
    Object.assign(expect.charts, charts);
    Object.assign(expect.lmMarks, lmMarks);
    expect.formation.push(formation);
    const metrics = csvRows(path.join(dir, 'metrics.csv')).length;
    const evals = csvRows(path.join(dir, 'eval.csv')).length;
    // the pair page leaves out the batch loss, whose noise would hide the comparison
    loss.push(...(pair ? [evals, evals] : [metrics, evals, evals]));
    lr.push(metrics);
    accuracy.push(evals, evals);
    const recorded = path.join(dir, 'attn', 'probe.txt');
    if (!(r in expect.probes) && fs.existsSync(recorded)) {
      expect.probes[r] = fs.readFileSync(recorded, 'utf8');
    }
    const attn = path.join(dir, 'attn');
    const steps = (fs.existsSync(attn) ? fs.readdirSync(attn) : [])
      .filter((d) => /^step_\d+$/.test(d)).map((d) => Number(d.slice(5))).sort((x, y) => x - y);
    let href = path.relative(pageDir, path.resolve(dir));
    href = href ? href.split(path.sep).map(encodeURIComponent).join('/') + '/' : '';
    expect.runs.push({ href, steps });
    expect.ckptLinks += fs.readdirSync(path.join(dir, 'ckpt'))
      .filter((f) => /^step_\d+\.safetensors$/.test(f)).length;
  });
  Object.assign(expect.charts, { loss, lr, accuracy });
  // the slider moves over every step that any run has a map of
  expect.steps = [...new Set(expect.runs.flatMap((run) => run.steps))].sort((x, y) => x - y);
  return expect;
}

// The picture run `run` shows at slider step s: its newest map at or before
// s, its first when all of them are later (the note under the viewer).
function heatmapAt(run, s, layer) {
  const earlier = run.steps.filter((t) => t <= s);
  const t = earlier.length ? earlier[earlier.length - 1] : run.steps[0];
  return `${run.href}attn/step_${String(t).padStart(6, '0')}/layer_${layer}.png`;
}

// ---- checking ----

const same = (a, b) => JSON.stringify(a) === JSON.stringify(b);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// Collects the failed checks, so that one run names all of them.
class Checks {
  constructor() { this.problems = []; }
  fail(what) { this.problems.push(what); }
  ok(cond, what) {
    if (!cond) this.fail(what);
    return Boolean(cond);
  }
  equal(got, want, what) {
    return this.ok(same(got, want), `${what}: ${JSON.stringify(got)}, expected ${JSON.stringify(want)}`);
  }
  // The page follows a control through its events and image loads, not at
  // once: ask again until the answer is the expected one or time is up.
  async settles(get, want, what) {
    const end = Date.now() + SETTLE_MS;
    let got = await get();
    while (!same(got, want) && Date.now() < end) {
      await sleep(50);
      got = await get();
    }
    return this.equal(got, want, what);
  }
}

// Everything the page reports on its own: errors, failed loads, crashes and
// any address that is not one of the local files.
function watchPage(page, c) {
  page.on('pageerror', (e) => c.fail('exception: ' + e.message));
  page.on('console', (m) => {
    if (m.type() === 'error' || m.type() === 'assert') c.fail(`console.${m.type()}: ${m.text()}`);
  });
  page.on('requestfailed', (r) => c.fail(`failed load: ${r.url()} (${r.failure().errorText})`));
  page.on('request', (r) => {
    if (!/^(file|data):/.test(r.url())) c.fail('a request beyond the local files: ' + r.url());
  });
  page.on('crash', () => c.fail('the page crashed'));
}

async function checkCharts(page, expect, c, info) {
  const drawn = await page.locator('svg.chart').evaluateAll((svgs) => svgs.map((svg) => ({
    id: svg.id,
    series: [...svg.querySelectorAll('polyline.s')].map((l) => ({
      n: Number(l.dataset.n),
      points: l.getAttribute('points').trim().split(/\s+/).length,
    })),
  })));
  const wanted = Object.keys(expect.charts);
  c.equal(drawn.length, wanted.length, 'number of charts');
  c.equal(drawn.map((d) => d.id).filter((id) => !(id in expect.charts)), [], 'charts not expected');
  const byId = new Map(drawn.map((d) => [d.id, d]));
  info.points = 0;
  for (const [id, want] of Object.entries(expect.charts)) {
    const chart = byId.get(id);
    if (!chart) {
      c.fail(`no chart #${id}`);
      continue;
    }
    const series = want.filter((n) => n > 0);
    c.equal(chart.series.length, series.length, `#${id}: series`);
    series.forEach((n, i) => {
      const got = chart.series[i];
      if (!got) return;
      info.points += got.points;
      c.equal(got.n, n, `#${id} series ${i}: data-n`);
      if (n <= MAX_POINTS) c.equal(got.points, n, `#${id} series ${i}: points`);
      else {
        c.ok(got.points <= MAX_POINTS && got.points >= MAX_POINTS / 2,
          `#${id} series ${i}: ${got.points} points from ${n}, expected ${MAX_POINTS / 2}..${MAX_POINTS}`);
      }
    });
  }
}

async function checkViewer(page, expect, c, info) {
  const figs = page.locator('figure.att');
  const slider = page.locator('#att-step');
  const layerSel = page.locator('#att-layer'), headSel = page.locator('#att-head');
  const nFigs = await figs.count(), nSliders = await slider.count();
  if (!c.ok(nFigs === expect.runs.length && nSliders === 1,
    `attention viewer missing: ${nFigs} pictures for ${expect.runs.length} runs, ${nSliders} step sliders`)) {
    return;
  }
  const data = await page.evaluate(() => JSON.parse(document.getElementById('report-data').textContent));
  c.equal(data.runs.map((run) => run.steps), expect.runs.map((run) => run.steps),
    "the page's heatmap steps against the attn/ folders");
  const srcs = () => figs.evaluateAll((fs) => fs.map((f) => f.querySelector('img').getAttribute('src')));
  const captions = () => figs.evaluateAll((fs) => fs.map((f) => f.querySelector('figcaption').textContent));
  const label = () => page.locator('#att-step-label').textContent();
  const heads = () => figs.evaluateAll((fs) => fs.map((f) => {
    const box = f.querySelector('.crop');
    return { head: box.dataset.head, cropped: box.classList.contains('cropped') };
  }));
  // every picture shown has loaded, once the page has asked for it
  const loaded = async (what) => {
    await page.waitForFunction(() => [...document.querySelectorAll('figure.att img')]
      .every((i) => i.hidden || i.complete), null, { timeout: SETTLE_MS }).catch(() => {});
    const broken = await figs.evaluateAll((fs) => fs.map((f) => f.querySelector('img'))
      .filter((i) => !i.hidden && !(i.complete && i.naturalWidth > 0)).map((i) => i.src));
    c.equal(broken, [], `${what}: heatmaps that did not load`);
  };
  // The pictures a control asks for, and their loads finished before the
  // next control: a load the next control cut short would be the test's own
  // doing, and it would be reported as a failed load.
  const shows = async (want, what) => {
    await c.settles(srcs, want, what);
    await loaded(what);
  };
  const steps = expect.steps, last = steps.length - 1;
  const at = (s, layer) => expect.runs.map((run) => heatmapAt(run, s, layer));

  await loaded('on opening');
  c.equal(Number(await slider.getAttribute('max')) + 1, steps.length, 'slider steps');

  // head 1 cut out of the layer picture; the message tells whether the
  // picture's size differs from the layout the page predicts
  await headSel.selectOption('1');
  const oneHead = expect.runs.map(() => ({ head: '1', cropped: true }));
  if (!await c.settles(heads, oneHead, 'head 1 cut out (data-head, cropped)')) {
    const sizes = await figs.evaluateAll((fs) => fs.map((f) => {
      const img = f.querySelector('img');
      return `${img.naturalWidth}x${img.naturalHeight}`;
    }));
    c.fail(`pictures ${sizes.join(', ')}; layout predicts ${data.runs.map((run) => run.size.join('x')).join(', ')}`);
  }
  for (let r = 0; r < nFigs; r++) {
    const box = await figs.nth(r).locator('.crop').boundingBox();
    c.ok(box && box.width > 0 && box.height > 0, `run ${r}: empty crop ${JSON.stringify(box)}`);
  }
  await headSel.selectOption('-1');
  await c.settles(heads, expect.runs.map(() => ({ head: '-1', cropped: false })), 'all heads shown');
  await headSel.selectOption('0');

  // the slider set at either end, then the layer picker
  await slider.fill('0');
  await shows(at(steps[0], 0), 'slider at 0');
  await c.settles(label, 'step ' + steps[0], 'step label at 0');
  const first = await srcs();
  await slider.fill(String(last));
  await shows(at(steps[last], 0), 'slider at the end');
  await c.settles(label, 'step ' + steps[last], 'step label at the end');
  const end = await srcs();
  c.ok(!same(first, end), 'the slider does not change the picture');
  await layerSel.selectOption('1');
  await shows(at(steps[last], 1), 'layer 1');
  const layer1 = await srcs();
  await c.settles(async () => (await captions()).every((t) => t.includes('layer 1')), true,
    `captions name layer 1 (${JSON.stringify(await captions())})`);
  info.srcs = { first, last: end, layer1 };

  // the keyboard moves the slider as the mouse would
  await slider.press('Home');
  await shows(at(steps[0], 1), 'slider after Home');
  await c.settles(label, 'step ' + steps[0], 'step label after Home');
  if (steps.length > 1) {
    await slider.press('ArrowRight');
    await shows(at(steps[1], 1), 'slider after Home, ArrowRight');
    await c.settles(label, 'step ' + steps[1], 'step label after Home, ArrowRight');
  }
  await slider.press('End');
  await shows(at(steps[last], 1), 'slider after End');
  // each caption links to the picture above it
  const links = await figs.evaluateAll((fs) => fs.map((f) => {
    const a = f.querySelector('figcaption a');
    return a && a.getAttribute('href');
  }));
  c.equal(links, await srcs(), 'caption links');

  // the state the screenshot shows
  await layerSel.selectOption('0');
  await shows(at(steps[last], 0), 'back at layer 0');
}

async function checkFormation(page, expect, c, info) {
  const formed = expect.formation.filter(Boolean).length;
  c.equal(await page.locator('section#formation').count(), formed ? 1 : 0, 'Formation sections');
  info.formation = [];
  for (const [r, f] of expect.formation.entries()) {
    const chart = page.locator(`#r${r}-formation`);
    if (!f) {
      c.equal(await page.locator(`#r${r}-formation-events`).count(), 0, `run ${r}: a Formation table`);
      continue;
    }
    if (!c.ok(await chart.count() === 1, `run ${r}: no Formation chart`)) continue;
    const names = await chart.locator('polyline.s').evaluateAll((ls) => ls.map((l) => l.dataset.name));
    c.equal(names, f.names.filter((_, i) => f.counts[i] > 0), `run ${r}: Formation series`);
    const step = (e) => (e.step === null ? '' : String(e.step));
    // the jump: a dashed line across the plot and its label; the others: a tick each
    const marks = await chart.locator('g.mark').evaluateAll((gs) => gs.map((g) => {
      const label = g.querySelector('text');
      return { event: g.dataset.event, step: g.dataset.step,
        lines: g.querySelectorAll('line').length > 0, label: label ? label.textContent : null };
    }));
    const wantMarks = f.events.filter((e) => e.step !== null).map((e) => ({ event: e.event,
      step: step(e), lines: true, label: e.event === f.major ? `${f.major}: step ${e.step}` : null }));
    c.equal(marks, wantMarks, `run ${r}: Formation markers`);
    c.ok(f.events[0].step === null || marks.some((m) => m.event === f.major),
      `run ${r}: no ${f.major} marker`);
    const table = await page.locator(`#r${r}-formation-events tr[data-event]`).evaluateAll((trs) =>
      trs.map((t) => ({ event: t.dataset.event, step: t.dataset.step })));
    c.equal(table, f.events.map((e) => ({ event: e.event, step: step(e) })),
      `run ${r}: Formation table`);
    // formation.csv, written with the run's own page
    const file = path.join(f.dir, 'formation.csv');
    if (fs.existsSync(file)) {
      const rows = csvObjects(file);
      const got = rows.map((row) =>
        [row.event, row.step, num(row.value_first), num(row.value_last), row.head]);
      c.equal(got, f.events.map((e) => [e.event, step(e), csvNum(e.first), csvNum(e.last), e.head]),
        `run ${r}: formation.csv`);
      const offEval = rows.filter((row) => row.step !== '' && !f.evalSteps.includes(num(row.step)));
      c.equal(offEval.map((row) => row.step), [], `run ${r}: formation.csv steps that are no eval's`);
    }
    info.formation.push(Object.fromEntries(f.events.map((e) => [e.event, e.step])));
  }
}

// A corpus run's induction charts: each series' halfway tick, in series order.
async function checkLmMarks(page, expect, c, info) {
  info.lmMarks = 0;
  for (const [id, want] of Object.entries(expect.lmMarks)) {
    const got = await page.locator(`#${id} g.mark`).evaluateAll((gs) => gs.map((g) =>
      ({ event: g.dataset.event, step: g.dataset.step })));
    c.equal(got, want, `#${id}: halfway ticks`);
    info.lmMarks += got.length;
  }
}

async function checkProbes(page, expect, c) {
  for (const [r, text] of Object.entries(expect.probes)) {
    const el = page.locator('#probe-r' + r);
    // the page draws a newline as ↵ and a tab as →
    const shown = (await el.count()) ?
      (await el.textContent()).replace(/\u21b5/g, '\n').replace(/\u2192/g, '\t') : null;
    c.equal(shown, text, `run ${r}: probe`);
  }
}

async function checkCompare(page, expect, c, info) {
  const ckA = page.locator('#ckpt-a'), ckB = page.locator('#ckpt-b'), cmd = page.locator('#ckpt-cmd');
  if (!c.ok((await ckA.count()) === 1 && (await ckB.count()) === 1 && (await cmd.count()) === 1,
    'checkpoint selects or command missing')) return;
  const command = (a, b) => `./qkscope compare ${a} ${b}`;
  const before = await cmd.textContent();
  c.equal(before, command(await ckA.inputValue(), await ckB.inputValue()), 'compare command');
  const values = (sel) => sel.locator('option').evaluateAll((os) => os.map((o) => o.value));
  const optsA = await values(ckA), optsB = await values(ckB);
  await ckB.selectOption(optsB[0]);
  await ckA.selectOption(optsA[optsA.length - 1]);
  const want = command(optsA[optsA.length - 1], optsB[0]);
  await c.settles(() => cmd.textContent(), want, 'compare command after the selects changed');
  info.command = await cmd.textContent();
  c.ok(info.command !== before, 'the command did not change');
  const ckptLinks = await page.locator('a[href*="ckpt/step_"]').count();
  c.ok(ckptLinks >= expect.ckptLinks, `${ckptLinks} checkpoint links, expected ${expect.ckptLinks}`);
}

async function checkLinks(page, c) {
  const hrefs = await page.locator('a[href]').evaluateAll((as) => as.map((a) => a.href));
  const files = [...new Set(hrefs.filter((h) => h.startsWith('file:')).map((h) => h.replace(/#.*/, '')))];
  c.equal(files.filter((f) => !fs.existsSync(fileURLToPath(f))), [], 'links to missing files');
}

// Blank means under 1% of the pixels darker than near-white, or under 50
// colours; the PNG is decoded by the browser, on a page of its own.
async function checkScreenshot(context, page, args, c, info) {
  info.height = await page.evaluate(() => document.documentElement.scrollHeight);
  const height = Math.min(info.height, SHOT_MAX_HEIGHT);
  const png = await page.screenshot({ path: args.shot, fullPage: true,
    clip: { x: 0, y: 0, width: WIDTH, height } });
  const scratch = await context.newPage();
  const stats = await scratch.evaluate(async (b64) => {
    const img = new Image();
    img.src = 'data:image/png;base64,' + b64;
    await img.decode();
    const canvas = document.createElement('canvas');
    canvas.width = img.naturalWidth;
    canvas.height = img.naturalHeight;
    const ctx = canvas.getContext('2d', { willReadFrequently: true });
    ctx.drawImage(img, 0, 0);
    const px = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
    let inked = 0;
    const colours = new Set();
    for (let i = 0; i < px.length; i += 4) {
      if (px[i] < 240 || px[i + 1] < 240 || px[i + 2] < 240) inked++;
      if (colours.size < 5000) colours.add((px[i] << 16) | (px[i + 1] << 8) | px[i + 2]);
    }
    return { width: canvas.width, height: canvas.height, inked: inked / (px.length / 4), colours: colours.size };
  }, png.toString('base64'));
  await scratch.close();
  info.screenshot = stats;
  c.equal([stats.width, stats.height], [WIDTH, height], 'screenshot size');
  c.ok(stats.inked >= 0.01 && stats.colours >= 50,
    `screenshot looks blank: ${(stats.inked * 100).toFixed(2)}% inked, ${stats.colours} colours`);
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const expect = expectations(args);
  const c = new Checks();
  const report = () => console.error(args.page + ':\n  ' + c.problems.join('\n  '));
  const watchdog = setTimeout(() => {
    c.fail(`timed out after ${TOTAL_MS / 1000} s`);
    report();
    process.exit(1); // playwright-core ends the browser it started
  }, TOTAL_MS);
  const browser = await chromium.launch({ executablePath: args.chromium, args: CHROMIUM_ARGS });
  const info = {};
  try {
    const context = await browser.newContext({ viewport: { width: WIDTH, height: 1200 }, deviceScaleFactor: 1 });
    const page = await context.newPage();
    page.setDefaultTimeout(2 * SETTLE_MS);
    watchPage(page, c);
    await page.goto(pathToFileURL(path.resolve(args.page)).href, { waitUntil: 'load' });
    await checkCharts(page, expect, c, info);
    await checkFormation(page, expect, c, info);
    await checkLmMarks(page, expect, c, info);
    await checkViewer(page, expect, c, info);
    await checkProbes(page, expect, c);
    await checkCompare(page, expect, c, info);
    await checkLinks(page, c);
    info.loadMs = await page.evaluate(() => {
      const nav = performance.getEntriesByType('navigation')[0];
      return Math.round(nav.loadEventEnd - nav.startTime);
    });
    await checkScreenshot(context, page, args, c, info);
  } catch (e) {
    // Playwright's message says what it waited for; the stack adds nothing
    c.fail('check stopped: ' + e.message.split('\n').filter((l) => !/^\s+at /.test(l)).join('\n    '));
  } finally {
    await browser.close();
  }
  clearTimeout(watchdog);
  if (c.problems.length) {
    report();
    process.exit(1);
  }
  console.log(JSON.stringify(info));
}

main().catch((e) => {
  console.error('report_check: ' + (e.stack || String(e)));
  process.exit(1);
});
