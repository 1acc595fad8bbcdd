// JSON with every digit: pgnotify's frames carry numbers a double cannot hold (a bigint pk of
// 2^53 + 1, a numeric of 29 digits). JSON.parse would round them: parseExact turns such a number
// into a string of its exact digits; others stay numbers. Where the reviver gets the number's source
// text (Chromium 114+, Firefox 135+, Safari 18.4+, Node 21+) it decides; elsewhere long numbers
// are quoted before parsing. A text with no run of 16 digits has none: it is parsed as it is.
// Shared by live.js (the dashboard's pages) and live-client.js (the live data client).

const LONG_NUMBER = /[0-9.]{16}/;
const HAS_SOURCE = (() => {
  let seen = false;
  JSON.parse("1", (key, value, context) => { seen = !!context && context.source === "1"; return value; });
  return seen;
})();

export function parseExact(text) {
  if (!LONG_NUMBER.test(text)) return JSON.parse(text);
  return HAS_SOURCE ? JSON.parse(text, exactNumber) : JSON.parse(quoteLongNumbers(text));
}

// Strings are matched whole first, so digits inside them are left alone.
const STRING_OR_LONG_NUMBER = /"(?:[^"\\]|\\.)*"|-?\d[\d.eE+-]{15,}/g;

function quoteLongNumbers(text) {
  return text.replace(STRING_OR_LONG_NUMBER, (token) => {
    if (token[0] === '"' || decimalKey(token) === decimalKey(String(Number(token)))) return token;
    return '"' + token + '"';
  });
}

function exactNumber(key, value, context) {
  if (typeof value !== "number" || !context || typeof context.source !== "string") return value;
  const source = context.source;
  // 15 characters hold at most 15 significant digits, which a double always gives back.
  if (isFinite(value) && (source.length <= 15 || decimalKey(source) === decimalKey(String(value)))) return value;
  return source;
}

// "-0012.3400e+5" -> "-1234e3": sign, significant digits and power of ten, to compare values.
function decimalKey(text) {
  const m = /^(-?)(\d*)(?:\.(\d*))?(?:[eE]([+-]?\d+))?$/.exec(text);
  if (!m) return text;
  const fraction = m[3] || "", digits = (m[2] + fraction).replace(/^0+/, "");
  const exponent = (m[4] ? parseInt(m[4], 10) : 0) - fraction.length;
  const trimmed = digits.replace(/0+$/, "");
  if (!trimmed) return "0";
  return m[1] + trimmed + "e" + (exponent + digits.length - trimmed.length);
}
