// The webhook's settings: where to send (a URL from a Secret, as a variable or a mounted file), which steps, and in
// which shape. The URL is a secret (chat webhooks carry their token in the path or the query): no error names it.
import { readFileSync } from 'node:fs';
import type { WebhookConfig, WebhookFormat } from '../activities/webhook.js';
import { type Step, STEPS } from '../workflows/shared/announcements.js';

/** What an operator wants in a chat by default: what needs a look, and the fallback's life. */
export const DEFAULT_WEBHOOK_STEPS: readonly Step[] = ['rejected', 'on-demand-fallback', 'no-capacity', 'held', 'reverted-to-spot'];

type Env = Record<string, string | undefined>;

/** No URL: the webhook is off (undefined). Errors name the setting and what is expected, never the URL's text. */
export function loadWebhookConfig(env: Env): { ok: true; config?: WebhookConfig } | { ok: false; errors: string[] } {
  const errors: string[] = [];
  const url = webhookUrl(env, errors);
  const steps = webhookSteps(env.SPOT_GUARD_WEBHOOK_EVENTS, errors);
  const format = (env.SPOT_GUARD_WEBHOOK_FORMAT ?? 'json').trim() || 'json';
  if (format !== 'json' && format !== 'slack') errors.push(`SPOT_GUARD_WEBHOOK_FORMAT="${format}" is not a webhook format: expected json or slack`);
  if (errors.length > 0) return { ok: false, errors };
  return url ? { ok: true, config: { url, steps, format: format as WebhookFormat } } : { ok: true };
}

function webhookUrl(env: Env, errors: string[]): URL | undefined {
  const inline = env.SPOT_GUARD_WEBHOOK_URL?.trim();
  const file = env.SPOT_GUARD_WEBHOOK_URL_FILE?.trim();
  if (inline && file) {
    errors.push('SPOT_GUARD_WEBHOOK_URL and SPOT_GUARD_WEBHOOK_URL_FILE are both set: expected one of them (the file, mounted from a Secret, is the safer)');
    return undefined;
  }
  let text = inline;
  if (file) {
    try {
      text = readFileSync(file, 'utf8').trim();
    } catch (error) {
      errors.push(`SPOT_GUARD_WEBHOOK_URL_FILE="${file}" cannot be read (${(error as NodeJS.ErrnoException).code ?? (error as Error).message}): expected a file holding the webhook's URL, e.g. a mounted Secret`);
      return undefined;
    }
  }
  if (!text) return undefined;
  const where = file ? `the URL in SPOT_GUARD_WEBHOOK_URL_FILE="${file}"` : 'SPOT_GUARD_WEBHOOK_URL';
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    errors.push(`${where} is not a URL: expected https://… (its text is not shown: it may hold a token)`);
    return undefined;
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') {
    errors.push(`${where} has scheme "${url.protocol.replace(/:$/, '')}": expected https (or http)`);
    return undefined;
  }
  return url;
}

function webhookSteps(setting: string | undefined, errors: string[]): ReadonlySet<Step> {
  const text = setting?.trim();
  if (!text) return new Set(DEFAULT_WEBHOOK_STEPS);
  if (text === 'all') return new Set(STEPS);
  const named = text.split(',').map((s) => s.trim()).filter((s) => s !== '');
  const unknown = named.filter((s) => !(STEPS as readonly string[]).includes(s));
  if (unknown.length > 0) errors.push(`SPOT_GUARD_WEBHOOK_EVENTS names ${unknown.map((s) => `"${s}"`).join(', ')}: expected all, or steps among ${STEPS.join(', ')}`);
  return new Set(named.filter((s): s is Step => (STEPS as readonly string[]).includes(s)));
}
