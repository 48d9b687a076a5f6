// DOM helpers. Text from the server or the model only ever becomes text nodes (append / textContent).

/** Create an element: el("button", {class: "chip", type: "button", onclick: fn}, "text", childNode). */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("on") && typeof value === "function") node.addEventListener(key.slice(2), value);
    else if (key === "hidden") node.hidden = Boolean(value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child !== undefined && child !== null && child !== false) node.append(child); // strings → text nodes
  }
  return node;
}

/** Text a person reads, in the page's language, with dir="auto" so Arabic or Hebrew flows right to left. */
export const userText = (tag, text, attrs = {}) => el(tag, { dir: "auto", ...attrs }, text ?? "");

const NUMBER = new Intl.NumberFormat();
export const num = (n) => (typeof n === "number" ? NUMBER.format(n) : "?");

export function bytes(n) {
  if (typeof n !== "number") return "?";
  const GB = 1024 ** 3;
  const MB = 1024 ** 2;
  if (n >= GB / 10) return `${(n / GB).toFixed(1)} GB`;
  if (n >= MB) return `${Math.round(n / MB)} MB`;
  return `${Math.max(1, Math.round(n / 1024))} KB`;
}

export function duration(seconds) {
  if (typeof seconds !== "number" || !Number.isFinite(seconds)) return "";
  if (seconds < 1) return "less than a second";
  if (seconds < 90) return `${Math.round(seconds)} s`;
  if (seconds < 5400) return `${Math.round(seconds / 60)} min`;
  return `${(seconds / 3600).toFixed(1)} h`;
}

export const plural = (n, one, many = `${one}s`) => `${num(n)} ${n === 1 ? one : many}`;

const QUOTE_CHARS = /["“”«»'‘’`]/;
const SPACE = /\s/;

/** Lower-case, spaces collapsed, quote marks dropped — as the server compares quotes — with a map
 * from each kept character back to its index in the original text. */
function normalise(text) {
  const chars = [];
  const map = [];
  let space = true;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i];
    if (QUOTE_CHARS.test(ch)) continue;
    if (SPACE.test(ch)) {
      if (!space) { chars.push(" "); map.push(i); space = true; }
      continue;
    }
    const lower = ch.toLowerCase();
    chars.push(lower.length === 1 ? lower : ch);
    map.push(i);
    space = false;
  }
  return { text: chars.join(""), map };
}

/** Where `quote` occurs in `text` ([start, end) in `text`), ignoring case, spacing and quote marks; or null. */
export function findQuote(text, quote) {
  if (!text || !quote) return null;
  const exact = text.indexOf(quote);
  if (exact >= 0) return [exact, exact + quote.length];
  const hay = normalise(text);
  const needle = normalise(quote).text.trim();
  if (needle.length < 2) return null;
  const at = hay.text.indexOf(needle);
  if (at < 0) return null;
  return [hay.map[at], hay.map[at + needle.length - 1] + 1];
}

/** `text` as nodes with [start, end) wrapped in a <mark>. */
export function marked(text, range, markAttrs = {}) {
  if (!range) return [document.createTextNode(text)];
  const [start, end] = range;
  return [
    document.createTextNode(text.slice(0, start)),
    el("mark", markAttrs, text.slice(start, end)),
    document.createTextNode(text.slice(end)),
  ];
}

export const $ = (id) => document.getElementById(id);

export function setStatus(node, text, kind = "") {
  node.textContent = text;
  node.classList.toggle("error", kind === "error");
  node.classList.toggle("ok", kind === "ok");
}

export const capitalised = (s) => (s ? s[0].toUpperCase() + s.slice(1) : s);

/** A server timestamp (UTC, maybe without its offset) as a local date and time. */
export function when(iso) {
  if (!iso) return "";
  const date = new Date(/[zZ]|[+-]\d\d:?\d\d$/.test(iso) ? iso : `${iso}Z`);
  return Number.isNaN(date.getTime()) ? "" : date.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
}

/** Seconds with one decimal under a minute ("0.8 s", "12.4 s"), else as duration(). */
export function seconds(s) {
  if (typeof s !== "number" || !Number.isFinite(s)) return "";
  return s < 60 ? `${s.toFixed(1)} s` : duration(s);
}

/** Parameters as a person says them: 135M, 4.0B. */
export function params(n) {
  if (typeof n !== "number" || !n) return "";
  if (n >= 1e9) return `${(n / 1e9).toFixed(1)}B`;
  if (n >= 1e6) return `${Math.round(n / 1e6)}M`;
  return `${Math.round(n / 1e3)}K`;
}

/** True on a narrow screen, where the columns stack. */
export const narrow = () => window.matchMedia("(max-width: 899px)").matches;
