// The console: hash routing between the views, the shared database selector, and sign-in.
import { api, getToken, setToken, clearToken, onUnauthorized } from "./api.js";
import { h, clearErrors, showError, errorBox, setOptions } from "./ui.js";
import * as overview from "./overview.js";
import * as live from "./live.js";
import * as explore from "./explore.js";
import * as vectors from "./vectors.js";

const VIEWS = { overview, live, explore, vectors };
const DB_KEY = "sluice.db";

const main = document.getElementById("main");
const dbSelect = document.getElementById("db-select");
const signInBtn = document.getElementById("sign-in-btn");
const authState = document.getElementById("auth-state");
const dialog = document.getElementById("sign-in");
const form = document.getElementById("sign-in-form");
const tokenInput = document.getElementById("token");
const rememberBox = document.getElementById("remember");
const dialogError = document.getElementById("sign-in-error");
const dialogReason = document.getElementById("sign-in-reason");

let lastReason = null; // the 401 that asked for a token, shown again when the dialog reopens

const app = {
  databases: [],
  authRequired: false,
  current: null, // {view, cleanup, controller}
};

// ------------------------------------------------------------------ routing

function parseHash() {
  const m = /^#\/([a-z]+)(?:\?(.*))?$/.exec(location.hash || "");
  const view = m && VIEWS[m[1]] ? m[1] : "overview";
  return { view, params: new URLSearchParams((m && m[2]) || "") };
}

function currentDb() {
  const { params } = parseHash();
  return params.get("db") || sessionStorage.getItem(DB_KEY) || "default";
}

function hashFor(view, params) {
  const q = params.toString();
  return `#/${view}${q ? `?${q}` : ""}`;
}

async function route() {
  const { view, params } = parseHash();
  if (app.current) {
    app.current.controller.abort();
    for (const fn of app.current.cleanups) {
      try {
        fn();
      } catch {
        /* ignore */
      }
    }
  }
  clearErrors();
  const db = params.get("db") || currentDb();
  if (dbSelect.value !== db && [...dbSelect.options].some((o) => o.value === db)) dbSelect.value = db;
  for (const a of document.querySelectorAll("nav a[data-view]")) {
    if (a.dataset.view === view) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
    a.href = hashFor(a.dataset.view, new URLSearchParams({ db }));
  }
  const controller = new AbortController();
  const cur = { view, controller, cleanups: [] };
  app.current = cur;
  main.replaceChildren();
  for (const k of Object.keys(main.dataset)) delete main.dataset[k];
  main.dataset.view = view;
  main.setAttribute("aria-busy", "true");
  document.title = `${VIEWS[view].title} · Sluice`;
  const ctx = {
    db,
    params,
    app,
    signal: controller.signal,
    onCleanup: (fn) => cur.cleanups.push(fn),
    /** Updates the hash's parameters without re-rendering (shareable links). */
    setParams(patch) {
      for (const [k, v] of Object.entries(patch)) {
        if (v === null || v === undefined || v === "") params.delete(k);
        else params.set(k, String(v));
      }
      params.set("db", db);
      history.replaceState(null, "", hashFor(view, params));
    },
    go(toView, toParams = {}) {
      location.hash = hashFor(toView, new URLSearchParams({ db, ...toParams }));
    },
    selectDb(name) {
      selectDatabase(name, view);
    },
  };
  try {
    await VIEWS[view].render(main, ctx);
  } catch (e) {
    if (!controller.signal.aborted) showError(e, VIEWS[view].title);
  } finally {
    if (app.current === cur) main.removeAttribute("aria-busy");
  }
}

function selectDatabase(name, view = parseHash().view) {
  sessionStorage.setItem(DB_KEY, name);
  location.hash = hashFor(view, new URLSearchParams({ db: name }));
}

// ------------------------------------------------------------------ databases

async function loadDatabases() {
  try {
    const r = await api("/v1/databases");
    app.databases = r.databases || [];
  } catch (e) {
    app.databases = [];
    if (e.status !== 401) showError(e, "Databases");
  }
  const db = currentDb();
  const names = app.databases.map((d) => d.name);
  if (!names.length) names.push(db);
  if (!names.includes(db)) names.unshift(db);
  setOptions(dbSelect, names, db);
  updateAuthState();
}

dbSelect.addEventListener("change", () => selectDatabase(dbSelect.value));

// ------------------------------------------------------------------ sign-in

function updateAuthState() {
  const token = getToken();
  if (token) {
    authState.textContent = "Signed in (token)";
    signInBtn.textContent = "Sign out";
  } else {
    authState.textContent = app.authRequired ? "Not signed in" : "Open server (no token)";
    signInBtn.textContent = "Sign in";
  }
}

function openSignIn(reason = lastReason) {
  dialogError.replaceChildren();
  dialogReason.replaceChildren();
  if (reason) {
    dialogReason.append(
      h(
        "span",
        null,
        `The server answered ${reason.status} `,
      h("code", null, reason.code),
      reason.errorId ? [" (error_id ", h("code", { class: "err-id" }, reason.errorId), ")"] : "",
        `: ${reason.message}`,
      ),
    );
  }
  tokenInput.value = "";
  if (!dialog.open) dialog.showModal();
  tokenInput.focus();
}

signInBtn.addEventListener("click", async () => {
  if (getToken()) {
    clearToken();
    updateAuthState();
    await loadDatabases();
    route();
  } else {
    openSignIn();
  }
});

document.getElementById("sign-in-cancel").addEventListener("click", () => dialog.close());

form.addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const token = tokenInput.value.trim();
  dialogError.replaceChildren();
  if (!token) {
    dialogError.append(errorBox({ message: "Enter a token.", code: "empty_token" }));
    tokenInput.focus();
    return;
  }
  const submit = form.querySelector("button[type=submit]");
  submit.disabled = true;
  try {
    // Check the token on a route every authenticated actor may call.
    await api("/v1/databases", { token });
    setToken(token, rememberBox.checked);
    lastReason = null;
    tokenInput.value = "";
    dialog.close();
    app.authRequired = true;
    await loadDatabases();
    route();
  } catch (e) {
    dialogError.append(errorBox(e));
    tokenInput.select();
    tokenInput.focus();
  } finally {
    submit.disabled = false;
  }
});

onUnauthorized((err) => {
  app.authRequired = true;
  if (getToken()) clearToken(); // the stored token no longer works
  updateAuthState();
  lastReason = err;
  if (!dialog.open) openSignIn(err);
});

// ------------------------------------------------------------------ start

document.getElementById("skip").addEventListener("click", () => main.focus());

async function footer() {
  try {
    const v = await api("/version");
    document.getElementById("version").textContent = `${v.name} ${v.version} · API ${v.api_version}`;
  } catch {
    /* shown elsewhere */
  }
}

async function start() {
  if (!location.hash) history.replaceState(null, "", "#/overview");
  window.addEventListener("hashchange", route);
  footer();
  await loadDatabases();
  await route();
}

start();
