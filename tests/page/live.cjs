// Drives Debian's Chromium (headless, through playwright-core) against a live registry page:
// waits until ADDR shows healthy, says READY, waits for KILLED on stdin, then waits until the page
// shows ADDR excluded or gone, says GONE with the milliseconds it took, and saves a screenshot.
"use strict";
const path = require("path");
const { chromium } = require(path.join(process.env.PW_DIR, "node_modules", "playwright-core"));
const [url, addr, shot] = process.argv.slice(2);

function line() {
  return new Promise(resolve => {
    let buf = "";
    process.stdin.on("data", d => {
      buf += d;
      if (buf.includes("\n")) resolve(buf.trim());
    });
  });
}

(async () => {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  try {
    const page = await browser.newPage();
    await page.goto(url);
    await page.waitForSelector(`tr[data-addr="${addr}"] td.healthy`, { timeout: 15000 });
    console.log("READY");
    await line();
    const start = Date.now();
    await page.waitForFunction(a => {
      const cell = document.querySelector(`tr[data-addr="${a}"] td:nth-child(2)`);
      return !cell || cell.textContent === "excluded";
    }, addr, { timeout: 15000, polling: 20 });
    console.log(`GONE ${Date.now() - start}`);
    await page.screenshot({ path: shot, fullPage: true });
    console.log(`TEXT ${JSON.stringify(await page.innerText("body"))}`);
  } finally {
    await browser.close();
  }
})().catch(e => { console.error(e); process.exit(1); });
