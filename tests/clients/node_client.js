// The official @2captcha/captcha-solver client against captchad.
// Its endpoints are module constants: point them at our server.
// Usage: node node_client.js BASE_URL KEY IMAGE_DIR COUNT
const fs = require("fs");
const path = require("path");
const constants = require("@2captcha/captcha-solver/dist/structs/constants/constants");
const [base, key, imageDir, count] = process.argv.slice(2);
constants.supportedProviders.twoCaptcha.in = `${base}/in.php`;
constants.supportedProviders.twoCaptcha.res = `${base}/res.php`;
const { Solver } = require("@2captcha/captcha-solver");

(async () => {
  const solver = new Solver(key, 200);
  const labels = fs
    .readFileSync(path.join(imageDir, "labels.tsv"), "utf8")
    .trim()
    .split("\n")
    .map((l) => l.split("\t"))
    .slice(0, Number(count));
  const before = await solver.balance();
  let right = 0;
  for (const [name, label] of labels) {
    const body = fs.readFileSync(path.join(imageDir, name), "base64");
    const res = await solver.imageCaptcha({ body, numeric: 0 });
    const ok = res.data === label.toLowerCase();
    right += ok ? 1 : 0;
    console.log(`node: ${name} label=${label} answer=${res.data} id=${res.id} ${ok ? "ok" : "WRONG"}`);
  }
  const after = await solver.balance();
  console.log(`node: ${right}/${labels.length} right; balance ${before} -> ${after}`);
  if (!(after < before)) throw new Error("solves must be charged");
  if (right < labels.length - 1) throw new Error(`only ${right}/${labels.length} read right`);
  // This client logs an error answer of getbalance instead of throwing; it
  // must not get a number for a key that does not exist.
  let wrong;
  try {
    wrong = await new Solver("0".repeat(32)).balance();
  } catch (e) {
    wrong = undefined;
  }
  if (typeof wrong === "number" && !Number.isNaN(wrong)) throw new Error(`a wrong key got a balance: ${wrong}`);
  console.log("node: ok");
})().catch((e) => {
  console.error("node: FAILED", e);
  process.exit(1);
});
