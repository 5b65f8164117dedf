// Formatting of the API's decimal strings. The strings are exact; rounding for display is
// done on their digits (half-even, like the service), never through a binary float.

const EM = "\u2014"; // shown for a value that is null (see the warnings for why)

function parse(s) {
  // "-1234.5678" -> {neg, digits: 12345678n, scale: 4}
  const m = /^(-?)(\d+)(?:\.(\d+))?$/.exec(String(s).trim());
  if (!m) throw new Error(`not a decimal string: ${s}`);
  const frac = m[3] || "";
  return { neg: m[1] === "-", digits: BigInt(m[2] + frac), scale: frac.length };
}

// Round a decimal string to `places` decimals, half-even; returns {neg, intPart, fracPart}.
function roundParts(s, places, shift = 0) {
  const p = parse(s);
  let { digits } = p;
  let scale = p.scale - shift; // shift=2 multiplies by 100
  if (scale < places) {
    digits *= 10n ** BigInt(places - scale);
  } else if (scale > places) {
    const d = 10n ** BigInt(scale - places);
    let q = digits / d;
    const r = digits % d;
    if (2n * r > d || (2n * r === d && q % 2n === 1n)) q += 1n;
    digits = q;
  }
  scale = places;
  const str = digits.toString().padStart(scale + 1, "0");
  const intPart = str.slice(0, str.length - scale);
  const fracPart = str.slice(str.length - scale);
  return { neg: p.neg && digits !== 0n, intPart, fracPart };
}

export function group(intPart) {
  return intPart.replace(/\B(?=(\d{3})+(?!\d))/g, ",");
}

export function fixed(s, places) {
  if (s === null || s === undefined) return EM;
  const { neg, intPart, fracPart } = roundParts(s, places);
  return `${neg ? "-" : ""}${group(intPart)}${places ? "." + fracPart : ""}`;
}

// "$124,939.55"; "-$263.81"; an em dash for null.
export function usd(s) {
  if (s === null || s === undefined) return EM;
  const { neg, intPart, fracPart } = roundParts(s, 2);
  return `${neg ? "-" : ""}$${group(intPart)}.${fracPart}`;
}

// A ratio as a percentage: "0.071514" -> "7.15%".
export function pct(s, places = 2) {
  if (s === null || s === undefined) return EM;
  const { neg, intPart, fracPart } = roundParts(s, places, 2);
  return `${neg ? "-" : ""}${group(intPart)}.${fracPart}%`;
}

// Health is a ratio near 1 where the third decimal matters.
export function ratio(s) {
  return s === null || s === undefined ? EM : fixed(s, 3);
}

// Raw base units -> token units, exact, trailing zeros trimmed, at most `maxFrac` decimals
// shown (rounded half-even); the exact value goes in a tooltip.
export function units(raw, decimals, maxFrac = 6) {
  if (raw === null || raw === undefined) return EM;
  const neg = raw.startsWith("-");
  const digits = (neg ? raw.slice(1) : raw).padStart(decimals + 1, "0");
  const exact = `${neg ? "-" : ""}${digits.slice(0, digits.length - decimals)}${
    decimals ? "." + digits.slice(digits.length - decimals) : ""
  }`;
  let shown = decimals > maxFrac ? fixed(exact, maxFrac) : fixed(exact, decimals);
  shown = shown.includes(".") ? shown.replace(/\.?0+$/, "") : shown;
  if (/^-?0$/.test(shown) && /[1-9]/.test(raw)) return `${neg ? "> -" : "< "}0.${"0".repeat(maxFrac - 1)}1`;
  return shown;
}

export function exactUnits(raw, decimals) {
  if (raw === null || raw === undefined) return "";
  const digits = raw.padStart(decimals + 1, "0");
  const i = digits.length - decimals;
  const s = decimals ? `${digits.slice(0, i)}.${digits.slice(i)}` : digits;
  return s.includes(".") ? s.replace(/\.?0+$/, "") : s;
}

export function num(s) {
  return s === null || s === undefined ? null : Number(s);
}

export function shortHex(h, head = 6, tail = 4) {
  if (!h || h.length <= head + tail + 2) return h || EM;
  return `${h.slice(0, head)}\u2026${h.slice(-tail)}`;
}

export function utc(ts) {
  if (ts === null || ts === undefined) return EM;
  return new Date(ts * 1000).toISOString().replace("T", " ").replace(".000Z", " UTC");
}

export { EM };
