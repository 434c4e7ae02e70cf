// Message catalogs for meshbox's pages. Each language is one file, /assets/i18n/CODE.json, a flat
// object from key to text ("{name}" placeholders; plural forms as {"one": …, "other": …}); the
// server lists the files in /assets/i18n/languages.json, so adding a language is adding a file.
// The language comes from the visitor's choice (remembered in localStorage), else the browser's
// languages, else English. Dates and numbers are formatted by the browser's Intl for it.
// The pages carry no words of their own and no lang attribute until one is set here.
//
// Keys are written out in full where they are used (t('dash.title'), data-i18n="dash.title",
// or a table of full keys), so a test can find every key the pages use.
"use strict";

const STORE_KEY = 'meshbox.lang';
const FALLBACK = 'en';

/** @param {string} url */
async function getJSON(url) {
  const r = await fetch(url, { cache: 'no-cache' });
  if (!r.ok) throw new Error(`${url}: ${r.status}`);
  return r.json();
}

/** The language to show: a remembered choice, else the browser's first language we have. */
function pick(codes) {
  let saved = null;
  try { saved = localStorage.getItem(STORE_KEY); } catch (_) { /* storage blocked */ }
  if (saved && codes.includes(saved)) return saved;
  for (const l of navigator.languages || [navigator.language || '']) {
    const lower = l.toLowerCase();
    if (codes.includes(lower)) return lower;
    const primary = lower.split('-')[0];
    if (codes.includes(primary)) return primary;
  }
  return codes.includes(FALLBACK) ? FALLBACK : codes[0];
}

/** One language's messages and formatters. */
export class I18n {
  constructor(languages) {
    /** @type {{code: string, name: string}[]} */
    this.languages = languages;
    this.lang = FALLBACK;
    this.messages = {};
    this.fallback = {};
    this.listeners = [];
  }

  /** Loads the catalog of lang (and English, for keys a new catalog lacks) and formatters. */
  async use(lang) {
    const [messages, fallback] = await Promise.all([
      getJSON(`/assets/i18n/${lang}.json`),
      lang === FALLBACK ? null : getJSON(`/assets/i18n/${FALLBACK}.json`),
    ]);
    this.lang = lang;
    this.messages = messages;
    this.fallback = fallback || messages;
    this.number = new Intl.NumberFormat(lang);
    this.clock = new Intl.DateTimeFormat(lang, { hour: '2-digit', minute: '2-digit', second: '2-digit', hourCycle: 'h23' });
    this.clockShort = new Intl.DateTimeFormat(lang, { hour: '2-digit', minute: '2-digit', hourCycle: 'h23' });
    this.relative = new Intl.RelativeTimeFormat(lang, { numeric: 'always', style: 'short' });
    this.plural = new Intl.PluralRules(lang);
  }

  /**
   * Translates the page, lets the page redraw what it drew itself, and only then sets
   * <html lang>, so a page whose lang attribute names a language shows it throughout.
   */
  show() {
    this.apply();
    for (const fn of this.listeners) fn();
    document.documentElement.lang = this.lang;
  }

  /** The text of key with {name} placeholders filled from params. */
  t(key, params) {
    let m = this.messages[key] ?? this.fallback[key] ?? key;
    if (typeof m === 'object') m = m.other;
    return fill(m, params);
  }

  /** The plural form of key for the count n ({n} is filled with n, formatted). */
  tp(key, n, params) {
    let m = this.messages[key] ?? this.fallback[key] ?? key;
    if (typeof m === 'object') m = m[this.plural.select(n)] ?? m.other;
    return fill(m, { n: this.num(n), ...params });
  }

  /** @param {number} n @param {number} [digits] */
  num(n, digits) {
    if (n == null || !isFinite(n)) return '–';
    if (digits == null) return this.number.format(n);
    return new Intl.NumberFormat(this.lang, { maximumFractionDigits: digits, minimumFractionDigits: 0 }).format(n);
  }

  /** A rate per second: whole numbers when large, two decimals when small. */
  rate(v) {
    return this.num(v, v >= 100 ? 0 : v >= 10 ? 1 : 2);
  }

  /** A size in bytes, in the largest decimal unit below it (kB, MB, GB). */
  bytes(n) {
    if (n == null) return '–';
    const units = ['byte', 'kilobyte', 'megabyte', 'gigabyte', 'terabyte'];
    let i = 0;
    while (n >= 1000 && i < units.length - 1) { n /= 1000; i++; }
    return new Intl.NumberFormat(this.lang, { style: 'unit', unit: units[i], unitDisplay: 'short', maximumFractionDigits: n < 10 && i > 0 ? 1 : 0 }).format(n);
  }

