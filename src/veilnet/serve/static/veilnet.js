/*
 * veilnet's browser client: the page does the client's job of `veilnet query` for keyed models.
 *
 * The key file and the images are read inside the page and never leave it: the page checks the
 * key against GET /v1/info (as veilnet.serve.client.Client.check_secret does), encrypts each
 * image with the key and posts only the encrypted tensor (.npy, float32 N×C×S×S) to
 * POST /v1/predict. The key lives in one variable for the page's lifetime; nothing is stored.
 *
 * The encryption is veilnet.keyed.encrypt_images for keys whose Ea is a signed permutation
 * (block scheme; ViT scheme with a permutation or signed-permutation Ea), bit for bit:
 *   ConvMixer paper ("An Encryption Method of ConvMixer Models without Performance Degradation"),
 *   Sec. 3.2: block segmentation, pixel shuffling (Eq. 4), negative-positive flip x ↦ 1 − x
 *   (Eq. 5-6); ViT paper ("Combined Use of Federated Learning and Image Encryption for
 *   Privacy-Preserving Image Classification with Vision Transformer"), Sec. 3.3: block
 *   permutation B̂_i = B_{l_e(i)} (Eq. 9-10) and b̂ = (b − ½)·Ea⁻¹ + ½ per block (Eq. 11-13).
 * For such an Ea the whole transform is one gather over the flattened C×S×S image followed by
 * the flip: y[p] = flip[p] ? 1 − x[index[p]] : x[index[p]], x = u8 / 255 in float32
 * (veilnet.keyed.images._index_map).
 *
 * Plain modern JavaScript, no build step. The first part (VeilnetCore) uses no DOM, so Node can
 * load it too (module.exports); the second part wires the page.
 */
"use strict";

