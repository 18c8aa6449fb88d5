// Connection options for the Temporal frontend, shared by the worker's native connection and its client.
import { readFile } from 'node:fs/promises';
import type { TLSConfig } from '@temporalio/client';
import type { TemporalSettings } from './config.js';

export interface ConnectionOptions {
  address: string;
  tls?: TLSConfig | boolean;
  apiKey?: string;
}

export async function connectionOptions(settings: TemporalSettings, address: string): Promise<ConnectionOptions> {
  const options: ConnectionOptions = { address };
  if (settings.apiKey) options.apiKey = settings.apiKey;
  if (settings.tls) {
    const { serverName, serverRootCaPath, clientCertPath, clientKeyPath } = settings.tls;
    const tls: TLSConfig = {};
    if (serverName) tls.serverNameOverride = serverName;
    if (serverRootCaPath) tls.serverRootCACertificate = await readFile(serverRootCaPath);
    if (clientCertPath && clientKeyPath) {
      tls.clientCertPair = { crt: await readFile(clientCertPath), key: await readFile(clientKeyPath) };
    }
    options.tls = Object.keys(tls).length > 0 ? tls : true;
  }
  return options;
}
