// The signaler's settings: sane defaults, and every bad value refused with its own message naming it.
import assert from 'node:assert/strict';
import { loadSignalerConfig } from '../../signaler/config.js';

describe('signaler settings', function () {
  it('defaults: IMDSv2 at the link-local address every 2 s, rebalance monitoring on, the projected token file', function () {
    const loaded = loadSignalerConfig({ SPOT_GUARD_INTAKE_URL: 'https://spot-guard-intake.spot-guard.svc:8443/' });
    assert.ok('settings' in loaded);
    assert.deepEqual(loaded.settings, {
      intakeUrl: 'https://spot-guard-intake.spot-guard.svc:8443',
      tokenFile: '/var/run/secrets/spot-guard/token',
      imdsUrl: 'http://169.254.169.254',
      imdsAllowV1: false,
      pollIntervalMs: 2000,
      rebalanceMonitoring: true,
      healthAddress: '0.0.0.0:8081',
    });
  });

  it('refuses each bad value, naming it and what is expected', function () {
    const loaded = loadSignalerConfig({
      SPOT_GUARD_INTAKE_URL: 'http://intake:8080',
      SPOT_GUARD_IMDS_POLL_INTERVAL: '2 seconds',
      ENABLE_REBALANCE_MONITORING: 'yes',
      SPOT_GUARD_SIGNALER_HEALTH_ADDRESS: 'everywhere',
    });
    assert.ok('errors' in loaded);
    assert.equal(loaded.errors.length, 4);
    for (const [i, pattern] of [/SPOT_GUARD_INTAKE_URL="http:\/\/intake:8080": expected https:\/\//, /SPOT_GUARD_IMDS_POLL_INTERVAL="2 seconds"/, /ENABLE_REBALANCE_MONITORING="yes": expected true or false/, /SPOT_GUARD_SIGNALER_HEALTH_ADDRESS="everywhere"/].entries()) {
      assert.match(loaded.errors[i] ?? '', pattern);
    }
    assert.ok('settings' in loadSignalerConfig({ SPOT_GUARD_INTAKE_URL: 'http://127.0.0.1:8080', SPOT_GUARD_INTAKE_ALLOW_HTTP: 'true' }), 'http:// for a local test, when allowed');
  });
});
