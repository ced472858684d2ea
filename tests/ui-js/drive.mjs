// Drives dealport's dashboard (/ui/) in Debian's headless Chromium through
// playwright-core, as an operator would, and checks what the pages show.
//
//   node drive.mjs '<job JSON>'
//
// Job: { base, token, uuid, label?, piece?, holder?, standby?, expect_download?,
//        expect_expiry_ms?, shots, prefix }
// Prints one JSON line: {"ok": true, "checks": [...]} or {"ok": false, "error": "..."}.
// Every wait is on something the page shows, bounded.
import { chromium } from "playwright-core";
import { mkdtempSync, mkdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const job = JSON.parse(process.argv[2]);
const checks = [];
function check(cond, what) {
  if (!cond) throw new Error("check failed: " + what);
  checks.push(what);
}
async function until(what, limitMs, f) {
  const end = Date.now() + limitMs;
  for (;;) {
    const v = await f();
    if (v) return v;
    if (Date.now() > end) throw new Error("timed out waiting for " + what);
    await new Promise((r) => setTimeout(r, 100));
  }
}

// Thrown to end a job early once its checks passed.
const DONE = Symbol("done");
const profile = mkdtempSync(join(tmpdir(), "dealport-ui-chromium-"));
mkdirSync(job.shots, { recursive: true });
const shot = (page, name) =>
  page.screenshot({ path: join(job.shots, `${job.prefix}-${name}.png`), fullPage: true });

let context;
try {
  context = await chromium.launchPersistentContext(profile, {
    executablePath: "/usr/bin/chromium",
    headless: true,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
    viewport: { width: 1400, height: 900 },
  });
  const page = context.pages()[0] || (await context.newPage());
  const pageErrors = [];
  page.on("pageerror", (e) => pageErrors.push(String(e)));
  page.on("dialog", (d) => { pageErrors.push("dialog: " + d.message()); d.dismiss(); });

  // Without a session every page sends the browser to the login form.
  let r = await page.goto(job.base + "/ui/");
  check(new URL(page.url()).pathname === "/ui/login", "no session: /ui/ redirects to the login form");
  const live = await page.request.get(job.base + "/ui/live?u=");
  check(live.status() === 401, "no session: /ui/live answers 401");

  // A wrong token is refused.
  await page.fill("#token", job.token + "-wrong");
  await Promise.all([page.waitForNavigation(), page.click("#login")]);
  check((await page.textContent("#login-error")).includes("wrong token"), "wrong token refused");
  check((await context.cookies()).length === 0, "wrong token: no cookie set");
  await shot(page, "login-refused");

  // The right token: a session cookie, HttpOnly and SameSite=Strict, then the deals.
  await page.fill("#token", job.token);
  await Promise.all([page.waitForNavigation(), page.click("#login")]);
  check(new URL(page.url()).pathname === "/ui/", "login lands on the deals page");
  const cookie = (await context.cookies()).find((c) => c.name === "dealport_ui");
  check(cookie && cookie.httpOnly && cookie.sameSite === "Strict", "session cookie is HttpOnly, SameSite=Strict");
  check(cookie.expires > Date.now() / 1000, "session cookie expires");
  check(!(await page.evaluate(() => document.cookie)).includes("dealport_ui"), "script cannot read the session cookie");
  check(!page.url().includes(job.token), "no token in the URL");

  if (job.expect_expiry_ms) {
    // The session ends on its own: a reload after the TTL lands on the login form.
    await page.goto(job.base + "/ui/node");
    check(new URL(page.url()).pathname === "/ui/node", "the node page opens while the session lasts");
    await until("the session to expire", job.expect_expiry_ms + 10000, async () => {
      await page.goto(job.base + "/ui/node");
      return new URL(page.url()).pathname === "/ui/login";
    });
    check(true, "the session expired");
    throw DONE;
  }

  const row = `tr[data-uuid="${job.uuid}"]`;
  await until("the deal in the list", 10000, () => page.$(row));
  check(true, "the deal is in the list");
  const total = Number(await page.textContent("#count-total"));
  check(total >= 1, "counts per checkpoint are shown");
  if (job.holder) {
    check((await page.textContent("#holder")) === job.holder, "the header names the lease holder " + job.holder);
  }
  if (job.standby) {
    check((await page.textContent("header")).includes("standing by"), "the page says this node stands by");
  }
  if (job.label !== undefined) {
    const shown = await page.textContent(`${row} td.label`);
    check(shown === job.label, "the label is shown as text: " + shown);
    check((await page.$$(`${row} td.label script`)).length === 0, "no script element made from the label");
    check((await page.evaluate(() => window.__pwned)) === undefined, "the label's script did not run");
  }
  // JS refreshed the page's live values from /ui/live.
  await until("a live refresh", 10000, () => page.evaluate(() => document.body.dataset.lastRefresh));
  check(true, "live values refreshed without a reload");
  await shot(page, "deals");

  // Filters: a failed deal is under "failed" only, one at work under "in progress" only.
  const failed = (await page.textContent(`${row} .live-state`)).startsWith("Failed");
  await page.goto(job.base + "/ui/?state=failed");
  check(((await page.$(row)) !== null) === failed, `state=failed ${failed ? "keeps" : "leaves out"} the deal`);
  await page.goto(job.base + "/ui/?state=in-progress");
  check(((await page.$(row)) !== null) === !failed, `state=in-progress ${failed ? "leaves out" : "keeps"} the deal`);
  await page.goto(job.base + "/ui/?state=Complete");
  check((await page.$(row)) === null, "state=Complete leaves the deal out");

  // Search by UUID and by piece CID.
  await page.goto(job.base + "/ui/");
  await page.fill("#search", job.uuid);
  await Promise.all([page.waitForNavigation(), page.click("#search-go")]);
  check((await page.$$("tr[data-uuid]")).length === 1 && (await page.$(row)) !== null, "search by UUID finds exactly the deal");
  if (job.piece) {
    await page.goto(job.base + "/ui/?q=" + encodeURIComponent(job.piece));
    check((await page.$(row)) !== null, "search by piece CID finds the deal");
  }
  await page.goto(job.base + "/ui/?q=not-a-cid");
  check((await page.textContent("main")).includes("neither a deal UUID nor a CID"), "a bad search says why");

  // The deal page: fields, timeline with times, the raw record.
  await page.goto(job.base + "/ui/");
  await Promise.all([page.waitForNavigation(), page.click(`${row} a.deal-link`)]);
  check(new URL(page.url()).pathname === "/ui/deal/" + job.uuid, "the list links to the deal page");
  check((await page.textContent("#deal-uuid")) === job.uuid, "the deal page shows the deal");
  const accepted = await page.textContent('#timeline li[data-checkpoint="Accepted"] time');
  check(/^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC$/.test(accepted), "the timeline gives Accepted a time: " + accepted);
  check((await page.textContent("#raw")).includes(`"uuid": "${job.uuid}"`), "the raw record is shown");
  if (job.label !== undefined) {
    check((await page.textContent("#label")) === job.label, "the deal page shows the label as text");
    check((await page.evaluate(() => window.__pwned)) === undefined, "the label's script did not run on the deal page");
  }
  if (job.expect_download) {
    // While downloading: a bar that moves, then the state turns Transferred, all live.
    await until("the progress bar", 20000, () => page.isVisible("#progress"));
    const first = await page.getAttribute("#progress-bar", "value");
    await until("the progress bar to move", 30000, async () =>
      Number(await page.evaluate(() => document.getElementById("progress-bar").value)) > Number(first));
    check(true, "the progress bar moves without a reload");
    // The test's data server goes at full speed from here.
    console.log("progress-moved");
    await shot(page, "deal-downloading");
    await until("Transferred, live", 60000, async () => (await page.textContent("#state")) === "Transferred");
    check(true, "the state turned Transferred without a reload");
    await page.reload();
    const t = await page.textContent('#timeline li[data-checkpoint="Transferred"] time');
    check(/UTC$/.test(t), "the timeline gives Transferred a time: " + t);
  }
  await shot(page, "deal");

  // The node page.
  await page.goto(job.base + "/ui/node");
  check((await page.textContent("#peer-id")).startsWith("12D3KooW"), "the node page shows the PeerID");
  if (job.holder) {
    check((await page.textContent("#lease-holder")) === job.holder, "the node page names the lease holder");
  }
  check((await page.$("#chart")) !== null, "the node page has the per-hour chart");
  check(/[1-9]\d* accepted/.test(await page.textContent("#chart-totals")), "the chart counts the deal");
  await shot(page, "node");

  // Log out: the cookie is gone and the pages want a login again.
  await page.goto(job.base + "/ui/");
  await Promise.all([page.waitForNavigation(), page.click("header form button")]);
  check(new URL(page.url()).pathname === "/ui/login", "log out returns to the login form");
  await page.goto(job.base + "/ui/");
  check(new URL(page.url()).pathname === "/ui/login", "after log out the pages need a login");
  check(pageErrors.length === 0, "no script errors or dialogs: " + pageErrors.join("; "));
  console.log(JSON.stringify({ ok: true, checks }));
} catch (e) {
  if (e === DONE) console.log(JSON.stringify({ ok: true, checks }));
  else console.log(JSON.stringify({ ok: false, error: String(e && e.stack || e), checks }));
} finally {
  if (context) await context.close();
  rmSync(profile, { recursive: true, force: true });
}