const VeilnetCore = (() => {
  const NPY = "application/x-npy";
  const KEY_FORMAT = "veilnet-key";
  const KEY_VERSION = 1;
  /** Kinds of Ea this page encrypts with (an orthogonal or supplied Ea needs `veilnet query`). */
  const PAGE_EA = ["permutation", "signed-permutation"];

  /** A user-facing problem: `message` is one sentence the page shows as it is. */
  class UserError extends Error {}

  const isInt = (v) => Number.isInteger(v);
  const checkPermutation = (values, n, name) => {
    if (!Array.isArray(values) || values.length !== n || !values.every(isInt)) throw new UserError(`This key file is damaged: ${name} is not a permutation of ${n} elements.`);
    const seen = new Uint8Array(n);
    for (const v of values) {
      if (v < 0 || v >= n || seen[v]) throw new UserError(`This key file is damaged: ${name} is not a permutation of ${n} elements.`);
      seen[v] = 1;
    }
  };

  /**
   * Parse and validate a veilnet key file's text (veilnet.keys.load and veilnet.keyed.validate's
   * checks for the kinds this page takes). Returns {scheme, params, material, fingerprint, ea}.
   */
  function parseKey(text) {
    let doc;
    try {
      doc = JSON.parse(text);
    } catch {
      throw new UserError("This key file is not valid JSON (truncated or corrupt); pick the key file that `veilnet key new` wrote.");
    }
    if (!doc || typeof doc !== "object" || doc.format !== KEY_FORMAT) throw new UserError("This file is not a veilnet key file; pick the key file that `veilnet key new` wrote.");
    if (doc.version !== KEY_VERSION) throw new UserError(`This key file has version ${JSON.stringify(doc.version)}; this page reads version ${KEY_VERSION}.`);
    const { scheme, params, material, fingerprint } = doc;
    if (!["block", "vit"].includes(scheme) || !params || typeof params !== "object" || !material || typeof material !== "object" || typeof fingerprint !== "string") throw new UserError("This key file is damaged: it lacks its scheme, parameters, material or fingerprint.");
    const names = ["block_size", "channels", "image_size", ...(scheme === "vit" ? ["ea"] : [])];
    if (Object.keys(params).sort().join() !== [...names].sort().join()) throw new UserError(`This key file is damaged: a ${scheme} key's parameters are ${names.join(", ")}.`);
    const { block_size: m, channels: c, image_size: s } = params;
    if (![m, c, s].every((v) => isInt(v) && v >= 1) || s % m) throw new UserError("This key file is damaged: its block size, channels and image size are not positive integers with the image size a multiple of the block size.");
    const ea = scheme === "block" ? "signed-permutation" : params.ea;
    if (!PAGE_EA.includes(ea)) throw new UserError(`This page encrypts with keys whose Ea is a permutation or signed permutation; this key's Ea is ${JSON.stringify(ea)}: use \`veilnet query\` for it.`);
    const length = m * m * c;
    const blocks = (s / m) ** 2;
    const want = ["shuffle", ...(ea === "signed-permutation" ? ["flip"] : []), ...(scheme === "vit" ? ["block_perm"] : [])];
    if (Object.keys(material).sort().join() !== [...want].sort().join()) throw new UserError(`This key file is damaged: its material should be ${want.join(", ")}.`);
    checkPermutation(material.shuffle, length, "shuffle");
    if (scheme === "vit") checkPermutation(material.block_perm, blocks, "block_perm");
    if (ea === "signed-permutation") {
      const flip = material.flip;
      if (!Array.isArray(flip) || flip.length !== Math.floor(length / 2) || !flip.every((v) => isInt(v) && v >= 0 && v < length) || new Set(flip).size !== flip.length) throw new UserError(`This key file is damaged: flip must select ${Math.floor(length / 2)} distinct positions.`);
    }
    return { scheme, params: { ...params }, material, fingerprint, ea, recorded: fingerprint };
  }

  /** The canonical JSON veilnet.keys hashes for a fingerprint: sorted keys, no spaces. */
  function canonicalJSON(value) {
    if (Array.isArray(value)) return `[${value.map(canonicalJSON).join(",")}]`;
    if (value && typeof value === "object") return `{${Object.keys(value).sort().map((k) => `${JSON.stringify(k)}:${canonicalJSON(value[k])}`).join(",")}}`;
    return JSON.stringify(value);
  }

  /**
   * Check that the key file's material matches its recorded fingerprint ("sha256:" + SHA-256 of
   * the canonical JSON of scheme, params and material), as veilnet.keys.load does. Needs Web
   * Crypto (a secure context: https, or http on localhost); without it the recorded one is used.
   */
  async function verifyFingerprint(key, subtle = globalThis.crypto && globalThis.crypto.subtle) {
    if (!subtle) return false;
    const bytes = new TextEncoder().encode(canonicalJSON({ scheme: key.scheme, params: key.params, material: key.material }));
    const digest = new Uint8Array(await subtle.digest("SHA-256", bytes));
    const hex = Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
    if (`sha256:${hex}` !== key.recorded) throw new UserError("This key file's material does not match its fingerprint (tampered or corrupt).");
    return true;
  }

  const short = (fp) => `${String(fp).slice(0, 19)}…`;

  /**
   * Refuse a key that cannot belong to the served model (veilnet.serve.kinds.KeyedKind.check_secret):
   * the model's kind, then scheme, block size, channels, image size, kind of Ea, fingerprint.
   */
  function checkKey(key, info) {
    if (!info || typeof info !== "object" || !info.params || !info.input) throw new UserError("The server's /v1/info is not a veilnet model description; is this a veilnet server?");
    if (info.kind !== "keyed") throw new UserError(`This server's model is of kind ${JSON.stringify(info.kind)}; this page feeds keyed models only (use \`veilnet query\`).`);
    const served = info.params;
    const mine = { scheme: key.scheme, block_size: key.params.block_size, channels: key.params.channels, image_size: key.params.image_size, ea: key.ea };
    for (const name of ["scheme", "block_size", "channels", "image_size", "ea"]) {
      if (name in served && served[name] !== mine[name]) throw new UserError(`Wrong key for this model: the key has ${name} ${JSON.stringify(mine[name])} but the served model expects ${JSON.stringify(served[name])}.`);
    }
    if ("fingerprint" in served && served.fingerprint !== key.fingerprint) throw new UserError(`Wrong key for this model: it was transformed with key ${short(served.fingerprint)}, this file holds key ${short(key.fingerprint)}.`);
  }

  /**
   * The flat gather index and flip mask over one C×S×S image (veilnet.keyed.images._index_map):
   * source[t][l] is the flat position of pixel l (C, M, M order) of block t (raster order);
   * Eb takes block block_perm[t], Ea pixel shuffle[l]; the flip follows the output position l.
   */
  function indexMap(key) {
    const { block_size: m, channels: c, image_size: s } = key.params;
    const g = s / m;
    const length = m * m * c;
    const shuffle = key.material.shuffle;
    const perm = key.material.block_perm;
    const flipAt = new Uint8Array(length);
    for (const v of key.material.flip || []) flipAt[v] = 1;
    const index = new Int32Array(c * s * s);
    const flip = new Uint8Array(c * s * s);
    const source = (t, l) => {
      const by = Math.floor(t / g), bx = t % g;
      const ch = Math.floor(l / (m * m)), i = Math.floor((l % (m * m)) / m), j = l % m;
      return ch * s * s + (by * m + i) * s + bx * m + j;
    };
    for (let t = 0; t < g * g; t++) {
      const by = Math.floor(t / g), bx = t % g;
      const from = perm ? perm[t] : t;
      for (let l = 0; l < length; l++) {
        const ch = Math.floor(l / (m * m)), i = Math.floor((l % (m * m)) / m), j = l % m;
        const p = ch * s * s + (by * m + i) * s + bx * m + j;
        index[p] = source(from, shuffle[l]);
        flip[p] = flipAt[l];
      }
    }
    return { index, flip };
  }

  /**
   * Encrypt one image's pixels (uint8, C×S×S, channel-major) into float32:
   * x = u8 / 255 (veilnet.metrics.as_float), y[p] = x[index[p]], then 1 − y where flipped (Eq. 6).
   * Float32Array stores each value rounded to float32, as torch's float32 arithmetic does.
   */
  function encryptPixels(pixels, map) {
    const n = map.index.length;
    if (pixels.length !== n) throw new UserError(`An image has ${pixels.length} values where the key takes ${n}.`);
    const x = new Float32Array(n);
    for (let p = 0; p < n; p++) x[p] = pixels[p] / 255;
    const y = new Float32Array(n);
    for (let p = 0; p < n; p++) {
      const v = x[map.index[p]];
      y[p] = map.flip[p] ? 1 - v : v;
    }
    return y;
  }

  /** A float32 little-endian .npy body of `shape` holding `data` (the format np.save writes, version 1.0). */
  function npyBody(data, shape) {
    const dims = shape.length === 1 ? `(${shape[0]},)` : `(${shape.join(", ")})`;
    let header = `{'descr': '<f4', 'fortran_order': False, 'shape': ${dims}, }`;
    header += " ".repeat(63 - ((header.length + 10) % 64)) + "\n";
    const body = new Uint8Array(10 + header.length + data.length * 4);
    body.set([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0], 0);
    new DataView(body.buffer).setUint16(8, header.length, true);
    body.set(new TextEncoder().encode(header), 10);
    const view = new DataView(body.buffer, 10 + header.length);
    for (let i = 0; i < data.length; i++) view.setFloat32(i * 4, data[i], true);
    return body;
  }

  /** Parse a float32 .npy answer into {shape, data}. */
  function readNpy(buffer) {
    const bytes = new Uint8Array(buffer);
    if (bytes.length < 10 || bytes[0] !== 0x93 || String.fromCharCode(...bytes.slice(1, 6)) !== "NUMPY") throw new UserError("The server's answer is not a .npy array.");
    const wide = bytes[6] >= 2;
    const length = wide ? new DataView(bytes.buffer, bytes.byteOffset).getUint32(8, true) : new DataView(bytes.buffer, bytes.byteOffset).getUint16(8, true);
    const start = wide ? 12 : 10;
    const header = new TextDecoder().decode(bytes.slice(start, start + length));
    const descr = /'descr':\s*'([^']+)'/.exec(header);
    const shape = /'shape':\s*\(([^)]*)\)/.exec(header);
    if (!descr || descr[1] !== "<f4" || !shape || /'fortran_order':\s*True/.test(header)) throw new UserError("The server's answer is not a float32 array.");
    const dims = shape[1].split(",").map((d) => d.trim()).filter(Boolean).map(Number);
    const count = dims.reduce((a, b) => a * b, 1);
    const view = new DataView(bytes.buffer, bytes.byteOffset + start + length);
    if (view.byteLength !== count * 4) throw new UserError("The server's answer is truncated.");
    const data = new Float32Array(count);
    for (let i = 0; i < count; i++) data[i] = view.getFloat32(i * 4, true);
    return { shape: dims, data };
  }

  /** Labels and softmax confidences of N×K logits (softmax in double, as Client.classify). */
  function classify(logits, k) {
    const out = [];
    for (let r = 0; r * k < logits.length; r++) {
      const row = Array.from(logits.subarray(r * k, (r + 1) * k));
      const top = Math.max(...row);
      const e = row.map((v) => Math.exp(v - top));
      const sum = e.reduce((a, b) => a + b, 0);
      const label = row.indexOf(top);
      out.push({ label, confidence: e[label] / sum });
    }
    return out;
  }

  /** The name of class `label`: /v1/info's `classes` (the model card's), or "class N" for a card without names. */
  function className(classes, label) {
    return Array.isArray(classes) && typeof classes[label] === "string" ? classes[label] : `class ${label}`;
  }

  /**
   * RGBA pixels (canvas ImageData, S×S) -> C×S×S uint8, channel-major. C = 1 is PIL's "L"
   * conversion (ITU-R 601-2 luma, L = (19595 R + 38470 G + 7471 B + 2^15) >> 16), as
   * veilnet.data.images.decode_image does for a 1-channel model.
   */
  function toPlanes(rgba, channels) {
    const n = rgba.length / 4;
    const out = new Uint8Array(channels * n);
    for (let p = 0; p < n; p++) {
      const r = rgba[4 * p], g = rgba[4 * p + 1], b = rgba[4 * p + 2];
      if (channels === 1) out[p] = (r * 19595 + g * 38470 + b * 7471 + 0x8000) >>> 16;
      else { out[p] = r; out[n + p] = g; out[2 * n + p] = b; }
    }
    return out;
  }

  return { NPY, UserError, parseKey, canonicalJSON, verifyFingerprint, checkKey, indexMap, encryptPixels, npyBody, readNpy, classify, className, short, toPlanes };
})();

