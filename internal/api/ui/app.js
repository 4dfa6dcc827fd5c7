// The registry's web page: a client of the JSON API under /v1 like any other, for approvers and
// deployers. Model names, comments, params and tags come from users, so every value reaches the page as
// a text node or an attribute set through the DOM, never as markup.
'use strict';

(function () {
  const TOKEN_KEY = 'modelreg.token';
  const SVG_NS = 'http://www.w3.org/2000/svg';
  const main = document.getElementById('main');

  // ---------- DOM ----------

  function fill(node, attrs, children) {
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === 'class') node.setAttribute('class', v);
      else if (k.startsWith('on')) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v === true ? '' : String(v));
    }
    for (const c of children.flat(Infinity)) {
      if (c === undefined || c === null || c === false) continue;
      node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return node;
  }
  // put replaces node's children; absent parts (null, false) are left out, not shown as "null".
  const put = (node, ...children) => {
    node.replaceChildren();
    return fill(node, {}, children);
  };
  const h = (tag, attrs, ...children) => fill(document.createElement(tag), attrs, children);
  const svg = (tag, attrs, ...children) => fill(document.createElementNS(SVG_NS, tag), attrs, children);

  // ---------- API ----------

  class ApiError extends Error {
    constructor(status, code, message, details) {
      super(message);
      this.status = status;
      this.code = code;
      this.details = details || [];
    }
  }

  async function api(method, path, opts = {}) {
    const headers = { Accept: 'application/json' };
    if (opts.body !== undefined) headers['Content-Type'] = 'application/json';
    // Reads go without the token: a token the registry stopped accepting must not hide what anyone may read.
    if (opts.token) headers.Authorization = 'Bearer ' + opts.token;
    let resp;
    try {
      resp = await fetch(path, {
        method, headers, cache: 'no-store', credentials: 'omit',
        body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
      });
    } catch (e) {
      throw new ApiError(0, 'unreachable', 'the registry did not answer (' + e.message + ')');
    }
    const text = await resp.text();
    let data = null;
    try { data = text ? JSON.parse(text) : null; } catch (_) { /* not JSON: shown as text below */ }
    if (!resp.ok) {
      throw new ApiError(resp.status, (data && data.code) || 'error',
        (data && data.message) || text || resp.statusText, data && data.details);
    }
    return data;
  }

  // listAll follows nextCursor; max bounds what one page load asks for.
  async function listAll(path, key, max = 2000) {
    const items = [];
    let cursor = '';
    do {
      const q = (path.includes('?') ? '&' : '?') + 'limit=500' + (cursor ? '&cursor=' + encodeURIComponent(cursor) : '');
      const page = await api('GET', path + q);
      items.push(...page[key]);
      cursor = page.nextCursor || '';
    } while (cursor && items.length < max);
    return { items, more: cursor !== '' };
  }

  const enc = encodeURIComponent;
  const modelHref = (m) => '/ui/models/' + enc(m);
  const versionHref = (m, v) => modelHref(m) + '/versions/' + v;
  const modelAPI = (m) => '/v1/models/' + enc(m);

  // ---------- Formatting ----------

  function fmtTime(s) {
    if (!s) return '';
    const d = new Date(s);
    if (isNaN(d)) return String(s);
    return d.toISOString().slice(0, 19).replace('T', ' ') + ' UTC';
  }
  function fmtNum(x) {
    if (typeof x !== 'number' || !isFinite(x)) return String(x);
    if (Number.isInteger(x)) return String(x);
    return String(Number(x.toPrecision(6)));
  }
  function fmtDelta(x) {
    const s = fmtNum(Number(x.toPrecision(6)));
    return x > 0 ? '+' + s : s.replace('-', '−');
  }
  function fmtBytes(n) {
    if (typeof n !== 'number') return '';
    const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
    let i = 0;
    let v = n;
    while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
    return (i === 0 ? String(v) : v.toFixed(v < 10 ? 1 : 0)) + ' ' + units[i];
  }
  function fmtDuration(sec) {
    if (!sec) return '';
    if (sec % 86400 === 0) return sec / 86400 + ' d';
    if (sec % 3600 === 0) return sec / 3600 + ' h';
    if (sec % 60 === 0) return sec / 60 + ' min';
    return sec + ' s';
  }
  const opLabel = (op) => ({ '>=': '≥', '<=': '≤' })[op] || op;
  const stageLabel = (st) => (st === 'PendingApproval' ? 'Pending approval' : st);
  const badge = (st, id) => h('span', { class: 'stage stage-' + st, id }, stageLabel(st));
  const same = (a, b) => String(a).toLowerCase() === String(b).toLowerCase();

  // safeURL keeps only web links: a validator's report URL is outside input, and a link to a
  // javascript URL would run in this page.
  function safeURL(u) {
    try {
      const url = new URL(u, location.href);
      return url.protocol === 'http:' || url.protocol === 'https:' ? url.href : null;
    } catch (_) {
      return null;
    }
  }

  function table(headers, rows, attrs) {
    return h('div', { class: 'wrap' }, h('table', attrs || {},
      h('thead', {}, h('tr', {}, headers.flat().map((c) => (c instanceof Node ? c : h('th', {}, c))))),
      h('tbody', {}, rows)));
  }
  const kv = (pairs) => h('table', { class: 'kv' }, h('tbody', {},
    pairs.filter((p) => p[1] !== undefined && p[1] !== null && p[1] !== '').map(([k, v]) => h('tr', {}, h('th', {}, k), h('td', {}, v)))));
  const card = (title, ...body) => h('section', { class: 'card' }, h('h2', {}, title), body);
  const empty = (text) => h('p', { class: 'empty' }, text);

  function errorBox(err, id) {
    const status = err.status ? err.status + ' ' : '';
    return h('div', { class: 'alert error', role: 'alert', id },
      h('span', { class: 'code' }, status + (err.code || 'error')),
      err.message,
      err.details && err.details.length ? h('ul', {}, err.details.map((d) => h('li', {}, d))) : null);
  }

  function metricSummary(metrics) {
    const names = Object.keys(metrics || {}).sort();
    return names.map((k, i) => [i ? ', ' : '', h('span', { class: 'nowrap' }, k + ' ' + fmtNum(metrics[k]))]);
  }

  // ---------- Sign-in ----------

  const session = { model: '', who: null, error: '' };
  const token = () => sessionStorage.getItem(TOKEN_KEY) || '';

  async function loadWhoami() {
    session.who = null;
    const tok = token();
    if (!tok) return;
    try {
      session.who = await api('GET', '/v1/whoami' + (session.model ? '?model=' + enc(session.model) : ''), { token: tok });
    } catch (e) {
      if (e.status === 401) {
        sessionStorage.removeItem(TOKEN_KEY);
        session.error = 'Signed out: ' + e.message;
      } else {
        session.error = 'Could not check the token: ' + e.message;
      }
    }
  }

  function renderSignin() {
    const box = document.getElementById('signin');
    const who = session.who;
    if (who) {
      let roles = null;
      if (session.model) {
        roles = h('span', { class: 'roles', id: 'roles' },
          who.roles && who.roles.length ? who.roles.join(', ') + ' on ' + session.model : 'no role on ' + session.model);
      }
      put(box,
        h('span', { class: 'who' }, 'Signed in as ', h('b', { id: 'principal' }, who.principal)),
        roles,
        h('button', { class: 'plain', id: 'signout', type: 'button', onclick: signOut }, 'Sign out'));
      return;
    }
    const input = h('input', { type: 'password', id: 'token', placeholder: 'Paste a bearer token', autocomplete: 'off', 'aria-label': 'Bearer token' });
    const form = h('form', {
      class: 'signin',
      onsubmit: (ev) => { ev.preventDefault(); signIn(input.value.trim()); },
    }, input, h('button', { class: 'plain', id: 'signin-button', type: 'submit' }, 'Sign in'));
    put(box, form, session.error ? h('span', { class: 'error', id: 'signin-error', role: 'alert' }, session.error) : null);
  }

  async function signIn(tok) {
    session.error = '';
    if (!tok) {
      session.error = 'Paste a token first.';
      renderSignin();
      return;
    }
    try {
      await api('GET', '/v1/whoami', { token: tok });
    } catch (e) {
      session.error = (e.status === 401 ? 'Token refused: ' : '') + e.message;
      renderSignin();
      return;
    }
    sessionStorage.setItem(TOKEN_KEY, tok);
    await refresh();
  }

  async function signOut() {
    sessionStorage.removeItem(TOKEN_KEY);
    session.error = '';
    await refresh();
  }

  // ---------- Pages ----------

  function setCrumbs(parts) {
    const nav = document.getElementById('crumbs');
    const items = [h('a', { href: '/ui/' }, 'Models')];
    for (const p of parts) {
      items.push(h('span', { class: 'sep' }, '›'));
      items.push(p.href ? h('a', { href: p.href }, p.text) : h('span', {}, p.text));
    }
    put(nav, ...items);
  }

  async function modelsPage() {
    setCrumbs([]);
    document.title = 'Models · modelreg';
    const [models, waiting] = await Promise.all([
      listAll('/v1/models', 'models'),
      listAll('/v1/versions?stage=PendingApproval', 'versions'),
    ]);

    const waitRows = waiting.items.map((v) => h('tr', {},
      h('td', {}, h('a', { href: versionHref(v.model, v.version) }, v.model + ' v' + v.version)),
      h('td', {}, v.registeredBy || ''),
      h('td', {}, metricSummary(v.metrics)),
      h('td', { class: 'nowrap muted' }, fmtTime(v.updatedAt))));
    const waitCard = h('section', { class: 'card', id: 'waiting' },
      h('h2', {}, 'Waiting for a decision', h('span', { class: 'count' }, String(waiting.items.length) + (waiting.more ? '+' : ''))),
      waitRows.length
        ? table(['Version', 'Registered by', 'Metrics', 'Waiting since'], waitRows)
        : empty('Nothing waits for a decision.'));

    const modelRows = models.items.map((m) => h('tr', {},
      h('td', {}, h('a', { href: modelHref(m.name) }, m.name)),
      h('td', {}, m.productionVersion
        ? h('a', { href: versionHref(m.name, m.productionVersion) }, 'v' + m.productionVersion)
        : h('span', { class: 'muted' }, 'none')),
      h('td', { class: 'num' }, m.latestVersion ? 'v' + m.latestVersion : ''),
      h('td', { class: 'num' }, h('span', { class: 'pill ' + (m.waitingForApproval ? 'waiting' : 'zero') }, String(m.waitingForApproval))),
      h('td', { class: 'nowrap muted' }, fmtTime(m.updatedAt))));
    const modelCard = h('section', { class: 'card', id: 'models' },
      h('h2', {}, 'Models', h('span', { class: 'count' }, String(models.items.length) + (models.more ? '+' : ''))),
      modelRows.length
        ? table(['Model', 'In production', h('th', { class: 'num' }, 'Latest'), h('th', { class: 'num' }, 'Waiting'), 'Updated'], modelRows)
        : empty('No model is registered yet.'));

    put(main, h('h1', {}, 'Models'),
      h('p', { class: 'sub' }, 'Each model with its production version, and every version that waits for a decision.'),
      waitCard, modelCard);
  }

  // direction is +1 when larger values of metric are better, -1 when smaller are, 0 when the policy
  // does not say: the champion metric's direction, else the direction its thresholds imply.
  function direction(metric, policy) {
    if (!policy) return 0;
    if (policy.championMetric === metric) return policy.championLowerIsBetter ? -1 : 1;
    for (const t of policy.thresholds || []) {
      if (t.metric !== metric) continue;
      if (t.op.startsWith('>')) return 1;
      if (t.op.startsWith('<')) return -1;
    }
    return 0;
  }

  function metricNames(versions, policy) {
    const set = new Set();
    for (const v of versions) for (const k of Object.keys(v.metrics || {})) set.add(k);
    const names = [...set].sort();
    const champ = policy && policy.championMetric;
    if (champ && set.has(champ)) return [champ, ...names.filter((n) => n !== champ)];
    return names;
  }

  // niceTicks spans [lo, hi] with about n steps of 1, 2, 2.5 or 5 times a power of ten.
  function niceTicks(lo, hi, n) {
    const raw = (hi - lo) / n;
    const p = Math.pow(10, Math.floor(Math.log10(raw)));
    const step = [1, 2, 2.5, 5, 10].map((m) => m * p).find((s) => s >= raw);
    const decimals = Math.max(0, -Math.floor(Math.log10(step)) + (step / p === 2.5 ? 1 : 0));
    const ticks = [];
    for (let t = Math.floor(lo / step) * step; t <= hi + step * 1e-9 || ticks.length < 2; t += step) {
      ticks.push(Number(t.toFixed(decimals)));
      if (ticks.length > 20) break;
    }
    if (ticks[ticks.length - 1] < hi) ticks.push(Number((ticks[ticks.length - 1] + step).toFixed(decimals)));
    return { ticks, decimals };
  }

  function markerClass(stage) {
    switch (stage) {
      case 'Production': return 'production';
      case 'Archived': return 'archived';
      case 'PendingApproval': return 'pending';
      case 'Rejected': case 'Failed': return 'rejected';
      default: return 'other';
    }
  }

  function marker(kind, x, y, extra) {
    if (kind === 'production') {
      const r = 7;
      return svg('path', Object.assign({ class: 'pt pt-production', d: `M${x} ${y - r}L${x + r} ${y}L${x} ${y + r}L${x - r} ${y}Z` }, extra));
    }
    return svg('circle', Object.assign({ class: 'pt pt-' + kind, cx: x, cy: y, r: kind === 'archived' ? 4.5 : 5 }, extra));
  }

  const LEGEND = [['production', 'Production'], ['archived', 'Archived'], ['pending', 'Waiting for approval'],
    ['rejected', 'Rejected or failed'], ['other', 'Other stages']];

  function legend() {
    return h('div', { class: 'legend', id: 'legend' }, LEGEND.map(([kind, label]) =>
      h('span', {}, svg('svg', { viewBox: '0 0 16 16', 'aria-hidden': 'true' }, marker(kind, 8, 8)), label)));
  }

  function metricChart(model, metric, versions, policy) {
    const pts = versions.filter((v) => v.metrics && typeof v.metrics[metric] === 'number')
      .map((v) => ({ version: v.version, value: v.metrics[metric], stage: v.stage }))
      .sort((a, b) => a.version - b.version);
    const W = 520, H = 200, L = 56, R = 16, T = 14, B = 32;
    const all = ((policy && policy.thresholds) || []).filter((t) => t.metric === metric);
    let lo = Math.min(...pts.map((p) => p.value)), hi = Math.max(...pts.map((p) => p.value));
    // A threshold far from every value would squash the points into a line; it is named instead.
    const near = Math.max(hi - lo, Math.abs(hi) * 0.05, 1e-9);
    const thresholds = all.filter((t) => t.value >= lo - near && t.value <= hi + near);
    const offChart = all.filter((t) => !thresholds.includes(t));
    for (const t of thresholds) {
      lo = Math.min(lo, t.value);
      hi = Math.max(hi, t.value);
    }
    if (lo === hi) {
      const pad = Math.abs(lo) * 0.05 || 1;
      lo -= pad;
      hi += pad;
    }
    const { ticks, decimals } = niceTicks(lo, hi, 4);
    lo = ticks[0];
    hi = ticks[ticks.length - 1];
    const v0 = pts[0].version - 0.5, v1 = pts[pts.length - 1].version + 0.5;
    const X = (v) => L + ((v - v0) / (v1 - v0)) * (W - L - R);
    const Y = (y) => T + ((hi - y) / (hi - lo)) * (H - T - B);

    const g = svg('svg', { viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': `${metric} of each version of ${model}` });
    for (const t of ticks) {
      g.append(svg('line', { class: 'grid', x1: L, x2: W - R, y1: Y(t), y2: Y(t) }));
      g.append(svg('text', { class: 'tick', x: L - 8, y: Y(t) + 4, 'text-anchor': 'end' }, t.toFixed(decimals)));
    }
    g.append(svg('line', { class: 'axis', x1: L, x2: W - R, y1: H - B, y2: H - B }));
    g.append(svg('line', { class: 'axis', x1: L, x2: L, y1: T, y2: H - B }));
    const every = Math.max(1, Math.ceil(pts.length / 12));
    pts.forEach((p, i) => {
      if (i % every === 0 || i === pts.length - 1) {
        g.append(svg('text', { class: 'tick', x: X(p.version), y: H - B + 16, 'text-anchor': 'middle' }, 'v' + p.version));
      }
    });
    for (const t of thresholds) {
      g.append(svg('line', { class: 'threshold', x1: L, x2: W - R, y1: Y(t.value), y2: Y(t.value) }));
      g.append(svg('text', { class: 'threshold-label', x: W - R - 2, y: Y(t.value) - 5, 'text-anchor': 'end' }, 'threshold ' + opLabel(t.op) + ' ' + fmtNum(t.value)));
    }
    if (offChart.length) {
      g.append(svg('text', { class: 'off-chart', x: W - R - 2, y: T + 10, 'text-anchor': 'end' },
        offChart.map((t) => 'threshold ' + opLabel(t.op) + ' ' + fmtNum(t.value)).join(', ') + ' (off the chart)'));
    }
    if (pts.length > 1) {
      g.append(svg('polyline', { class: 'line', points: pts.map((p) => X(p.version) + ',' + Y(p.value)).join(' ') }));
    }
    for (const p of pts) {
      const link = svg('a', { href: versionHref(model, p.version) },
        marker(markerClass(p.stage), X(p.version), Y(p.value)),
        svg('title', {}, `v${p.version}: ${metric} ${fmtNum(p.value)} (${stageLabel(p.stage)})`));
      g.append(link);
    }
    const dir = direction(metric, policy);
    return h('section', { class: 'card chart' },
      h('h2', {}, metric, dir ? h('span', { class: 'count' }, dir > 0 ? 'higher is better' : 'lower is better') : null),
      g);
  }

  function policyRows(p, model) {
    p = p || {};
    const quorum = Math.max(1, p.requiredApprovals || 0);
    return [
      ['Quorum', quorum + ' approval' + (quorum > 1 ? 's from distinct principals' : '') + '; one reject rejects'],
      ['Allowed approvers', p.allowedApprovers && p.allowedApprovers.length
        ? p.allowedApprovers.join(', ')
        : 'any principal with the approve role on ' + model],
      ['Self-approval', p.allowSelfApproval ? 'allowed' : 'not allowed (the registrant may not approve)'],
      ['Approval deadline', p.approvalTimeoutSeconds ? fmtDuration(p.approvalTimeoutSeconds) + ' after validation, then rejected' : 'none'],
      ['Champion metric', p.championMetric
        ? p.championMetric + (p.championLowerIsBetter ? ' (lower is better)' : ' (higher is better)') +
          (p.championTolerance ? ', tolerance ' + fmtNum(p.championTolerance) : '')
        : 'none'],
      ['Thresholds', (p.thresholds || []).map((t) => t.metric + ' ' + opLabel(t.op) + ' ' + fmtNum(t.value)).join(', ') || 'none'],
      ['Required files', (p.requiredFiles || []).join(', ') || 'none'],
      ['External validators', (p.validators || []).map((v) => v.name).join(', ') || 'none'],
    ];
  }

  async function modelPage(name) {
    setCrumbs([{ text: name }]);
    document.title = name + ' · modelreg';
    const [model, list] = await Promise.all([api('GET', modelAPI(name)), listAll(modelAPI(name) + '/versions', 'versions')]);
    const versions = list.items;
    const policy = model.policy || {};
    const metrics = metricNames(versions, policy);

    const sub = [];
    sub.push(model.productionVersion
      ? ['In production: ', h('a', { href: versionHref(name, model.productionVersion) }, 'v' + model.productionVersion)]
      : 'Nothing in production');
    sub.push(' · ' + versions.length + (list.more ? '+' : '') + ' versions');
    if (model.waitingForApproval) sub.push(' · ' + model.waitingForApproval + ' waiting for a decision');

    const charts = metrics.length
      ? h('div', { class: 'grid2', id: 'charts' }, metrics.map((m) => metricChart(name, m, versions, policy)))
      : empty('No version has metrics to chart.');

    const shown = metrics.slice(0, 6);
    const rows = versions.map((v) => h('tr', { class: v.stage === 'Production' ? 'is-production' : null },
      h('td', {}, h('a', { href: versionHref(name, v.version) }, 'v' + v.version)),
      h('td', {}, badge(v.stage)),
      shown.map((m) => h('td', { class: 'num' }, v.metrics && m in v.metrics ? fmtNum(v.metrics[m]) : '')),
      h('td', {}, v.registeredBy || ''),
      h('td', { class: 'break' }, v.sourceRun || ''),
      h('td', { class: 'nowrap muted' }, fmtTime(v.createdAt))));

    put(main,
      h('h1', {}, name),
      h('p', { class: 'sub' }, sub),
      h('h3', {}, 'Metrics by version'),
      legend(),
      charts,
      h('section', { class: 'card', id: 'versions' },
        h('h2', {}, 'Versions', h('span', { class: 'count' }, 'newest first')),
        rows.length
          ? table(['Version', 'Stage', shown.map((m) => h('th', { class: 'num' }, m)), 'Registered by', 'Source run', 'Registered'], rows)
          : empty('No versions yet.')),
      card('Policy', kv(policyRows(policy, name))));
  }

  // ---------- Version page ----------

  async function loadVersion(name, n) {
    const [model, d] = await Promise.all([api('GET', modelAPI(name)), api('GET', modelAPI(name) + '/versions/' + n)]);
    let prod = null;
    if (model.productionVersion && model.productionVersion !== n) {
      const page = await api('GET', modelAPI(name) + '/versions?stage=Production&limit=1');
      prod = page.versions[0] || null;
    }
    return { name, n, model, d, prod };
  }

  function approversSoFar(decisions) {
    const out = [];
    for (const d of decisions || []) {
      if (d.kind === 'approve' && d.accepted && !out.some((a) => same(a, d.approver))) out.push(d.approver);
    }
    return out;
  }

  function decisionCard(st, flash, onDecide) {
    const { d, name } = st;
    const live = d.live;
    const validated = live && live.validation;
    const policy = (validated && validated.policy) || st.model.policy || {};
    const quorum = Math.max(1, policy.requiredApprovals || 0);
    const approved = approversSoFar(d.decisions);
    const section = h('section', { class: 'card decide', id: 'decision' }, h('h2', {}, 'Decision'));

    if (d.stage !== 'PendingApproval') {
      section.classList.remove('decide');
      section.append(h('p', { id: 'decision-state' }, d.stage === 'Approved'
        ? ['v' + d.version + ' is ', badge(d.stage), ' and being promoted to production.']
        : ['No decision is awaited: v' + d.version + ' is ', badge(d.stage), '.']));
      fill(section, {}, [flash]);
      return section;
    }

    const rules = [];
    rules.push(h('li', {}, 'Needs ', h('b', {}, quorum + ' approval' + (quorum > 1 ? 's' : '')),
      quorum > 1 ? ' from distinct principals' : '', '; ' + approved.length + ' so far', approved.length ? ' (' + approved.join(', ') + ')' : '', '.'));
    const allowed = policy.allowedApprovers || [];
    const registrant = d.registeredBy;
    const selfBlocked = !policy.allowSelfApproval && registrant;
    if (allowed.length) {
      const still = allowed.filter((a) => !approved.some((x) => same(x, a)) && !(selfBlocked && same(a, registrant)));
      rules.push(h('li', {}, 'Only these principals may decide: ' + allowed.join(', ') + '.'));
      rules.push(h('li', { id: 'may-decide' }, 'May still approve: ', h('b', {}, still.length ? still.join(', ') : 'nobody'),
        '. Any of them may reject.'));
    } else {
      const except = [];
      if (selfBlocked) except.push(registrant + ' (registered it)');
      for (const a of approved) except.push(a + ' (already approved)');
      rules.push(h('li', { id: 'may-decide' }, 'May still approve: any principal with the approve role on ' + name,
        except.length ? ', except ' + except.join(', ') : '', '. Any of them may reject.'));
    }
    if (live && live.approvalDeadline) {
      rules.push(h('li', {}, 'Decide before ' + fmtTime(live.approvalDeadline) + '; after that the version is rejected.'));
    }
    section.append(h('ul', { class: 'rules' }, rules));

    const who = session.who;
    let you;
    if (!who) {
      you = h('p', { class: 'hint' }, 'Sign in (top right) with a token holding the approve role on ' + name + ' to decide.');
    } else {
      const reasons = [];
      if (!(who.roles || []).includes('approve')) reasons.push('your token does not hold the approve role on ' + name);
      if (allowed.length && !allowed.includes(who.principal)) reasons.push(who.principal + ' is not an allowed approver');
      if (selfBlocked && same(who.principal, registrant)) reasons.push('you registered this version');
      you = reasons.length
        ? h('p', { class: 'hint' }, 'Deciding as ' + who.principal + ': the registry will likely refuse it, because ' + reasons.join(' and ') + '.')
        : h('p', {}, 'Deciding as ', h('b', {}, who.principal), '.');
    }
    section.append(you);

    const digest = d.manifestDigest || (live && live.manifestDigest) || '';
    const comment = h('textarea', { id: 'comment', maxlength: '4096', placeholder: 'Comment (why you approve or reject)', 'aria-label': 'Comment' });
    const approveBtn = h('button', { class: 'approve', id: 'approve', type: 'button' }, 'Approve');
    const rejectBtn = h('button', { class: 'reject', id: 'reject', type: 'button' }, 'Reject');
    const status = h('div', { id: 'action-status' }, flash);
    const go = (kind) => onDecide(kind, digest, comment.value, [approveBtn, rejectBtn], status);
    approveBtn.addEventListener('click', () => go('approve'));
    rejectBtn.addEventListener('click', () => go('reject'));
    section.append(comment,
      h('p', { class: 'digest' }, 'The decision is bound to manifest ', h('code', { id: 'digest', class: 'break' }, digest || '(none yet)'),
        ': the registry refuses it if the version no longer has that manifest.'),
      h('div', { class: 'actions' }, approveBtn, rejectBtn),
      status);
    return section;
  }

  function metricsCard(st) {
    const { d, prod, model } = st;
    const live = d.live;
    const policy = (live && live.validation && live.validation.policy) || model.policy || {};
    const mine = d.metrics || {};
    const names = metricNames([d, prod || {}], policy);
    const section = h('section', { class: 'card', id: 'metrics' }, h('h2', {}, 'Metrics'));
    if (!names.length) {
      section.append(empty('This version has no metrics.'));
      return section;
    }
    const label = (m) => {
      const dir = direction(m, policy);
      return h('td', {}, m, policy.championMetric === m ? h('div', { class: 'muted verdict' }, 'champion metric') : null,
        dir && policy.championMetric !== m ? h('div', { class: 'muted verdict' }, dir > 0 ? 'threshold: higher is better' : 'threshold: lower is better') : null);
    };
    if (!prod) {
      section.append(h('p', { class: 'muted' }, d.stage === 'Production' ? 'This is the production version.' : 'No version is in production to compare with.'));
      section.append(table(['Metric', h('th', { class: 'num' }, 'v' + d.version)],
        names.map((m) => h('tr', {}, label(m), h('td', { class: 'num' }, m in mine ? fmtNum(mine[m]) : '—')))));
      return section;
    }
    const theirs = prod.metrics || {};
    const rows = names.map((m) => {
      const a = mine[m], b = theirs[m];
      let cls = '', text = '—';
      if (typeof a === 'number' && typeof b === 'number') {
        const delta = a - b;
        const dir = direction(m, policy);
        text = delta === 0 ? 'same' : fmtDelta(delta);
        if (delta !== 0 && dir) {
          const better = delta * dir > 0;
          cls = better ? 'better' : 'worse';
          text += better ? ' better' : ' worse';
        } else if (delta !== 0) {
          cls = 'changed';
        }
      }
      return h('tr', {}, label(m),
        h('td', { class: 'num' }, typeof a === 'number' ? fmtNum(a) : '—'),
        h('td', { class: 'num' }, typeof b === 'number' ? fmtNum(b) : '—'),
        h('td', { class: ('num ' + cls).trim(), 'data-metric': m }, text));
    });
    section.append(h('p', { class: 'muted' }, 'Side by side with ', h('a', { href: versionHref(st.name, prod.version) }, 'v' + prod.version),
      ', in production now. Better and worse follow the policy\'s champion metric and thresholds; other differences are shaded grey.'));
    section.append(table(['Metric', h('th', { class: 'num' }, 'v' + d.version + ' (this)'), h('th', { class: 'num' }, 'v' + prod.version + ' (production)'), h('th', { class: 'num' }, 'Difference')], rows));
    return section;
  }

  function validationCard(st) {
    const { d } = st;
    const live = d.live;
    const section = h('section', { class: 'card', id: 'validation' }, h('h2', {}, 'Validation report'));
    if (!live) {
      section.append(h('p', { class: 'muted' }, 'The version\'s workflow did not answer, so its validation report cannot be shown' +
        (d.liveError ? ': ' + d.liveError : '.')));
      return section;
    }
    const rep = live.validation;
    if (!rep) {
      section.append(empty(live.failureReason ? 'No report: ' + live.failureReason : 'Validation has not finished yet.'));
      return section;
    }
    section.append(h('p', {}, rep.passed ? h('span', { class: 'ok' }, '✓ Passed') : h('span', { class: 'fail' }, '✗ Failed'),
      rep.championVersion ? h('span', { class: 'muted' }, ' · compared with production v' + rep.championVersion + ' when validated') : null));
    section.append(table(['Check', 'Result', 'Detail'], (rep.checks || []).map((c) => h('tr', {},
      h('td', { class: 'nowrap' }, c.name),
      h('td', {}, c.passed ? h('span', { class: 'ok' }, 'passed') : h('span', { class: 'fail' }, 'failed')),
      h('td', { class: 'break' }, c.detail)))));
    if (live.gates && live.gates.length) {
      section.append(h('h3', {}, 'External validators'));
      section.append(table(['Validator', 'Status', 'Detail', 'Report'], live.gates.map((g) => {
        const url = g.reportUrl && safeURL(g.reportUrl);
        return h('tr', {}, h('td', {}, g.name), h('td', {}, g.status), h('td', { class: 'break' }, g.detail || ''),
          h('td', {}, url ? h('a', { href: url, rel: 'noopener noreferrer' }, 'report') : (g.reportUrl || '')));
      })));
    }
    if (live.failureReason) section.append(h('p', { class: 'fail' }, live.failureReason));
    return section;
  }

  function historyCard(d) {
    const rows = (d.transitions || []).map((t) => h('tr', {},
      h('td', { class: 'nowrap muted' }, fmtTime(t.at)),
      h('td', { class: 'nowrap' }, t.from ? [badge(t.from), ' → '] : null, badge(t.to)),
      h('td', { class: 'nowrap' }, t.actor || ''),
      h('td', { class: 'break' }, t.reason || '')));
    return h('section', { class: 'card', id: 'history' }, h('h2', {}, 'Stage history'),
      rows.length ? table(['When', 'Stage', 'By', 'Why'], rows) : empty('No transitions recorded yet.'));
  }

  function decisionsCard(d) {
    const rows = (d.decisions || []).map((x) => h('tr', {},
      h('td', { class: 'nowrap muted' }, fmtTime(x.at)),
      h('td', {}, x.kind),
      h('td', {}, x.approver || ''),
      h('td', {}, x.accepted ? h('span', { class: 'ok' }, 'accepted') : [h('span', { class: 'fail' }, 'refused'), x.reason ? ': ' + x.reason : '']),
      h('td', { class: 'break comment' }, x.comment || ''),
      h('td', { class: 'muted' }, x.via)));
    return h('section', { class: 'card', id: 'decisions' }, h('h2', {}, 'Decisions so far'),
      rows.length ? table(['When', 'Kind', 'By', 'Result', 'Comment', 'Via'], rows) : empty('No decision yet.'));
  }

  function manifestCard(d) {
    const files = d.files || [];
    const total = files.reduce((n, f) => n + (f.size || 0), 0);
    const shown = files.slice(0, 200);
    const section = h('section', { class: 'card', id: 'manifest' }, h('h2', {}, 'Manifest'),
      kv([['Digest', h('code', { class: 'break' }, d.manifestDigest || 'not written yet')],
        ['URI', d.manifestUri ? h('code', { class: 'break' }, d.manifestUri) : ''],
        ['Files', files.length ? files.length + ' (' + fmtBytes(total) + ')' : '']]));
    if (shown.length) {
      section.append(h('h3', {}, 'Files'), table(['Path', h('th', { class: 'num' }, 'Size'), 'SHA-256'], shown.map((f) => h('tr', {},
        h('td', { class: 'break' }, f.path),
        h('td', { class: 'num nowrap' }, fmtBytes(f.size)),
        h('td', {}, h('code', { title: f.sha256 }, (f.sha256 || '').slice(0, 12) + '…'))))));
      if (files.length > shown.length) section.append(h('p', { class: 'muted' }, '… and ' + (files.length - shown.length) + ' more files.'));
    }
    return section;
  }

  function mapTable(title, m) {
    const keys = Object.keys(m || {}).sort();
    if (!keys.length) return null;
    return [h('h3', {}, title), table(['Key', 'Value'], keys.map((k) => h('tr', {}, h('td', { class: 'break' }, k), h('td', { class: 'break' }, m[k]))))];
  }

  function lineageCard(d) {
    return h('section', { class: 'card', id: 'lineage' }, h('h2', {}, 'Lineage'),
      kv([['Source run', d.sourceRun ? h('span', { class: 'break' }, d.sourceRun) : h('span', { class: 'muted' }, 'not given')],
        ['Registered by', d.registeredBy || ''],
        ['Registered', fmtTime(d.createdAt)],
        ['Workflow', h('code', {}, d.workflowId)],
        ['Idempotency key', h('code', { class: 'break' }, d.idempotencyKey)]]),
      mapTable('Params', d.params), mapTable('Tags', d.tags));
  }

  function deliveriesCard(d) {
    if (!d.deliveries || !d.deliveries.length) return null;
    return card('Deployment events', table(['When', 'Kind', 'Status', 'Error'], d.deliveries.map((x) => h('tr', {},
      h('td', { class: 'nowrap muted' }, fmtTime(x.at)), h('td', {}, x.kind + (x.previous ? ' (replaced v' + x.previous + ')' : '')),
      h('td', {}, x.status), h('td', { class: 'break' }, x.error || '')))));
  }

  function policyCard(st) {
    const live = st.d.live;
    const copy = live && live.validation && live.validation.policy;
    return h('section', { class: 'card', id: 'policy' }, h('h2', {}, 'Policy in force'),
      h('p', { class: 'muted' }, copy
        ? 'The copy this version was validated with: later changes to the model\'s policy do not apply to it.'
        : 'The model\'s current policy (this version has no validation report to take its copy from).'),
      kv(policyRows(copy || st.model.policy, st.name)));
  }

  async function versionPage(name, n) {
    setCrumbs([{ text: name, href: modelHref(name) }, { text: 'v' + n }]);
    document.title = name + ' v' + n + ' · modelreg';
    let st = await loadVersion(name, n);
    let flash = null;

    const render = () => {
      const { d } = st;
      put(main,
        h('h1', {}, name + ' v' + n, badge(d.stage, 'stage'), d.live && d.live.step ? h('span', { class: 'muted' }, d.live.step) : null),
        h('p', { class: 'sub' }, 'Registered by ' + (d.registeredBy || 'unknown') + ' on ' + fmtTime(d.createdAt) + ' · last change ' + fmtTime(d.updatedAt)),
        d.liveError ? h('p', { class: 'notice' }, 'Live workflow state unavailable: ' + d.liveError) : null,
        decisionCard(st, flash, decide),
        h('div', { class: 'grid2' }, metricsCard(st), validationCard(st)),
        historyCard(d),
        decisionsCard(d),
        h('div', { class: 'grid2' }, manifestCard(d), lineageCard(d)),
        h('div', { class: 'grid2' }, policyCard(st), deliveriesCard(d)));
    };

    async function decide(kind, digest, comment, buttons, status) {
      for (const b of buttons) b.disabled = true;
      put(status, h('p', { class: 'muted' }, 'Sending…'));
      let res;
      try {
        res = await api('POST', modelAPI(name) + '/versions/' + n + '/' + kind, { token: token(), body: { digest, comment } });
      } catch (e) {
        // The comment stays in the box: the approver fixes the cause (signs in, picks another token) and retries.
        put(status, errorBox(e, 'action-error'));
        for (const b of buttons) b.disabled = false;
        return;
      }
      let text = (kind === 'approve' ? 'Approved' : 'Rejected') + ' as ' + (session.who ? session.who.principal : 'you');
      if (res.required) text += ' (' + res.approvals + ' of ' + res.required + ' approvals)';
      text += res.stage === 'PendingApproval' ? '; the version waits for more approvals.' : '.';
      flash = h('div', { class: 'alert success', id: 'action-result', role: 'status' }, text);
      // An approval that meets the quorum passes through Approved while the model's workflow promotes
      // it; the page follows until the version settles so the approver sees where it ended.
      const deadline = Date.now() + 60000;
      for (;;) {
        try {
          st = await loadVersion(name, n);
        } catch (e) {
          flash = [flash, errorBox(e)];
        }
        render();
        const moving = ['Approved', 'Registered', 'Validating'].includes(st.d.stage);
        if (!moving || Date.now() > deadline) break;
        await new Promise((r) => setTimeout(r, 700));
      }
    }

    render();
  }

  function notFound() {
    setCrumbs([]);
    put(main, h('h1', {}, 'No such page'), h('p', {}, h('a', { href: '/ui/' }, 'All models')));
  }

  // ---------- Routing ----------

  function parseRoute() {
    const p = location.pathname;
    let m;
    try {
      if (p === '/ui/' || p === '/ui') return { page: modelsPage, args: [] };
      if ((m = /^\/ui\/models\/([^/]+)\/?$/.exec(p))) return { page: modelPage, model: decodeURIComponent(m[1]) };
      if ((m = /^\/ui\/models\/([^/]+)\/versions\/([1-9][0-9]*)\/?$/.exec(p))) {
        return { page: versionPage, model: decodeURIComponent(m[1]), version: Number(m[2]) };
      }
    } catch (_) { /* a malformed %-escape is no page */ }
    return { page: notFound };
  }

  async function show(r) {
    try {
      await r.page(r.model, r.version);
    } catch (e) {
      put(main, h('h1', {}, 'Could not load this page'), errorBox(e, 'page-error'));
    }
  }

  async function refresh() {
    const r = parseRoute();
    session.model = r.model || '';
    await loadWhoami();
    renderSignin();
    await show(r);
  }

  refresh();
})();
