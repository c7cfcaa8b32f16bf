// Vectors: the collections of the database, an entity by primary key (vector and metadata),
// and searches: "more like this" (the entity's own vector), a pasted or random vector, `k`, `ef`
// and a JSON metadata filter, with a results table.
import { api, dbPath } from "./api.js";
import { h, field, select, setOptions, section, table, showError, fmtNum, fmtBytes, json } from "./ui.js";

export const title = "Vectors";

const SHOWN_COMPONENTS = 64;

function clientError(message, field) {
  return { message, code: "invalid_input", field };
}

export async function render(root, ctx) {
  const { db, params, signal } = ctx;
  const opts = { signal };
  root.append(h("div", { class: "view-head" }, h("h1", null, "Vectors"), h("p", { class: "muted" }, "Database ", h("strong", null, db))));

  let collections = [];
  try {
    collections = (await api(dbPath(db, "/v1/collections"), opts)).collections || [];
  } catch (e) {
    if (e.name === "AbortError") return;
    showError(e, "Collections");
  }
  if (signal.aborted) return;

  // ---------------------------------------------------------------- collections
  const colSel = select(
    collections.map((c) => ({ value: c.name, label: `${c.name} (${c.dimension}-d ${c.distance})` })),
    params.get("collection"),
    { name: "collection" },
  );
  colSel.id = "collection";
  const colTableWrap = h("div", { class: "scroll" });
  const colCard = section("Collections", colTableWrap);
  const current = () => collections.find((c) => c.name === colSel.value);

  function renderCollections() {
    if (!collections.length) {
      colTableWrap.replaceChildren(
        h("p", { class: "muted" }, "No collections in this database. Create one with ", h("code", null, "POST /v1/collections"), "."),
      );
      return;
    }
    colTableWrap.replaceChildren(
      table(
        [
          { label: "Name" },
          { label: "Dimension", cls: "num" },
          { label: "Distance" },
          { label: "Precision" },
          { label: "Vectors", cls: "num" },
          { label: "Buffered", cls: "num" },
          { label: "Index memory", cls: "num" },
        ],
        collections.map((c) => {
          const sel = c.name === colSel.value;
          return [
            h(
              "button",
              {
                type: "button",
                class: `link${sel ? " selected" : ""}`,
                "aria-pressed": String(sel),
                onclick: () => {
                  colSel.value = c.name;
                  onCollection();
                  sample();
                },
              },
              c.name,
            ),
            String(c.dimension),
            c.distance,
            c.precision,
            fmtNum(c.vectors),
            fmtNum(c.buffered),
            fmtBytes(c.index_bytes),
          ];
        }),
        { cls: "collections" },
      ),
    );
  }

  // ---------------------------------------------------------------- get by pk
  const pkInput = h("input", { type: "text", name: "pk", id: "pk", autocomplete: "off", spellcheck: "false", required: true, value: params.get("pk") || "" });
  const getForm = h(
    "form",
    { class: "inline-form", id: "get-form", "aria-label": "Get an entity by primary key" },
    field("Primary key", pkInput),
    h("button", { type: "submit", id: "get", class: "primary" }, "Get"),
  );
  const entityEl = h("div", { id: "entity", class: "entity" });
  const getCard = section("Get by primary key", getForm, entityEl);

  // ---------------------------------------------------------------- search
  const vecInput = h("textarea", { id: "query-vector", rows: "3", spellcheck: "false", placeholder: "[0.1, 0.2, …] as many numbers as the dimension" });
  const kInput = h("input", { type: "number", id: "k", min: "1", max: "1000", value: params.get("k") || "10", required: true });
  const efInput = h("input", { type: "number", id: "ef", min: "1", max: "4096", placeholder: "collection's ef_search" });
  const filterInput = h("textarea", {
    id: "filter",
    rows: "2",
    spellcheck: "false",
    placeholder: '{"topic": "ml", "year": {"$gte": 2021}, "lang": {"$in": ["en", "fr"]}}',
  });
  const randomBtn = h("button", { type: "button", id: "random-vector" }, "Random vector");
  const searchForm = h(
    "form",
    { id: "search-form", class: "search-form", "aria-label": "Search" },
    field("Query vector (JSON array)", vecInput),
    h("div", { class: "row" }, field("k (results)", kInput), field("ef (optional)", efInput)),
    field("Metadata filter (JSON, optional)", filterInput, "Equality, $in, $gt, $gte, $lt, $lte on top-level metadata fields."),
    h("div", { class: "form-actions" }, h("button", { type: "submit", class: "primary", id: "search" }, "Search"), randomBtn),
  );
  const searchCard = section("Search", searchForm);
  const resultsSummary = h("p", { id: "results-summary", role: "status", class: "summary" });
  const resultsWrap = h("div", { id: "results", class: "scroll", "data-count": "0" });
  const resultsCard = section("Results", resultsSummary, resultsWrap);

  root.append(
    h("div", { class: "toolbar" }, field("Collection", colSel)),
    h("div", { class: "grid two" }, colCard, getCard),
    h("div", { class: "grid two wide-right" }, searchCard, resultsCard),
  );

  let entity = null;
  let searchSeq = 0; // only the latest search shows its results
  let getSeq = 0;

  function onCollection() {
    ctx.setParams({ collection: colSel.value, pk: "" });
    renderCollections();
    entity = null;
    entityEl.replaceChildren();
    resultsWrap.replaceChildren();
    resultsWrap.dataset.count = "0";
    resultsSummary.textContent = "";
    const c = current();
    vecInput.placeholder = c ? `[…] ${c.dimension} numbers` : "";
  }

  /** A look at what a collection holds (the API lists no pks): the nearest to a random vector. */
  function sample() {
    const c = current();
    if (!c || c.vectors + c.buffered === 0) {
      if (c) resultsSummary.textContent = `${c.name} is empty.`;
      return Promise.resolve();
    }
    const v = Array.from({ length: c.dimension }, () => Number((Math.random() * 2 - 1).toFixed(4)));
    vecInput.value = JSON.stringify(v);
    return search(`A sample of ${c.name} (${fmtNum(c.vectors + c.buffered)} vectors): the nearest to a random vector. `, "sample");
  }

  async function getEntity(pk) {
    const c = current();
    if (!c) return;
    const seq = ++getSeq;
    entityEl.replaceChildren(h("p", { class: "muted" }, `Reading ${pk}…`));
    let got;
    try {
      got = await api(`${dbPath(db, `/vectors/${encodeURIComponent(pk)}`)}?collection=${encodeURIComponent(c.name)}`, opts);
    } catch (e) {
      if (e.name === "AbortError" || seq !== getSeq) return;
      entity = null;
      entityEl.replaceChildren(h("p", { class: "muted" }, `No entity shown (${e.code}).`));
      showError(e, `Get ${pk}`);
      return;
    }
    if (seq !== getSeq) return;
    entity = got;
    ctx.setParams({ pk });
    const v = entity.vector || [];
    const shown = v.slice(0, SHOWN_COMPONENTS).map((x) => Number(x.toPrecision(6)));
    const more = h("button", { type: "button", id: "more-like-this", class: "primary" }, "More like this");
    more.addEventListener("click", () => {
      vecInput.value = JSON.stringify(entity.vector);
      search(`More like ${entity.pk}: `, `more-like-this:${entity.pk}`);
    });
    entityEl.replaceChildren(
      h(
        "dl",
        { class: "kv", "data-pk": entity.pk },
        h("dt", null, "pk"),
        h("dd", null, h("code", { class: "entity-pk" }, entity.pk)),
        h("dt", null, "Metadata"),
        h("dd", null, h("pre", { class: "json entity-metadata" }, entity.metadata ? json(entity.metadata) : "null")),
        h("dt", null, `Vector (${v.length})`),
        h(
          "dd",
          null,
          h("pre", { class: "json vector" }, `[${shown.join(", ")}${v.length > shown.length ? `, … ${v.length - shown.length} more` : ""}]`),
        ),
      ),
      h("div", { class: "form-actions" }, more),
    );
  }

  async function search(note = "", kind = "search") {
    const c = current();
    if (!c) return;
    const seq = ++searchSeq;
    let vector;
    try {
      vector = JSON.parse(vecInput.value);
    } catch {
      showError(clientError("The query vector is not valid JSON: write an array of numbers, or use Random vector or More like this.", "vector"), "Search");
      vecInput.focus();
      return;
    }
    if (!Array.isArray(vector) || !vector.every((x) => typeof x === "number")) {
      showError(clientError("The query vector must be a JSON array of numbers.", "vector"), "Search");
      vecInput.focus();
      return;
    }
    const body = { vector, k: Number(kInput.value) || 10 };
    if (efInput.value) body.ef = Number(efInput.value);
    if (filterInput.value.trim()) {
      try {
        body.filter = JSON.parse(filterInput.value);
      } catch (e) {
        showError(clientError(`The filter is not valid JSON: ${e.message}`, "filter"), "Search");
        filterInput.focus();
        return;
      }
    }
    resultsSummary.textContent = "Searching…";
    const t0 = performance.now();
    let r;
    try {
      r = await api(`${dbPath(db, "/vectors/search")}?collection=${encodeURIComponent(c.name)}`, { method: "POST", body, signal });
    } catch (e) {
      if (e.name === "AbortError" || seq !== searchSeq) return;
      resultsSummary.textContent = "The search failed (see the error above).";
      showError(e, "Search");
      return;
    }
    if (seq !== searchSeq) return;
    const ms = performance.now() - t0;
    const results = r.results || [];
    resultsWrap.dataset.count = String(results.length);
    resultsWrap.dataset.kind = kind;
    resultsSummary.textContent = `${note}${results.length} result${results.length === 1 ? "" : "s"} of k = ${body.k} in ${ms.toFixed(0)} ms${
      body.filter ? " (filtered)" : ""
    } · ${c.distance}: ${c.distance === "l2" ? "lower score is closer" : "higher score is closer"}`;
    resultsWrap.replaceChildren(
      results.length
        ? table(
            [{ label: "#", cls: "num" }, { label: "pk" }, { label: "Score", cls: "num" }, { label: "Distance", cls: "num" }, { label: "Metadata" }],
            results.map((x, i) => [
              String(i + 1),
              h(
                "button",
                {
                  type: "button",
                  class: "link result-pk",
                  "data-pk": x.pk,
                  onclick: () => {
                    pkInput.value = x.pk;
                    getEntity(x.pk);
                  },
                },
                x.pk,
              ),
              fmtNum(x.score, 5),
              fmtNum(x.distance, 5),
              h("code", { class: "meta" }, x.metadata && Object.keys(x.metadata).length ? JSON.stringify(x.metadata) : ""),
            ]),
            { cls: "results" },
          )
        : h("p", { class: "muted" }, "No results."),
    );
  }

  getForm.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const pk = pkInput.value.trim();
    if (pk) getEntity(pk);
  });
  searchForm.addEventListener("submit", (ev) => {
    ev.preventDefault();
    search();
  });
  randomBtn.addEventListener("click", () => {
    const c = current();
    if (!c) return;
    const v = Array.from({ length: c.dimension }, () => Number((Math.random() * 2 - 1).toFixed(4)));
    vecInput.value = JSON.stringify(v);
    search();
  });
  colSel.addEventListener("change", () => {
    onCollection();
    sample();
  });

  if (!collections.length) {
    renderCollections();
    colSel.disabled = true;
    for (const el of [pkInput, vecInput, kInput, efInput, filterInput]) el.disabled = true;
    return;
  }
  if (!params.get("collection") || !current()) colSel.value = collections[0].name;
  const pk = params.get("pk");
  onCollection();
  if (pk) {
    pkInput.value = pk;
    await getEntity(pk);
  } else {
    await sample();
  }
}
