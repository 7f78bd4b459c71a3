// What every view needs of the page: elements by id, and text made safe for HTML.

/** The element with this id. */
export const $ = (id) => document.getElementById(id);

/** `s` (anything; null and undefined as '') with HTML's special characters escaped. */
export const esc = (s) => String(s ?? '').replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);

/** An `<option>` of a select, escaped. */
export function option(value, label) { return `<option value="${esc(value)}">${esc(label)}</option>`; }

/** Shows only the options of `select` whose label contains `text` (any case; the first option,
 * "all" or "choose", always stays). When the chosen option is hidden, the first shown match is
 * chosen instead; returns true when the choice changed. For lists of thousands (2,300 社区). */
export function narrow(select, text) {
  const needle = text.trim().toLowerCase();
  const options = [...select.options];
  for (const o of options.slice(1)) o.hidden = needle !== '' && !o.text.toLowerCase().includes(needle);
  if (!select.selectedOptions[0]?.hidden && (needle === '' || select.selectedIndex > 0)) return false;
  const first = options.slice(1).find((o) => !o.hidden);
  if (!first || needle === '') return false;
  select.value = first.value;
  return true;
}
