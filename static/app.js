// The docqa page, a reviewer's workbench: conversation in the middle, documents and plan at the side,
// the cited source beside the answer. Each job lives in its own ES module (no build step):
//   documents.js  upload, list, choose, delete        plan.js      model picker and the plan
//   conversation.js  questions, answers, grounding    viewer.js    the source viewer
//   sessions.js   sessions and the URL naming one     batches.js   batch questions, past batches
//   models.js     models found, what fits, pulling one
//   markdown.js   safe Markdown (vendored marked + DOMPurify)     api.js, dom.js  server calls, DOM helpers
// Everything the server or the model says becomes text nodes, or sanitized Markdown (markdown.js).
import { api, apiKey, onUnauthorized, setApiKey } from "./api.js";
import { $, setStatus } from "./dom.js";
import { loadDocuments, setUpDocuments } from "./documents.js";
import { loadModels, setUpPlan, updatePlan } from "./plan.js";
import { setUpConversation } from "./conversation.js";
import { loadSessions, openSession, sessionChanged, sessionInUrl, sessionLabel, setUpSessions } from "./sessions.js";
import { loadBatches, setUpBatches } from "./batches.js";
import { loadModelsPanel, setUpModels } from "./models.js";
import { forgetDocument, openDocument, openReadme, setUpViewer } from "./viewer.js";

function choiceChanged() {
  updatePlan();
  sessionLabel();
}

// ---- tabs ---------------------------------------------------------------------------------------

const TABS = ["ask", "batch", "models"];

function selectTab(name, focus = false) {
  for (const t of TABS) {
    const tab = $(`tab-${t}`);
    const on = t === name;
    tab.setAttribute("aria-selected", String(on));
    tab.tabIndex = on ? 0 : -1;
    $(`panel-${t}`).hidden = !on;
    if (on && focus) tab.focus();
  }
  if (name === "batch") loadBatches();
  if (name === "models") loadModelsPanel();
}

function setUpTabs() {
  for (const t of TABS) {
    const tab = $(`tab-${t}`);
    tab.addEventListener("click", () => selectTab(t));
    tab.addEventListener("keydown", (e) => {
      const i = TABS.indexOf(t);
      const next = { ArrowRight: i + 1, ArrowLeft: i - 1, Home: 0, End: TABS.length - 1 }[e.key];
      if (next === undefined) return;
      e.preventDefault();
      selectTab(TABS[(next + TABS.length) % TABS.length], true);
    });
  }
  document.addEventListener("docqa:select-tab", (e) => selectTab(e.detail));
}

/** A model was chosen on the Models tab: back to asking, with the picker showing it. */
function usedModel() {
  selectTab("ask");
  $("model").focus();
}

// ---- the API key --------------------------------------------------------------------------------
// Asked for only when the server answers 401; in loopback mode (no keys configured) it never shows.

function needKey() {
  const rejected = Boolean(apiKey());
  setApiKey(null);
  const panel = $("access");
  const shown = !panel.hidden;
  panel.hidden = false;
  document.querySelector(".layout").inert = true;
  setStatus($("access-status"), rejected ? "The server did not accept this key. Check it and try again." : "", rejected ? "error" : "");
  if (!shown || rejected) $("api-key").focus();
}

/** False when the server wants a key it has not been given (the key panel is then shown). */
async function hasAccess() {
  try {
    await api("/api/sessions");
    return true;
  } catch (err) {
    return err.status !== 401; // unreachable or failing: the lists below say so
  }
}

async function loadAll() {
  await Promise.all([loadModels(), loadDocuments()]);
  await loadSessions(); // names each session's documents, so after them
  const wanted = sessionInUrl();
  if (wanted) await openSession(wanted);
  else choiceChanged();
}

async function useKey(event) {
  event.preventDefault();
  const key = $("api-key").value.trim();
  if (!key) {
    setStatus($("access-status"), "Enter the API key first.", "error");
    $("api-key").focus();
    return;
  }
  setApiKey(key);
  setStatus($("access-status"), "Checking the key…");
  $("api-key-button").disabled = true;
  const ok = await hasAccess();
  $("api-key-button").disabled = false;
  if (!ok) return; // needKey() said why
  $("api-key").value = "";
  setStatus($("access-status"), "");
  $("access").hidden = true;
  document.querySelector(".layout").inert = false;
  await loadAll();
  $("file").focus();
}

// ---- start --------------------------------------------------------------------------------------

onUnauthorized(needKey);
$("access-form").addEventListener("submit", useKey);
setUpDocuments({
  onChange: choiceChanged,
  onView: openDocument,
});
setUpPlan({ onChange: choiceChanged, onReadme: openReadme });
setUpConversation({ onSession: sessionChanged });
setUpSessions();
setUpViewer();
setUpTabs();
setUpBatches();
setUpModels({ onUse: usedModel });
$("models-link").addEventListener("click", () => selectTab("models", true));
document.addEventListener("docqa:document-deleted", (e) => forgetDocument(e.detail));
if (await hasAccess()) await loadAll();
document.body.dataset.ready = "true";
