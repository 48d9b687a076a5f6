// Talking to the docqa server: JSON calls, uploads with progress, Server-Sent Events over fetch(), downloads.
// When the server needs an API key, the key the person entered is kept in sessionStorage (this tab only)
// and sent as the X-API-Key header on every request — never in a URL.

const KEY_ITEM = "docqa.apiKey";
let memoryKey = null; // when sessionStorage is unavailable
let unauthorized = () => {};

export function apiKey() {
  try {
    return sessionStorage.getItem(KEY_ITEM) || memoryKey;
  } catch {
    return memoryKey;
  }
}

export function setApiKey(key) {
  memoryKey = key || null;
  try {
    if (key) sessionStorage.setItem(KEY_ITEM, key);
    else sessionStorage.removeItem(KEY_ITEM);
  } catch {
    /* kept in memory only */
  }
}

/** fn() runs whenever the server answers 401 (no key, or a key it does not accept). */
export function onUnauthorized(fn) {
  unauthorized = fn;
}

function withKey(headers) {
  const key = apiKey();
  return key ? { ...headers, "x-api-key": key } : headers;
}

export class ApiError extends Error {
  constructor(status, detail) {
    super(detail);
    this.status = status;
  }
}

async function errorFrom(res) {
  if (res.status === 401) unauthorized();
  let detail = "";
  try {
    const body = await res.json();
    detail = body?.detail || "";
  } catch {
    /* not JSON */
  }
  return new ApiError(res.status, detail || `The server answered ${res.status} ${res.statusText}.`);
}

/** JSON in, JSON out; an error response throws ApiError carrying the server's sentence. */
export async function api(path, { method = "GET", body, signal } = {}) {
  let res;
  try {
    res = await fetch(path, {
      method,
      signal,
      headers: withKey(body === undefined ? { accept: "application/json" } : { "content-type": "application/json", accept: "application/json" }),
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (err) {
    if (err.name === "AbortError") throw err;
    throw new ApiError(0, "The server could not be reached. Is docqa still running?");
  }
  if (!res.ok) throw await errorFrom(res);
  if (res.status === 204) return null;
  const text = await res.text();
  return text ? JSON.parse(text) : null;
}

/** POST one file as multipart field "file" (plus `fields`, e.g. a PDF's password); onProgress(loaded, total)
 * while the bytes go up. Resolves {status, body}; never rejects. */
export function uploadFile(file, onProgress, fields = {}) {
  return new Promise((resolve) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", "/api/documents");
    xhr.setRequestHeader("accept", "application/json");
    const key = apiKey();
    if (key) xhr.setRequestHeader("x-api-key", key);
    xhr.upload.addEventListener("progress", (e) => {
      if (e.lengthComputable) onProgress(e.loaded, e.total);
    });
    xhr.addEventListener("load", () => {
      let body = null;
      try {
        body = JSON.parse(xhr.responseText);
      } catch {
        body = { detail: `The server answered ${xhr.status} without a readable reason.` };
      }
      if (xhr.status === 401) unauthorized();
      resolve({ status: xhr.status, body });
    });
    const failed = () =>
      resolve({ status: 0, body: { detail: "The upload did not reach the server (connection lost or refused)." } });
    xhr.addEventListener("error", failed);
    xhr.addEventListener("abort", failed);
    const form = new FormData();
    form.append("file", file, file.name);
    for (const [name, value] of Object.entries(fields)) form.append(name, value);
    xhr.send(form);
  });
}

function parseEvent(block) {
  let event = "message";
  const data = [];
  for (const line of block.split("\n")) {
    if (!line || line.startsWith(":")) continue;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "event") event = value;
    else if (field === "data") data.push(value);
  }
  if (!data.length) return null;
  const raw = data.join("\n");
  try {
    return { event, data: JSON.parse(raw) };
  } catch {
    return { event, data: raw };
  }
}

/** POST JSON and read the text/event-stream answer: yields {event, data} as each event completes. */
export async function* postEvents(path, body, signal) {
  let res;
  try {
    res = await fetch(path, {
      method: "POST",
      signal,
      headers: withKey({ "content-type": "application/json", accept: "text/event-stream" }),
      body: JSON.stringify(body),
    });
  } catch (err) {
    if (err.name === "AbortError") throw err;
    throw new ApiError(0, "The server could not be reached. Is docqa still running?");
  }
  if (!res.ok) throw await errorFrom(res);
  if (!(res.headers.get("content-type") || "").includes("text/event-stream")) {
    yield { event: "done", data: await res.json() };
    return;
  }
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    // CRLF and CR end lines too; a CR at the very end may be half of a CRLF, so it waits.
    buffer = (buffer + value).replace(/\r\n|\r(?!$)/g, "\n");
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const parsed = parseEvent(buffer.slice(0, cut));
      buffer = buffer.slice(cut + 2);
      if (parsed) yield parsed;
    }
  }
  const rest = parseEvent(buffer.replace(/\r/g, "\n").trim());
  if (rest) yield rest;
}

/** GET `path` with the key in a header and save the answer as `filename` (a blob: link, so no key in a URL). */
export async function download(path, filename) {
  let res;
  try {
    res = await fetch(path, { headers: withKey({}) });
  } catch {
    throw new ApiError(0, "The server could not be reached. Is docqa still running?");
  }
  if (!res.ok) throw await errorFrom(res);
  const url = URL.createObjectURL(await res.blob());
  const link = document.createElement("a");
  link.href = url;
  link.download = filename;
  link.hidden = true;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}
