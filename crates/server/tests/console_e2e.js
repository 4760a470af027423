// Browser scenarios of the operations console, driven by console_browser.rs: real headless
// Chromium through playwright-core. Input comes from the environment; every scenario saves
// screenshots; any failed expectation exits non-zero with the reason.
"use strict";
const path = require("path");
const { chromium } = require(process.env.PLAYWRIGHT_CORE);

const base = process.env.BASE_URL;
const shots = process.env.SCREENSHOTS;
const password = process.env.PASSWORD;
const expedite = JSON.parse(process.env.EXPEDITE); // {order_id, external_id}
const finance = JSON.parse(process.env.FINANCE); // {order_id, external_id}
const dead = JSON.parse(process.env.DEAD); // {job_id, order_id}
const late = process.env.LATE_ORDER; // external id created while the board is open
const held = JSON.parse(process.env.OVERRIDE); // {order_id, external_id}: held for a missed cut-off

function expect(cond, msg) {
  if (!cond) throw new Error("expectation failed: " + msg);
}

async function signIn(browser, user) {
  const context = await browser.newContext({ viewport: { width: 1024, height: 900 } });
  const page = await context.newPage();
  await page.goto(base + "/console");
  expect(page.url().endsWith("/console/login"), "unauthenticated → sign-in, got " + page.url());
  await page.getByLabel("User").fill(user);
  await page.getByLabel("Password").fill(password);
  await Promise.all([page.waitForURL(base + "/console"), page.getByRole("button", { name: "Sign in" }).click()]);
  return { context, page };
}

async function shot(page, name) {
  await page.screenshot({ path: path.join(shots, name + ".png"), fullPage: true });
}

async function supervisorApprovesExpeditedFreight(browser) {
  const { context, page } = await signIn(browser, "sup");
  await shot(page, "1-board-supervisor");
  await page.getByRole("link", { name: "Exceptions" }).click();
  await page.waitForURL(base + "/console/exceptions");
  expect((await page.locator("main").innerText()).includes(expedite.external_id), "order listed in exceptions");
  await shot(page, "1-exceptions-before");
  await page.getByRole("link", { name: "Approvals" }).click();
  const card = page.locator("article.approval[data-kind=expedited_freight]");
  await card.waitFor();
  const text = await card.innerText();
  expect(text.includes("CC-4100") && text.includes("Customer line down"), "reason and cost center shown: " + text);
  await card.getByLabel("Comment (required to reject)").fill("Approved: customer line down");
  await shot(page, "1-inbox");
  await Promise.all([
    page.waitForURL((u) => u.toString().startsWith(base + "/console/approvals?done=")),
    card.getByRole("button", { name: "Approve" }).click(),
  ]);
  expect((await page.getByRole("status").innerText()).includes("expedited_freight approved"), "confirmation shown");
  await shot(page, "1-inbox-after");
  await page.getByRole("link", { name: "Exceptions" }).click();
  await page.waitForURL(base + "/console/exceptions");
  expect(!(await page.locator("main").innerText()).includes(expedite.external_id), "order left the exceptions");
  await shot(page, "1-exceptions-after");
  await page.goto(base + "/console/orders/" + expedite.order_id);
  const timeline = await page.locator("ol.timeline").innerText();
  expect(timeline.includes("approval.decided") && timeline.includes("user:sup"), "timeline shows the decision: " + timeline);
  expect((await page.locator("p.summary").innerText()).includes("released"), "order released");
  await page.locator("ol.timeline li[data-kind='approval.decided']").scrollIntoViewIfNeeded();
  await shot(page, "1-order-timeline");
  await context.close();
}

async function dispatcherSeesNoApproveButtonForFinanceOnly(browser) {
  const { context, page } = await signIn(browser, "disp");
  await page.getByRole("link", { name: "Approvals" }).click();
  const card = page.locator("article.approval[data-kind=credit_hold_release]");
  await card.waitFor();
  expect((await card.innerText()).includes("finance"), "waiting for finance");
  expect((await card.getByRole("button", { name: "Approve" }).count()) === 0, "no Approve button");
  expect((await page.getByRole("button", { name: "Approve" }).count()) === 0, "no Approve button anywhere");
  await shot(page, "2-dispatcher-inbox");
  await page.goto(base + "/console/orders/" + finance.order_id);
  expect((await page.getByRole("button", { name: "Approve" }).count()) === 0, "no Approve button on the order");
  await shot(page, "2-dispatcher-order");
  await context.close();
}

async function retryDeadLetter(browser) {
  const { context, page } = await signIn(browser, "sup2");
  await page.getByRole("link", { name: "Integrations" }).click();
  await page.waitForURL(base + "/console/integrations");
  const row = page.locator("#dl-" + dead.job_id);
  await row.waitFor();
  await shot(page, "3-integrations-before");
  await Promise.all([
    page.waitForURL((u) => u.toString().startsWith(base + "/console/integrations?done=")),
    row.getByRole("button", { name: "Retry job " + dead.job_id }).click(),
  ]);
  expect((await page.getByRole("status").innerText()).includes("Job " + dead.job_id + " queued again"), "retried");
  expect((await page.locator("#dl-" + dead.job_id).count()) === 0, "no longer a dead letter");
  await shot(page, "3-integrations-after");
  await context.close();
}

