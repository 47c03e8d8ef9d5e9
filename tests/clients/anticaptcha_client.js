// The official @antiadmin/anticaptchaofficial client against captchad.
// Its host is hard-coded; an axios interceptor (the client requires the same
// hoisted axios) sends every call to captchad instead.
// Usage: node anticaptcha_client.js BASE_URL KEY IMAGE_DIR COUNT
const fs = require("fs");
const path = require("path");
const axios = require("axios");
const [base, key, imageDir, count] = process.argv.slice(2);
axios.interceptors.request.use((cfg) => {
  cfg.url = cfg.url.replace("https://api.anti-captcha.com", base);
  return cfg;
});
const ac = require("@antiadmin/anticaptchaofficial");

(async () => {
  ac.setAPIKey(key);
  ac.shutUp();
  ac.settings.firstAttemptWaitingInterval = 1;
  ac.settings.normalWaitingInterval = 1;
  const labels = fs
    .readFileSync(path.join(imageDir, "labels.tsv"), "utf8")
    .trim()
    .split("\n")
    .map((l) => l.split("\t"))
    .slice(0, Number(count));
  const before = await ac.getBalance();
  let right = 0;
  for (const [name, label] of labels) {
    const body = fs.readFileSync(path.join(imageDir, name), "base64");
    const text = await ac.solveImage(body);
    const ok = text === label.toLowerCase();
    right += ok ? 1 : 0;
    console.log(`anticaptcha-node: ${name} label=${label} answer=${text} task=${ac.session.taskId} ${ok ? "ok" : "WRONG"}`);
  }
  const after = await ac.getBalance();
  console.log(`anticaptcha-node: ${right}/${labels.length} right; balance ${before} -> ${after}`);
  if (!(after < before)) throw new Error("solves must be charged");
  if (right < labels.length - 1) throw new Error(`only ${right}/${labels.length} images read right`);
  if (!Number.isInteger(ac.session.taskId) || ac.session.taskId <= 0) throw new Error("numeric task ids");
  await ac.reportIncorrectImageCaptcha();
  if (!((await ac.getBalance()) > after)) throw new Error("a reported bad answer is refunded");
  ac.setAPIKey("0".repeat(32));
  try {
    await ac.getBalance();
    throw new Error("a wrong key must throw");
  } catch (e) {
    if (e !== "ERROR_KEY_DOES_NOT_EXIST") throw e;
  }
  console.log("anticaptcha-node: ok");
})().catch((e) => {
  console.error("anticaptcha-node: FAILED", e);
  process.exit(1);
});