if (typeof module !== "undefined" && module.exports) module.exports = VeilnetCore;

// --- the page ------------------------------------------------------------------------------------

if (typeof document !== "undefined") {
  const { UserError } = VeilnetCore;
  const $ = (id) => document.getElementById(id);
  let key = null; // the parsed key: in this variable only, for the page's lifetime
  const NO_KEY = "Pick your key file first.";
  let keyProblem = NO_KEY; // why there is no key: said again on every try until the key file changes

  const say = (text) => { $("status").textContent = text; };
  const fail = (text) => { $("error").textContent = text; $("error").hidden = false; say(""); };
  const clearError = () => { $("error").textContent = ""; $("error").hidden = true; };

  async function loadKey() {
    key = null;
    keyProblem = NO_KEY;
    $("key-info").textContent = "";
    const file = $("key").files[0];
    if (!file) return;
    clearError();
    try {
      const parsed = VeilnetCore.parseKey(await file.text());
      const verified = await VeilnetCore.verifyFingerprint(parsed);
      key = parsed;
      key.map = VeilnetCore.indexMap(parsed);
      $("key-info").textContent = keyLine(key, verified);
      await preview();
    } catch (err) {
      keyProblem = err instanceof UserError ? err.message : "This key file cannot be read.";
      fail(keyProblem);
    }
  }

  /** What the key does, in plain words, then its shortened fingerprint (for those who check it). */
  function keyLine(k, verified) {
    const { block_size: m, image_size: s } = k.params;
    const steps = [`shuffles the pixels inside every ${m}×${m} block`];
    if (k.ea === "signed-permutation") steps.push("inverts half of them");
    if (k.scheme === "vit") steps.push("reorders the blocks");
    const does = steps.length > 1 ? `${steps.slice(0, -1).join(", ")} and ${steps.at(-1)}` : steps[0];
    return `Your key scrambles each ${s}×${s} image here in this page: it ${does}. The server's model was prepared with the same key, so it classifies the scrambled image without ever seeing yours. Key ${VeilnetCore.short(k.fingerprint)}${verified ? " (verified)" : ""}.`;
  }

  /** The served model in plain words, from /v1/info. */
  function modelLine(info) {
    const names = Array.isArray(info.classes) ? `: ${info.classes.slice(0, 12).join(", ")}${info.classes.length > 12 ? ", …" : ""}` : "";
    const arch = info.card && info.card.architecture ? `a ${info.card.architecture} image classifier` : "an image classifier";
    return `The server runs ${arch} that tells apart ${info.num_classes} classes${names}.`;
  }

  /** /v1/info, checked against the key (a UserError for each problem). */
  async function servedModel(token) {
    let info;
    try {
      info = await (await call("v1/info", token)).json();
    } catch (err) {
      if (err instanceof UserError) throw err;
      throw new UserError("The server's /v1/info is not a veilnet model description; is this a veilnet server?");
    }
    VeilnetCore.checkKey(key, info);
    $("model-info").textContent = modelLine(info);
    return info;
  }

  /** Once the key and the token are there, say what the served model is before anything is sent; a problem is said when the person classifies. */
  async function preview() {
    const token = $("token").value.trim();
    $("model-info").textContent = "";
    if (!key || !token) return;
    try {
      await servedModel(token);
    } catch {
      $("model-info").textContent = "";
    }
  }

  /** GET or POST same-origin; each failure becomes one sentence. */
  async function call(path, token, init = {}) {
    let answer;
    try {
      answer = await fetch(path, { ...init, cache: "no-store", credentials: "omit", referrerPolicy: "no-referrer", headers: { ...(init.headers || {}), Authorization: `Bearer ${token}` } });
    } catch {
      throw new UserError("The server cannot be reached: check that `veilnet serve` is running and reload this page.");
    }
    if (answer.status === 401 || answer.status === 403) throw new UserError("The server refused the token: paste a token from the server's token file.");
    if (!answer.ok) {
      let why = answer.statusText;
      try { why = (await answer.json()).error || why; } catch { /* plain text */ }
      throw new UserError(`The server answered ${answer.status}: ${why}.`);
    }
    return answer;
  }

  /**
   * One image file -> {pixels (C×S×S uint8), canvas, resized}. An image of exactly S×S is taken
   * pixel for pixel (as `veilnet query` reads it); any other is centre-cropped to a square and
   * scaled to S×S, and `resized` says so ("640×480 → 32×32"; null for an image of the model's size).
   */
  async function readImage(file, channels, size) {
    let bitmap;
    try {
      bitmap = await createImageBitmap(file, { colorSpaceConversion: "none", premultiplyAlpha: "none" });
    } catch {
      throw new UserError(`${file.name}: this file is not an image the browser can read.`);
    }
    const canvas = document.createElement("canvas");
    canvas.width = canvas.height = size;
    const ctx = canvas.getContext("2d", { willReadFrequently: true, colorSpace: "srgb" });
    const side = Math.min(bitmap.width, bitmap.height);
    const resized = bitmap.width === size && bitmap.height === size ? null : `${bitmap.width}×${bitmap.height} → ${size}×${size}`;
    ctx.imageSmoothingQuality = "high";
    ctx.drawImage(bitmap, (bitmap.width - side) / 2, (bitmap.height - side) / 2, side, side, 0, 0, size, size);
    bitmap.close();
    const pixels = VeilnetCore.toPlanes(ctx.getImageData(0, 0, size, size).data, channels);
    if (channels === 1) showPlanes(canvas, pixels, 1, size); // what the model sees
    return { pixels, canvas, resized };
  }

  /** Draw C×S×S values (uint8, or float in [0, 1]) on a canvas. */
  function showPlanes(canvas, values, channels, size, scale = 1) {
    canvas.width = canvas.height = size;
    const ctx = canvas.getContext("2d");
    const image = ctx.createImageData(size, size);
    const n = size * size;
    for (let p = 0; p < n; p++) {
      for (let k = 0; k < 3; k++) image.data[4 * p + k] = Math.round(values[(channels === 1 ? 0 : k) * n + p] * scale);
      image.data[4 * p + 3] = 255;
    }
    ctx.putImageData(image, 0, 0);
    return canvas;
  }

  function showResult({ name, canvas: plain, resized }, encrypted, channels, size, prediction, classes) {
    const figure = document.createElement("figure");
    figure.className = "result";
    figure.dataset.label = String(prediction.label);
    figure.dataset.confidence = String(prediction.confidence);
    const cipher = showPlanes(document.createElement("canvas"), encrypted, channels, size, 255);
    plain.title = `${name}: your image (stays in this page)`;
    cipher.title = `${name}: the encrypted image the server received`;
    const pair = document.createElement("div");
    pair.className = "pair";
    for (const [canvas, legend] of [[plain, "yours, stays here"], [cipher, "sent to the server"]]) {
      const shot = Object.assign(document.createElement("div"), { className: "shot" });
      shot.append(canvas, Object.assign(document.createElement("small"), { textContent: legend }));
      pair.append(shot);
    }
    const caption = document.createElement("figcaption");
    const label = document.createElement("strong");
    label.className = "label";
    label.textContent = VeilnetCore.className(classes, prediction.label);
    caption.append(label, ` · ${(100 * prediction.confidence).toFixed(1)} % · `, Object.assign(document.createElement("span"), { className: "name", textContent: name }));
    if (resized) caption.append(Object.assign(document.createElement("small"), { className: "resized", textContent: `cropped to a square and scaled: ${resized}` }));
    figure.append(pair, caption);
    $("results").append(figure);
  }

  async function classify(event) {
    event.preventDefault();
    clearError();
    $("results").replaceChildren();
    const token = $("token").value.trim();
    const files = Array.from($("images").files);
    if (!key) return fail(keyProblem);
    if (!files.length) return fail("Pick one or more images.");
    if (!token) return fail("Paste your token.");
    $("classify").disabled = true;
    try {
      say("Checking the key against the server…");
      const info = await servedModel(token);
      const { channels: c, image_size: s } = key.params;
      say("Encrypting in this page…");
      const read = [];
      for (const file of files) read.push({ name: file.name, ...(await readImage(file, c, s)) });
      const encrypted = read.map((r) => VeilnetCore.encryptPixels(r.pixels, key.map));
      const k = info.num_classes;
      const chunk = Math.max(1, Number(info.limits && info.limits.max_batch) || 1);
      const item = c * s * s;
      for (let start = 0; start < encrypted.length; start += chunk) {
        const part = encrypted.slice(start, start + chunk);
        const data = new Float32Array(part.length * item);
        part.forEach((y, i) => data.set(y, i * item));
        say(`Sending ${part.length} encrypted image(s)…`);
        const answer = await call("v1/predict", token, { method: "POST", headers: { "Content-Type": VeilnetCore.NPY }, body: VeilnetCore.npyBody(data, [part.length, c, s, s]) });
        const logits = VeilnetCore.readNpy(await answer.arrayBuffer());
        if (logits.shape[0] !== part.length || !k || logits.shape[1] !== k) throw new UserError("The server's answer does not have one row of class scores per image.");
        VeilnetCore.classify(logits.data, k).forEach((p, i) => showResult(read[start + i], part[i], c, s, p, info.classes));
      }
      say(`${encrypted.length} image(s) classified; only the encrypted images left this page.`);
    } catch (err) {
      fail(err instanceof UserError ? err.message : `Something went wrong in the page (${err && err.name}).`);
    } finally {
      $("classify").disabled = false;
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("key").addEventListener("change", loadKey);
    $("token").addEventListener("change", preview);
    $("form").addEventListener("submit", classify);
  });
}