  /** A length of time given in seconds, in its two largest units. */
  duration(sec) {
    if (sec == null || !isFinite(sec)) return '–';
    const neg = sec < 0;
    sec = Math.abs(Math.round(sec));
    const parts = sec < 60 ? { seconds: sec }
      : sec < 3600 ? { minutes: Math.floor(sec / 60), seconds: sec % 60 }
        : sec < 86400 ? { hours: Math.floor(sec / 3600), minutes: Math.floor((sec % 3600) / 60) }
          : { days: Math.floor(sec / 86400), hours: Math.floor((sec % 86400) / 3600) };
    let s;
    if (typeof Intl.DurationFormat === 'function') {
      s = new Intl.DurationFormat(this.lang, { style: 'short' }).format(parts);
    } else {
      const unit = { days: 'day', hours: 'hour', minutes: 'minute', seconds: 'second' };
      s = Object.entries(parts).map(([k, v]) => new Intl.NumberFormat(this.lang, { style: 'unit', unit: unit[k], unitDisplay: 'short' }).format(v)).join(' ');
    }
    return neg ? '-' + s : s;
  }

  /** How long ago something happened, given its age in seconds ("5 sec. ago", "5 秒前"). */
  ago(sec) {
    if (sec == null || !isFinite(sec)) return '–';
    sec = Math.max(0, Math.round(sec));
    if (sec < 60) return this.relative.format(-sec, 'second');
    if (sec < 3600) return this.relative.format(-Math.floor(sec / 60), 'minute');
    if (sec < 86400) return this.relative.format(-Math.floor(sec / 3600), 'hour');
    return this.relative.format(-Math.floor(sec / 86400), 'day');
  }

  /** A time of day, 24-hour, with seconds. */
  time(d) { return this.clock.format(d); }

  /** A time of day, 24-hour, hours and minutes. */
  timeShort(d) { return this.clockShort.format(d); }

  /**
   * Translates every element under root that names a key: data-i18n (its text),
   * data-i18n-title, data-i18n-placeholder, data-i18n-aria-label and data-i18n-alt.
   */
  apply(root = document) {
    for (const e of root.querySelectorAll('[data-i18n]')) e.textContent = this.t(e.dataset.i18n);
    for (const [attr, prop] of [['title', 'i18nTitle'], ['placeholder', 'i18nPlaceholder'], ['aria-label', 'i18nAriaLabel'], ['alt', 'i18nAlt']]) {
      for (const e of root.querySelectorAll(`[data-i18n-${attr}]`)) e.setAttribute(attr, this.t(e.dataset[prop]));
    }
  }

  /** Calls fn after every language change (to redraw what the page drew itself). */
  onChange(fn) { this.listeners.push(fn); }

  /** Fills a <select> with the languages, each in its own name, and switches on change. */
  bindSwitch(select) {
    select.replaceChildren(...this.languages.map((l) => {
      const o = document.createElement('option');
      o.value = l.code;
      o.textContent = l.code === this.lang ? this.t('lang.name') : l.name;
      o.lang = l.code;
      return o;
    }));
    select.value = this.lang;
    select.addEventListener('change', async () => {
      const code = select.value;
      try { localStorage.setItem(STORE_KEY, code); } catch (_) { /* not remembered, still switched */ }
      await this.use(code);
      this.show();
    });
  }
}

/** @param {string} m @param {Record<string, unknown>} [params] */
function fill(m, params) {
  if (!params) return m;
  return m.replace(/\{(\w+)\}/g, (all, name) => (name in params ? String(params[name]) : all));
}

/**
 * Loads the language list and the chosen catalog, translates the page and binds the language
 * switch (a <select id="lang-switch">) when the page has one.
 * @returns {Promise<I18n>}
 */
export async function setup() {
  let languages;
  try {
    languages = await getJSON('/assets/i18n/languages.json');
  } catch (_) {
    languages = [{ code: FALLBACK, name: 'English' }];
  }
  const i18n = new I18n(languages);
  await i18n.use(pick(languages.map((l) => l.code)));
  i18n.show();
  const sw = document.getElementById('lang-switch');
  if (sw) i18n.bindSwitch(/** @type {HTMLSelectElement} */ (sw));
  return i18n;
}
