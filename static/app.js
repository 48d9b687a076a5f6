// The upload-and-ask page. Everything the server or the model says is inserted as text, never HTML.
const $ = (sel) => document.querySelector(sel);

async function api(path, options = {}) {
  const res = await fetch(path, options);
  const body = res.status === 204 ? null : await res.json();
  if (!res.ok) throw new Error(body?.detail || `HTTP ${res.status}`);
  return body;
}

function documentItem(doc) {
  const li = document.createElement("li");
  const name = document.createElement("bdi");
  name.textContent = doc.filename;
  const meta = document.createElement("span");
  meta.className = "meta";
  const units = doc.n_pages ? `${doc.n_pages} pages` : `${doc.n_sections} sections`;
  meta.textContent = ` — ${doc.kind}, ${units}, ~${doc.token_estimate.toLocaleString()} tokens`;
  li.append(name, meta);
  return li;
}

async function refresh() {
  const docs = await api("/api/documents");
  $("#documents").replaceChildren(...docs.map(documentItem));
}

async function upload(event) {
  event.preventDefault();
  const status = $("#upload-status");
  for (const file of $("#file").files) {
    const form = new FormData();
    form.append("file", file);
    status.className = "";
    status.textContent = `Uploading ${file.name}…`;
    try {
      await api("/api/documents", { method: "POST", body: form });
      status.textContent = `Stored ${file.name}.`;
    } catch (err) {
      status.className = "error";
      status.textContent = `${file.name}: ${err.message}`;
    }
  }
  await refresh();
}

$("#upload-form").addEventListener("submit", upload);
refresh();
