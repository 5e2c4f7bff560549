// The home page: carries the access token (when the server needs one) on to the linked pages,
// and names the model the server has loaded (GET /api/models, GET /api/health).
import { withToken } from "/static/common.js";

for (const a of document.querySelectorAll("a[href^='/']")) a.href = withToken(a.getAttribute("href"));

const million = (n) => (n >= 1e6 ? `${(n / 1e6).toFixed(2)} M` : `${Math.round(n / 1e3)} k`);

async function json(path) {
  const r = await fetch(withToken(path));
  if (!r.ok) throw new Error(`GET ${path} answered ${r.status}`);
  return r.json();
}

async function showModel() {
  const el = document.getElementById("model");
  try {
    const health = await json("/api/health");
    const models = await json("/api/models").catch(() => []);
    const m = models.find((x) => x.loaded);
    const i = (m && m.info) || {};
    const c = i.config || {};
    const bits = [];
    if (i.parameters) bits.push(`${million(i.parameters)} parameters`);
    if (c.attention) bits.push(`${c.attention} attention`);
    if (c.max_len) bits.push(`${c.max_len.toLocaleString("en")}-token context`);
    if (i.size_mb) bits.push(`${i.size_mb} MB`);
    el.textContent = "";
    const name = document.createElement("strong");
    name.id = "model-name";
    name.textContent = health.model;
    el.append(name, bits.length ? ` · ${bits.join(" · ")}` : "",
              ` · Cadenza ${health.version} · preferences ${health.preferences}`);
  } catch (e) {
    el.textContent = `The server did not say: ${e.message || e}.`;
  }
}

showModel();
