// What every view needs of the page: elements by id, and text made safe for HTML.

/** The element with this id. */
export const $ = (id) => document.getElementById(id);

/** `s` (anything; null and undefined as '') with HTML's special characters escaped. */
export const esc = (s) => String(s ?? '').replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);

/** An `<option>` of a select, escaped. */
export function option(value, label) { return `<option value="${esc(value)}">${esc(label)}</option>`; }
