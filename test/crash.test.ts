import { test } from 'node:test';
import assert from 'node:assert/strict';
import { QUICK_CONFIG, crashHarness } from '../scripts/crash-harness.js';

// The short version of scripts/crash-harness.ts (20 kills, docs/RELIABILITY.md): two SIGKILLs at random moments.
test('killed twice with SIGKILL and resumed: files intact, same metrics and models as an uninterrupted run', async () => {
  const r = await crashHarness({ kills: 2, seed: 11, config: QUICK_CONFIG });
  assert.equal(r.integrityChecks, r.kills);
  assert.ok(r.identical, JSON.stringify(r));
});
