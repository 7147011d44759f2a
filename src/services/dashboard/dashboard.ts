/**
 * The session service's web dashboard: server-rendered HTML (no scripts),
 * refreshed every 5 s (?refresh=N seconds, 0 for never). One row per session: its state, hosts, mounts,
 * cache hit ratio, bytes moved (fetched + flushed), dirty data and time
 * left; a live session one of whose hosts is down is marked degraded (naming
 * the host); the sessions that ended or failed are listed apart, with why;
 * and the hosts' agents, up or down.
 */
const esc = (s: unknown): string => String(s ?? '').replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);

export function bytes(n: number | null | undefined): string {
  if (n === null || n === undefined) return '–';
  const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < u.length - 1) {
    v /= 1024;
    i++;
  }
  return `${i ? v.toFixed(1) : v} ${u[i]}`;
}

export function duration(s: number): string {
  if (s <= 0) return '0 s';
  const d = Math.floor(s / 86400);
  const h = Math.floor((s % 86400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = s % 60;
  return d ? `${d} d ${h} h` : h ? `${h} h ${m} min` : m ? `${m} min ${sec} s` : `${sec} s`;
}

const STYLE = `
body{font:14px/1.4 system-ui,sans-serif;margin:0;background:#f4f6f8;color:#1d2733}
header{background:#1d3557;color:#fff;padding:12px 24px;display:flex;justify-content:space-between;align-items:center}
header h1{font-size:18px;margin:0}
main{padding:16px 24px}
table{border-collapse:collapse;width:100%;background:#fff;box-shadow:0 1px 2px #0002;margin-bottom:24px}
th,td{padding:8px 10px;border-bottom:1px solid #e3e7ec;text-align:left;vertical-align:top}
th{background:#e9eef4;font-weight:600}
.state{display:inline-block;padding:2px 8px;border-radius:10px;color:#fff;font-size:12px}
.ready{background:#2a9d8f}.creating,.destroying{background:#e9c46a;color:#333}.failed{background:#e63946}.destroyed{background:#8d99ae}
.degraded{display:inline-block;margin-left:6px;padding:2px 8px;border-radius:10px;background:#f4a261;color:#1d2733;font-size:12px}
.up{color:#2a9d8f;font-weight:600}.down{color:#e63946;font-weight:600}
.bar{background:#e3e7ec;width:120px;height:10px;border-radius:5px;overflow:hidden;display:inline-block;vertical-align:middle;margin-right:6px}
.bar span{display:block;height:100%;background:#457b9d}
.mono{font-family:ui-monospace,monospace;font-size:12px}
.empty{padding:24px;background:#fff;text-align:center;color:#667}
form{display:inline}
button{background:#457b9d;color:#fff;border:0;border-radius:4px;padding:6px 12px;cursor:pointer}
`;

export interface DashboardData {
  user: string;
  admin: boolean;
  sessions: any[];
  /** Sessions that ended (destroyed) or failed, newest first (absent: not shown). */
  ended?: any[];
  hosts: Array<{ name: string; url: string; up: boolean; sessions?: number; error?: string }>;
  now: Date;
  /** Seconds between reloads (0: none). */
  refresh?: number;
}

function ratio(r: number | null | undefined): string {
  if (r === null || r === undefined) return '<span class="mono">–</span>';
  const pct = Math.round(r * 1000) / 10;
  return `<span class="bar"><span style="width:${pct}%"></span></span>${pct}%`;
}

export function renderDashboard(d: DashboardData): string {
  const down = new Set(d.hosts.filter((h) => !h.up).map((h) => h.name));
  const rows = d.sessions
    .map((s) => {
      // A live session with a host whose agent does not answer: its proxies there may be gone too.
      const lost = s.state === 'destroyed' || s.state === 'failed' ? [] : ((s.hosts ?? []) as string[]).filter((h) => down.has(h));
      const t = s.stats?.totals;
      const mounts = (s.exports ?? [])
        .map((e: any) => {
          const ep = (s.endpoints ?? []).find((x: any) => x.export === e.name);
          const where = e.mountpoint ?? (ep ? `nfs://127.0.0.1:${ep.port}${e.name}` : `NFS endpoint ${e.name}`);
          return `<div class="mono">${esc(where)} ← ${esc(e.host)}:${esc(e.path)} (${esc(e.role)})</div>`;
        })
        .join('');
      return `<tr data-session="${esc(s.id)}"${lost.length ? ' data-degraded="true"' : ''}>
<td class="mono">${esc(s.id)}${d.admin ? `<div>${esc(s.user)}</div>` : ''}</td>
<td><span class="state ${esc(s.state)}">${esc(s.state)}</span>${lost.length ? `<span class="degraded">degraded: ${esc(lost.join(', '))} down</span>` : ''}${s.error ? `<div class="mono">${esc(s.error)}</div>` : ''}</td>
<td>${esc((s.hosts ?? []).join(', '))}<div class="mono">compute: ${esc(s.compute)}</div></td>
<td>${mounts}</td>
<td>${esc(s.cache?.mode ?? '')}</td>
<td class="hit">${ratio(t?.hitRatio)}</td>
<td class="moved">${bytes(t?.bytesMoved)}</td>
<td class="dirty">${bytes(t?.dirtyBytes)}</td>
<td class="left">${s.state === 'ready' ? duration(s.timeLeft) : '–'}</td>
</tr>`;
    })
    .join('\n');
  const ended = (d.ended ?? [])
    .map(
      (s) => `<tr data-ended="${esc(s.id)}"><td class="mono">${esc(s.id)}${d.admin ? `<div>${esc(s.user)}</div>` : ''}</td><td><span class="state ${esc(s.state)}">${esc(s.state)}</span></td><td>${esc(s.reason ?? '')}${s.error ? `<div class="mono">${esc(s.error)}</div>` : ''}</td><td class="mono">${esc(s.endedAt ?? '')}</td><td>${esc((s.pending ?? []).join(', '))}</td></tr>`,
    )
    .join('\n');
  const hosts = d.hosts.map((h) => `<tr><td>${esc(h.name)}</td><td class="mono">${esc(h.url)}</td><td class="${h.up ? 'up' : 'down'}">${h.up ? 'up' : 'down'}</td><td>${h.up ? (d.admin ? esc(h.sessions) : '') : esc(h.error)}</td></tr>`).join('\n');
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8">${d.refresh === 0 ? '' : `<meta http-equiv="refresh" content="${d.refresh ?? 5}">`}<title>GVFS sessions</title><style>${STYLE}</style></head>
<body><header><h1>GVFS sessions</h1><div>${esc(d.user)}${d.admin ? ' (administrator)' : ''} <form method="post" action="/dashboard/logout"><button id="signout">Sign out</button></form></div></header>
<main>
<h2>Sessions (${d.sessions.length})</h2>
${d.sessions.length ? `<table id="sessions"><thead><tr><th>Session</th><th>State</th><th>Hosts</th><th>Mounts</th><th>Cache</th><th>Hit ratio</th><th>Bytes moved</th><th>Dirty</th><th>Time left</th></tr></thead><tbody>
${rows}
</tbody></table>` : '<div class="empty" id="sessions">No sessions.</div>'}
${d.ended ? `<h2>Ended and failed sessions (${d.ended.length})</h2>
${d.ended.length ? `<table id="ended"><thead><tr><th>Session</th><th>State</th><th>Why</th><th>Ended</th><th>Cleanup pending on</th></tr></thead><tbody>
${ended}
</tbody></table>` : '<div class="empty" id="ended">None.</div>'}` : ''}
<h2>Hosts</h2>
<table id="hosts"><thead><tr><th>Host</th><th>Agent</th><th>Status</th><th>${d.admin ? 'Sessions' : ''}</th></tr></thead><tbody>
${hosts}
</tbody></table>
<p class="mono">as of ${esc(d.now.toISOString())}</p>
</main></body></html>`;
}

export function renderLogin(failed: boolean): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>GVFS sessions: sign in</title><style>${STYLE}</style></head>
<body><header><h1>GVFS sessions</h1></header><main>
<form method="post" action="/dashboard/login" style="display:block;background:#fff;padding:24px;max-width:480px">
<p>Sign in with your session service token.</p>
${failed ? '<p class="down" id="failed">Unknown token.</p>' : ''}
<input type="password" name="token" id="token" autocomplete="off" style="width:100%;padding:6px;margin-bottom:12px">
<button type="submit" id="signin">Sign in</button>
</form></main></body></html>`;
}
