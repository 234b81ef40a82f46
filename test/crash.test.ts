import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { HarnessFailure, QUICK_CONFIG, crashHarness } from '../scripts/crash-harness.js';

// The short version of scripts/crash-harness.ts (20 kills, docs/RELIABILITY.md): two SIGKILLs at random moments.
test('killed twice with SIGKILL and resumed: files intact, same metrics and models as an uninterrupted run', { timeout: 600_000 }, async () => {
  const r = await crashHarness({ kills: 2, seed: 11, config: QUICK_CONFIG });
  // Exactly the kills asked for, each followed by an integrity check of the output folder.
  assert.equal(r.kills, 2);
  assert.equal(r.integrityChecks, 2);
  // Every resume ended either in a kill by the harness or in a completed run (a failed one throws HarnessFailure).
  assert.equal(r.resumesKilled + r.resumesCompleted, r.resumes);
  // Counted independently: every kill after the run existed (progress.json, seen by the integrity check) was
  // followed by a resume; only a kill at startup lets the next process start afresh.
  assert.equal(r.resumes, r.kills - (r.killedDuring.startup ?? 0));
  // One completion per cycle: no run was started twice or completed without comparison.
  assert.ok(r.cycles >= 1);
  assert.equal(r.completions, r.cycles);
  assert.ok(r.identical, JSON.stringify(r));
});

test('a process that fails on its own is a failure of the harness, not a kill', { timeout: 600_000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'kd-crash-fail-'));
  try {
    // The killed/resumed processes get an unknown option, so they exit 2 at once; the old harness counted that as a
    // kill and looped. It must stop with the exit code and the process's message.
    await assert.rejects(
      crashHarness({ kills: 2, seed: 11, config: QUICK_CONFIG, dir, extraArgs: ['--no-such-option'] }),
      (e: unknown) => e instanceof HarnessFailure && /exit code 2/.test(e.message) && /no-such-option/.test(e.message),
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
