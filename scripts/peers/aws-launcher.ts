// Starts scripts/peers/aws_launcher.py (moto in server mode with real launch behaviour) on a free loopback port and
// drives it: capacity errors, launch delays, reset, request counts.
import { type ChildProcess, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { AutoScalingClient } from '@aws-sdk/client-auto-scaling';
import { pythonPath } from './peers.js';
import { freePort } from './wait.js';
import { stopOnExit } from './stop-on-exit.js';

const launcherScript = fileURLToPath(new URL('../../../scripts/peers/aws_launcher.py', import.meta.url));

export class AwsLauncher {
  private child?: ChildProcess;
  url = '';

  async start(): Promise<this> {
    const port = await freePort();
    this.url = `http://127.0.0.1:${port}`;
    this.child = spawn(pythonPath(), [launcherScript, '--port', String(port)], { stdio: ['ignore', 'ignore', 'pipe'] });
    stopOnExit(this.child);
    let stderr = '';
    this.child.stderr?.on('data', (chunk: Buffer) => (stderr = (stderr + chunk.toString()).slice(-4000)));
    const deadline = Date.now() + 30_000;
    for (;;) {
      if (this.child.exitCode !== null) throw new Error(`the AWS launcher exited: ${stderr}`);
      try {
        await this.counts();
        return this;
      } catch {
        if (Date.now() > deadline) throw new Error(`the AWS launcher did not answer on ${this.url}: ${stderr}`);
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    }
  }

  async stop(): Promise<void> {
    if (!this.child || this.child.exitCode !== null) return;
    const gone = new Promise((resolve) => this.child?.once('exit', resolve));
    this.child.kill('SIGTERM');
    await gone;
  }

  /** A real Auto Scaling client pointed at moto, as AWS_ENDPOINT_URL_AUTO_SCALING does for the worker. */
  client(): AutoScalingClient {
    return new AutoScalingClient({ region: 'us-east-1', endpoint: this.url, credentials: { accessKeyId: 'test', secretAccessKey: 'test' } });
  }

  private async control(command: string, body: object = {}): Promise<unknown> {
    const get = command === 'counts' || command === 'timeline';
    const response = await fetch(`${this.url}/_launcher/${command}`, { method: get ? 'GET' : 'POST', body: get ? undefined : JSON.stringify(body) });
    if (!response.ok) throw new Error(`launcher ${command}: HTTP ${response.status} ${await response.text()}`);
    return response.json();
  }

  capacityError(group: string, message = ''): Promise<unknown> {
    return this.control('capacity-error', { group, message });
  }
  delay(group: string, seconds: number): Promise<unknown> {
    return this.control('delay', { group, seconds });
  }
  restore(group: string): Promise<unknown> {
    return this.control('restore', { group });
  }
  throttle(seconds: number): Promise<unknown> {
    return this.control('throttle', { seconds });
  }
  reset(): Promise<unknown> {
    return this.control('reset');
  }
  /** A group's desired capacity and instances, read from moto directly (not counted as an Auto Scaling request). */
  instances(group: string): Promise<{ desired: number; instances: { id: string; state: string }[] }> {
    return this.control('instances', { group }) as Promise<{ desired: number; instances: { id: string; state: string }[] }>;
  }
  /** Requests per wall-clock second, SetDesiredCapacity writes [time, group, value], InService time per instance. */
  timeline(): Promise<{ perSecond: Record<string, number>; desiredLog: [number, string, number][]; inServiceAt: Record<string, number> }> {
    return this.control('timeline') as Promise<{ perSecond: Record<string, number>; desiredLog: [number, string, number][]; inServiceAt: Record<string, number> }>;
  }
  counts(): Promise<{ total: number; byAction: Record<string, number>; throttled: Record<string, number> }> {
    return this.control('counts') as Promise<{ total: number; byAction: Record<string, number>; throttled: Record<string, number> }>;
  }
}
