import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { aliceRequest, makeExports, startCluster, type Cluster } from '../../helpers/services.js';
import { fusePrereqs, hasFile, requirePrereq } from '../../helpers/prereq.js';

const sh = promisify(execFile);
const CHROMIUM = '/usr/bin/chromium';
const skip = requirePrereq(...fusePrereqs(), hasFile(CHROMIUM, 'chromium'));

/** Width and height from a PNG's IHDR chunk. */
function pngSize(png: Buffer): { width: number; height: number } {
  assert.ok(png.subarray(0, 8).equals(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])), 'a PNG');
  assert.equal(png.subarray(12, 16).toString(), 'IHDR');
  return { width: png.readUInt32BE(16), height: png.readUInt32BE(20) };
}

describe('dashboard in headless Chromium', { skip, timeout: 600_000 }, () => {
  let c: Cluster;
  let browser: BrowserContext;
  let profile: string;
  let s: any;
  before(async () => {
    c = await startCluster();
    await makeExports(c);
    await fs.writeFile(path.join(c.hosts.state.exports, 'vm', 'disk.img'), randomBytes(2 << 20));
    s = (await c.api(c.tokens.alice, 'POST', '/sessions', aliceRequest(c, 'dash', { lifetime: 7200, cache: { mode: 'write-back', dirtyMaxAge: 3600 } }))).body;
    assert.equal(s.state, 'ready', JSON.stringify(s));
    // Dirty data must still be dirty when the page is read (a slow Chromium start outlasted the default age: '0 B').
    // Some traffic: the image read twice (misses, then, with the kernel's copy dropped, hits), some data written back.
    const img = path.join(s.mounts[0], 'disk.img');
    await fs.readFile(img);
    await sh('dd', [`if=${img}`, 'iflag=nocache', 'count=0', 'status=none']); // coreutils: drop the file's pages
    await fs.readFile(img);
    await fs.writeFile(path.join(s.mounts[1], 'out.bin'), randomBytes(300 << 10));
    profile = await fs.mkdtemp(path.join(c.base, 'chromium-'));
    browser = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
      ignoreHTTPSErrors: true,
      viewport: { width: 1280, height: 800 },
    });
  });
  after(async () => {
    await browser?.close();
    await c?.stop();
  });

  async function signIn(token: string): Promise<Page> {
    const page = await browser.newPage();
    await page.goto(`${c.url}/dashboard`);
    assert.equal(new URL(page.url()).pathname, '/dashboard/login');
    await page.fill('#token', token);
    await Promise.all([page.waitForURL(`${c.url}/dashboard`), page.click('#signin')]);
    await page.goto(`${c.url}/dashboard?refresh=0`);
    return page;
  }

  test("alice's dashboard shows her session: hosts, mounts, hit ratio, bytes moved, dirty data, time left", async () => {
    const page = await signIn(c.tokens.alice);
    const row = page.locator(`tr[data-session="${s.id}"]`);
    assert.equal(await row.count(), 1);
    const text = await row.innerText();
    assert.match(text, /ready/);
    for (const h of ['state', 'data', 'compute']) assert.match(text, new RegExp(h));
    for (const m of s.mounts) assert.ok(text.includes(m), m);
    const hit = await row.locator('td.hit').innerText();
    const ratio = Number(/([\d.]+)%/.exec(hit)?.[1]);
    assert.ok(ratio > 0 && ratio < 100, `hit ratio ${hit}`);
    assert.match(await row.locator('td.moved').innerText(), /\d(\.\d)? MiB/);
    assert.match(await row.locator('td.dirty').innerText(), /KiB|MiB/);
    assert.match(await row.locator('td.left').innerText(), /^(1 h \d+ min|\d+ min \d+ s)$/);
    // Styles applied: the state badge is drawn in the "ready" colour.
    assert.equal(await row.locator('.state').evaluate((e) => getComputedStyle(e).backgroundColor), 'rgb(42, 157, 143)');
    assert.equal(await page.locator('#hosts td.up').count(), 3);

    const shot = await page.screenshot({ fullPage: false });
    assert.deepEqual(pngSize(shot), { width: 1280, height: 800 });
    // GVFS_SCREENSHOT_DIR=DIR keeps it for a person to look at.
    if (process.env.GVFS_SCREENSHOT_DIR) await fs.writeFile(path.join(process.env.GVFS_SCREENSHOT_DIR, 'gvfs-dashboard.png'), shot);
    const rowShot = await row.screenshot();
    const { width, height } = pngSize(rowShot);
    assert.ok(width > 600 && height > 20, `row screenshot ${width}x${height}`);

    // Signed out, then bob: he sees none of alice's sessions, and the page looks different.
    await Promise.all([page.waitForURL(`${c.url}/dashboard/login`), page.click('#signout')]);
    await page.goto(`${c.url}/dashboard`);
    assert.equal(new URL(page.url()).pathname, '/dashboard/login');
    const other = await signIn(c.tokens.bob);
    assert.match(await other.locator('#sessions').innerText(), /No sessions\./);
    const empty = await other.screenshot({ fullPage: false });
    assert.ok(!empty.equals(shot), 'the screenshots differ');
    await page.close();
    await other.close();
  });

  test('a wrong token gets the sign-in page again', async () => {
    const page = await browser.newPage();
    await page.goto(`${c.url}/dashboard/login`);
    await page.fill('#token', 'gvfs_wrong');
    await Promise.all([page.waitForURL(/failed=1/), page.click('#signin')]);
    assert.equal(await page.locator('#failed').innerText(), 'Unknown token.');
    await page.close();
  });
});
