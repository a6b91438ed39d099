// The operator's dashboard: one self-contained page (no external assets) that reads
// /status every two seconds and shows the ledger channels, their balances and locks,
// the virtual channels the gateway funds, and the channels it settles on-chain (each step,
// and when its challenge period ends). Values are set as text, never as HTML.

export const DASHBOARD_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>picopay gateway</title>
<style>
  body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5rem; color: #222; }
  h1 { font-size: 1.2rem; margin: 0 0 .25rem; }
  .muted { color: #777; }
  .cards { display: flex; gap: 1rem; margin: 1rem 0; }
  .card { border: 1px solid #ddd; border-radius: 6px; padding: .5rem 1rem; min-width: 8rem; }
  .card b { display: block; font-size: 1.4rem; }
  table { border-collapse: collapse; width: 100%; }
  th, td { text-align: left; padding: .25rem .5rem; border-bottom: 1px solid #eee; font-family: ui-monospace, monospace; font-size: 12px; }
  th { font-family: system-ui, sans-serif; }
  .no { color: #b00; } .yes { color: #070; }
</style>
</head>
<body>
<h1>picopay gateway</h1>
<div class="muted" id="address">loading…</div>
<div class="cards">
  <div class="card">ledger channels<b id="ledgers">–</b></div>
  <div class="card">funded on-chain<b id="funded">–</b></div>
  <div class="card">virtual channels<b id="virtuals">–</b></div>
  <div class="card">locked (wei)<b id="locked">–</b></div>
</div>
<table>
  <thead><tr><th>channel</th><th>device</th><th>phase</th><th>version</th><th>device / gateway (wei)</th><th>locks</th><th>funded</th></tr></thead>
  <tbody id="rows"></tbody>
</table>
<h2 style="font-size:1rem">on-chain settlements</h2>
<table>
  <thead><tr><th>channel</th><th>device</th><th>why</th><th>since</th><th>last step</th><th>challenge period ends</th></tr></thead>
  <tbody id="disputes"></tbody>
</table>
<p class="muted" id="limits"></p>
<p class="muted">Refreshes every 2 s from <a href="/status">/status</a>; metrics at <a href="/metrics">/metrics</a>.</p>
<script>
const text = (tag, value, cls) => { const el = document.createElement(tag); el.textContent = String(value); if (cls) el.className = cls; return el; };
const short = (hex) => hex.slice(0, 10) + '…' + hex.slice(-4);
async function refresh() {
  try {
    const s = await (await fetch('/status')).json();
    document.getElementById('address').textContent = 'gateway ' + s.address;
    document.getElementById('ledgers').textContent = s.ledgerChannels.length;
    document.getElementById('funded').textContent = s.ledgerChannels.filter((c) => c.funded).length;
    document.getElementById('virtuals').textContent = s.virtualChannels.length;
    const l = s.limits;
    document.getElementById('limits').textContent = 'limits: at most ' + l.maxDeposit + ' wei per device and ' + l.maxTotalDeposit + ' wei in all, ' + l.maxChannelsPerDevice + ' ledger channels per device; a device puts in at least ' + l.minDeviceDeposit + ' wei and has ' + l.fundingTimeoutMs / 1000 + ' s to deposit it';
    let locked = 0n;
    const rows = s.ledgerChannels.map((c) => {
      for (const l of c.locked) for (const a of l.amounts) locked += BigInt(a);
      const tr = document.createElement('tr');
      tr.append(text('td', short(c.id)), text('td', short(c.peer)), text('td', c.phase), text('td', c.version),
        text('td', c.balances.map((pair) => pair.join(' / ')).join(', ')), text('td', c.locked.length),
        text('td', c.funded ? 'yes' : 'no', c.funded ? 'yes' : 'no'));
      return tr;
    });
    document.getElementById('locked').textContent = locked.toString();
    document.getElementById('rows').replaceChildren(...rows);
    const disputes = (s.disputes || []).map((d) => {
      const tr = document.createElement('tr');
      tr.append(text('td', short(d.channel)), text('td', short(d.peer)), text('td', d.reason), text('td', new Date(d.since).toISOString()),
        text('td', d.step), text('td', d.waitingUntil ? new Date(d.waitingUntil * 1000).toISOString() : '–'));
      return tr;
    });
    if (disputes.length === 0) { const tr = document.createElement('tr'); tr.append(text('td', 'none', 'muted')); disputes.push(tr); }
    document.getElementById('disputes').replaceChildren(...disputes);
  } catch (err) {
    document.getElementById('address').textContent = 'status unavailable: ' + err;
  }
}
refresh();
setInterval(refresh, 2000);
</script>
</body>
</html>
`;
