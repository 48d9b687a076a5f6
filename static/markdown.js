// Model output as Markdown, rendered safely (static/vendor: marked for the Markdown, DOMPurify for the
// result; versions and licences in static/vendor/README.md).
// - Raw HTML in the Markdown is never HTML: marked's html renderer is replaced so it comes out as text.
// - DOMPurify then keeps only the tags and attributes below; links only to http(s) and mailto, opened
//   with rel="noopener noreferrer nofollow"; no images (nothing is loaded because a model said so).
// - The result is a DocumentFragment from DOMPurify (RETURN_DOM_FRAGMENT), never an HTML string put
//   into the page by this code.
import { Marked } from "./vendor/marked.esm.js";
import DOMPurify from "./vendor/purify.es.js";

const ESCAPES = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };
const escapeHtml = (s) => String(s).replace(/[&<>"']/g, (c) => ESCAPES[c]);

const md = new Marked({
  gfm: true,
  breaks: false,
  async: false,
  renderer: {
    html({ text }) {
      return escapeHtml(text); // raw HTML shows as the text it is
    },
    image({ text }) {
      return escapeHtml(text || ""); // an image's alt text, not a request
    },
  },
});

const ALLOWED_TAGS = [
  "p", "br", "hr", "strong", "em", "del", "code", "pre", "blockquote", "ul", "ol", "li",
  "h1", "h2", "h3", "h4", "h5", "h6", "a", "table", "thead", "tbody", "tr", "th", "td", "input",
];
const ALLOWED_ATTR = ["href", "title", "align", "start", "type", "checked", "disabled"];
const SAFE_URL = /^(?:https?:|mailto:)/i;

const purifier = DOMPurify(window);
purifier.addHook("uponSanitizeAttribute", (node, data) => {
  if (data.attrName === "href" && !SAFE_URL.test(data.attrValue.trim())) data.keepAttr = false;
  if (node.nodeName === "INPUT" && data.attrName === "type" && data.attrValue !== "checkbox") data.keepAttr = false;
});
purifier.addHook("afterSanitizeAttributes", (node) => {
  if (node.nodeName === "A") {
    if (node.hasAttribute("href")) node.setAttribute("rel", "noopener noreferrer nofollow");
    node.setAttribute("dir", "auto");
  }
  if (node.nodeName === "INPUT") node.setAttribute("disabled", "");
  if (/^(P|LI|H[1-6]|TD|TH|BLOCKQUOTE)$/.test(node.nodeName)) node.setAttribute("dir", "auto");
});

/** `text` (Markdown from the model) as a sanitized DocumentFragment. */
export function renderMarkdown(text) {
  const html = md.parse(String(text ?? ""));
  return purifier.sanitize(html, {
    ALLOWED_TAGS,
    ALLOWED_ATTR,
    ALLOW_DATA_ATTR: false,
    ALLOW_ARIA_ATTR: false,
    RETURN_DOM_FRAGMENT: true,
  });
}