async function boardRefreshesItself(browser) {
  const { context, page } = await signIn(browser, "disp2");
  const before = await page.locator("#board").innerText();
  expect(!before.includes(late), "the late order is not there yet");
  // Ask the test to create an order now; the board must show it without a reload.
  console.log("CREATE_LATE_ORDER");
  await page.waitForFunction((x) => document.getElementById("board").innerText.includes(x), late, { timeout: 40000 });
  expect((await page.evaluate(() => performance.getEntriesByType("navigation").length)) === 1, "no reload");
  await shot(page, "4-board-refreshed");
  // Tablet width: nothing overflows the page horizontally.
  await page.setViewportSize({ width: 768, height: 1024 });
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
  expect(overflow <= 1, "no horizontal page overflow at tablet width: " + overflow);
  await shot(page, "4-board-tablet");
  // Keyboard: the first Tab reaches the skip link.
  await page.keyboard.press("Tab");
  expect((await page.evaluate(() => document.activeElement.className)) === "skip", "skip link first in tab order");
  await context.close();
}

async function dispatcherSeesNoOverrideButton(browser) {
  const { context, page } = await signIn(browser, "disp");
  await page.getByRole("link", { name: "Exceptions" }).click();
  await page.waitForURL(base + "/console/exceptions");
  const row = page.locator(`tr[data-order="${held.external_id}"]`);
  await row.waitFor();
  expect((await row.getByText("Request approval").count()) === 1, "a dispatcher may request an approval");
  expect((await row.getByText("Override", { exact: true }).count()) === 0, "no Override for a dispatcher");
  expect((await page.getByRole("button", { name: "Override hold" }).count()) === 0, "no Override hold button anywhere");
  await shot(page, "5-dispatcher-exceptions");
  await context.close();
}

async function supervisorOverridesSoftHold(browser) {
  const { context, page } = await signIn(browser, "sup2");
  await page.getByRole("link", { name: "Exceptions" }).click();
  await page.waitForURL(base + "/console/exceptions");
  const row = page.locator(`tr[data-order="${held.external_id}"]`);
  await row.waitFor();
  await row.getByText("Override", { exact: true }).click();
  expect(await row.getByLabel("cutoff_missed").isChecked(), "the held reason is offered, checked");
  await row.getByLabel("Why").fill("Customer collects at the dock tonight");
  await shot(page, "6-override-form");
  await Promise.all([
    page.waitForURL((u) => u.toString().startsWith(base + "/console/exceptions?done=")),
    row.getByRole("button", { name: "Override hold" }).click(),
  ]);
  expect((await page.getByRole("status").innerText()).includes("overridden; it is released"), "confirmation shown");
  // The confirmation names the order; the lists must not.
  expect((await page.locator(`tr[data-order="${held.external_id}"]`).count()) === 0, "order left the exceptions");
  expect(!(await page.locator("table.exceptions").allInnerTexts()).join("\n").includes(held.external_id), "in no list");
  await shot(page, "6-exceptions-after-override");
  await page.goto(base + "/console/orders/" + held.order_id);
  const timeline = await page.locator("ol.timeline").innerText();
  expect(
    timeline.includes("order.overridden") && timeline.includes("user:sup2") && timeline.includes("Customer collects"),
    "timeline shows who and why: " + timeline,
  );
  expect((await page.locator("p.summary").innerText()).includes("released"), "order released");
  await page.locator("ol.timeline li[data-kind='order.overridden']").scrollIntoViewIfNeeded();
  await shot(page, "6-override-timeline");
  await context.close();
}

(async () => {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM,
    args: ["--no-sandbox", "--disable-dev-shm-usage"],
  });
  const scenarios = [
    ["supervisor approves expedited freight", supervisorApprovesExpeditedFreight],
    ["dispatcher sees no approve button for a finance-only request", dispatcherSeesNoApproveButtonForFinanceOnly],
    ["retry a dead letter from the integrations page", retryDeadLetter],
    ["the board refreshes itself", boardRefreshesItself],
    ["a dispatcher sees no override button", dispatcherSeesNoOverrideButton],
    ["a supervisor overrides a soft hold", supervisorOverridesSoftHold],
  ];
  let failed = 0;
  for (const [name, run] of scenarios) {
    try {
      await run(browser);
      console.log("PASS " + name);
    } catch (e) {
      failed++;
      console.log("FAIL " + name + ": " + (e && e.stack ? e.stack : e));
    }
  }
  await browser.close();
  process.exit(failed ? 1 : 0);
})().catch((e) => {
  console.log("FAIL setup: " + (e && e.stack ? e.stack : e));
  process.exit(2);
});
